package redisstore_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/redisstore"
	"github.com/idemkv/idemkv/engine/redistest"
	"github.com/idemkv/idemkv/record"
	"github.com/redis/go-redis/v9"
)

// BenchmarkRedisStore measures the Redis backend's two hot paths on a real
// redis-server over loopback: a first request (Begin, then Complete) and a
// replay (Begin of a completed key), with 2 KB bodies, from parallel
// goroutines, in both layouts, beside the pattern written by hand (SET NX
// with a lease, then SET of the response; GET for a replay) on the same
// server. redis-cpu-µs/op is the server's CPU time per operation (INFO
// cpu). Compare with `idemkv bench -backend redis`.
func BenchmarkRedisStore(b *testing.B) {
	url := redistest.Start(b, nil)
	b.Run("by-hand", func(b *testing.B) { benchByHand(b, url) })
	for _, layout := range []int{2, 1} {
		b.Run(fmt.Sprintf("layout%d", layout), func(b *testing.B) { benchStore(b, url, layout) })
	}
}

func benchStore(b *testing.B, url string, layout int) {
	ctx := context.Background()
	st := openStore(b, url, redisstore.Options{Prefix: fmt.Sprintf("bench%d:", prefixes.Add(1)), Layout: layout})
	rc := rawClient(b, url)
	body := make([]byte, 2048)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	fp := record.Sum(body)
	resp := engine.Response{Status: 201, Header: []record.Header{{Name: "Content-Type", Value: "application/json"}}, Body: body}
	req := func(i int64) engine.Request {
		return engine.Request{Key: record.Key{Scope: "s", Endpoint: "POST /v1/x", Key: fmt.Sprint("k", i)}, Fingerprint: fp, RequestID: "r"}
	}
	var sys paths
	sys.first = func() error {
		res, err := st.Begin(ctx, req(sys.next.Add(1)))
		if err != nil {
			return err
		}
		if res.Outcome != engine.Proceed {
			return fmt.Errorf("outcome %v", res.Outcome)
		}
		return res.Claim.Complete(ctx, resp)
	}
	sys.replay = func(n int64) error {
		res, err := st.Begin(ctx, req(n))
		if err == nil && res.Outcome != engine.Replay {
			err = fmt.Errorf("outcome %v", res.Outcome)
		}
		return err
	}
	sys.run(b, rc, len(body))
}

// benchByHand is BenchmarkRedisStore's baseline: the pattern written by
// hand, with the same bodies and parallelism.
func benchByHand(b *testing.B, url string) {
	ctx := context.Background()
	rc := rawClient(b, url)
	prefix := fmt.Sprintf("bench%d:", prefixes.Add(1))
	body := make([]byte, 2048)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	var sys paths
	sys.first = func() error {
		k := fmt.Sprint(prefix, sys.next.Add(1))
		ok, err := rc.SetNX(ctx, k, "in-flight", 30*time.Second).Result()
		if err != nil || !ok {
			return fmt.Errorf("SET NX: %v %v", ok, err)
		}
		return rc.Set(ctx, k, body, 24*time.Hour).Err()
	}
	sys.replay = func(n int64) error { return rc.Get(ctx, fmt.Sprint(prefix, n)).Err() }
	sys.run(b, rc, len(body))
}

// paths are a system's two hot paths, measured by run.
type paths struct {
	next   atomic.Int64
	first  func() error        // a first request, of key next.Add(1)
	replay func(n int64) error // a retry of key n, completed
}

// run measures first requests, then replays of 1,000 keys, from 64
// goroutines (32 per CPU here: many requests in flight, as in a server).
func (p *paths) run(b *testing.B, rc *redis.Client, bodyLen int) {
	b.Run("first", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(bodyLen))
		b.SetParallelism(32)
		defer serverCPU(b, rc)()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := p.first(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("replay", func(b *testing.B) {
		const keys = 1000
		base := p.next.Load()
		for range keys {
			if err := p.first(); err != nil {
				b.Fatal(err)
			}
		}
		var i atomic.Int64
		b.ReportAllocs()
		b.SetBytes(int64(bodyLen))
		b.ResetTimer()
		b.SetParallelism(32)
		defer serverCPU(b, rc)()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := p.replay(base + 1 + i.Add(1)%keys); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// serverCPU reads the server's CPU time (INFO cpu) now and, when the
// function it returns is called, reports the CPU time it spent since per
// operation as redis-cpu-µs/op.
func serverCPU(b *testing.B, rc *redis.Client) func() {
	read := func() float64 {
		info, err := rc.Info(context.Background(), "cpu").Result()
		if err != nil {
			b.Fatal(err)
		}
		var sum float64
		for _, line := range strings.Split(info, "\r\n") {
			name, v, _ := strings.Cut(line, ":")
			if name == "used_cpu_sys" || name == "used_cpu_user" {
				f, _ := strconv.ParseFloat(v, 64)
				sum += f
			}
		}
		return sum
	}
	start := read()
	return func() { b.ReportMetric((read()-start)*1e6/float64(b.N), "redis-cpu-µs/op") }
}
