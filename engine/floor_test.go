package engine

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/idemkv/idemkv/bench/payload"
	"github.com/idemkv/idemkv/record"
)

// BenchmarkFreshFloor measures a first request (Begin, then Complete with
// a 2 KB JSON body) through the engine, beside its storage floor: the two
// writes the engine makes for it (the lease, then the completed record,
// encoded and committed the same way, in the same Pebble configuration,
// each adding its key to the generation's filter as the engine does) and
// nothing else — no stripe locks, lookups, filter reads, claims or cache. The
// ratio engine/floor is what the engine's logic costs; the floor is the
// most a design that persists a claim before the handler runs can do on
// this Pebble configuration and machine. path=record writes the completed
// record alone: the floor of a design that kept leases out of Pebble.
// Run at 64 goroutines (on a 2-core machine), in both durability modes:
//
//	go test -run '^$' -bench FreshFloor -benchtime 100000x ./engine
func BenchmarkFreshFloor(b *testing.B) {
	body := payload.JSON(nil, 2048, 1)
	for _, d := range []Durability{Synced, Relaxed} {
		for _, path := range []string{"engine", "floor", "record"} {
			b.Run(fmt.Sprintf("durability=%s/path=%s", d, path), func(b *testing.B) {
				e, err := Open(b.TempDir(), &Options{Durability: d})
				if err != nil {
					b.Fatal(err)
				}
				defer func() {
					b.StopTimer()
					if err := e.Close(); err != nil {
						b.Error(err)
					}
				}()
				op := map[string]func(string, []byte) error{
					"engine": e.engineOp, "floor": e.floorOp, "record": e.recordOp,
				}[path]
				var (
					next atomic.Uint64
					mu   sync.Mutex
					lats []time.Duration
				)
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					kb := make([]byte, 0, 32)
					mine := make([]time.Duration, 0, b.N/64+16)
					defer func() {
						mu.Lock()
						lats = append(lats, mine...)
						mu.Unlock()
					}()
					for pb.Next() {
						kb = strconv.AppendUint(kb[:0], next.Add(1), 10)
						start := time.Now()
						if err := op(string(kb), body); err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, time.Since(start))
					}
				})
				b.StopTimer()
				reportLatency(b, lats)
			})
		}
	}
}

// reportLatency reports the median and the 99th percentile of lats.
func reportLatency(b *testing.B, lats []time.Duration) {
	if len(lats) == 0 {
		return
	}
	slices.Sort(lats)
	b.ReportMetric(float64(lats[len(lats)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "p99-µs")
}

func (e *Engine) engineOp(key string, body []byte) error {
	ctx := context.Background()
	res, err := e.Begin(ctx, Request{
		Key:         record.Key{Scope: "tenant", Endpoint: "POST /orders", Key: key},
		Fingerprint: record.Fingerprint{Version: 1, Sum: 42},
		RequestID:   "req-" + key,
	})
	if err != nil {
		return err
	}
	if res.Outcome != Proceed {
		return fmt.Errorf("key %s: %v, want proceed", key, res.Outcome)
	}
	return res.Claim.Complete(ctx, Response{Status: 201, Body: body})
}

func (e *Engine) floorOp(key string, body []byte) error { return e.bareWrites(key, body, true) }

func (e *Engine) recordOp(key string, body []byte) error { return e.bareWrites(key, body, false) }

// bareWrites writes a first request's lease (if withLease) and completed
// record as the engine does, without anything else.
func (e *Engine) bareWrites(key string, body []byte, withLease bool) error {
	k := record.Key{Scope: "tenant", Endpoint: "POST /orders", Key: key}
	ek := string(k.Append(nil))
	h := xxhash.Sum64String(ek)
	now := e.clock.Now()
	lease := &record.Record{
		State: record.Claimed, RequestID: "req-" + key, Fingerprint: record.Fingerprint{Version: 1, Sum: 42},
		Attempt: 1, CreatedAt: now, ExpiresAt: now.Add(e.ttl),
		Lease: record.Lease{Owner: e.incarnation, Token: 1, ExpiresAt: now.Add(e.opts.Lease)},
	}
	gen := e.gens.Of(lease.ExpiresAt)
	f := located{}
	if withLease {
		if err := e.writeRecord(ek, h, lease, gen, f, false); err != nil {
			return err
		}
		f = located{ok: true, gen: gen}
	}
	done := &record.Record{
		State: record.Completed, RequestID: lease.RequestID, Fingerprint: lease.Fingerprint, Attempt: 1,
		Status: 201, Body: body, CreatedAt: now, CompletedAt: now, ExpiresAt: now.Add(e.ttl),
		Lease: record.Lease{Owner: e.incarnation, Token: 1},
	}
	return e.writeRecord(ek, h, done, e.gens.Of(done.ExpiresAt), f, true)
}
