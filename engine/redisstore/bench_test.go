package redisstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/redisstore"
	"github.com/idemkv/idemkv/engine/redistest"
	"github.com/idemkv/idemkv/record"
)

// BenchmarkRedisStore measures the Redis backend's two hot paths on a real
// redis-server over loopback: a first request (Begin, then Complete) and a
// replay (Begin of a completed key), with 2 KB bodies, from parallel
// goroutines. Compare with `idemkv bench -backend redis`, which also runs
// the baselines.
func BenchmarkRedisStore(b *testing.B) {
	url := redistest.Start(b, nil)
	ctx := context.Background()
	st := openStore(b, url, redisstore.Options{Prefix: fmt.Sprintf("bench%d:", prefixes.Add(1))})
	body := make([]byte, 2048)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	fp := record.Sum(body)
	resp := engine.Response{Status: 201, Header: []record.Header{{Name: "Content-Type", Value: "application/json"}}, Body: body}
	req := func(i int64) engine.Request {
		return engine.Request{Key: record.Key{Scope: "s", Endpoint: "POST /v1/x", Key: fmt.Sprint("k", i)}, Fingerprint: fp, RequestID: "r"}
	}
	var next atomic.Int64
	first := func() error {
		res, err := st.Begin(ctx, req(next.Add(1)))
		if err != nil {
			return err
		}
		if res.Outcome != engine.Proceed {
			return fmt.Errorf("outcome %v", res.Outcome)
		}
		return res.Claim.Complete(ctx, resp)
	}
	b.Run("first", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		b.SetParallelism(32) // many requests in flight, as in a server
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := first(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("replay", func(b *testing.B) {
		const keys = 1000
		base := next.Load()
		for range keys {
			if err := first(); err != nil {
				b.Fatal(err)
			}
		}
		var i atomic.Int64
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		b.ResetTimer()
		b.SetParallelism(32) // many requests in flight, as in a server
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				res, err := st.Begin(ctx, req(base+1+i.Add(1)%keys))
				if err != nil || res.Outcome != engine.Replay {
					b.Errorf("%v %v", res.Outcome, err)
					return
				}
			}
		})
	})
}
