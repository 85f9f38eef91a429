package engine_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/bench/payload"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/expiry"
	"github.com/idemkv/idemkv/record"
)

func TestAnswers(t *testing.T) {
	bigBody := strings.Repeat(`{"id":"call_1","status":"queued"},`, 200)
	tests := []struct {
		name string
		run  func(t *testing.T, e *engine.Engine)
	}{
		{"first request proceeds", func(t *testing.T, e *engine.Engine) {
			res := begin(t, e, req("k", "a"))
			mustOutcome(t, res, engine.Proceed)
			if res.Recovered || res.Claim.Attempt() != 1 {
				t.Fatalf("fresh claim: recovered=%v attempt=%d", res.Recovered, res.Claim.Attempt())
			}
		}},
		{"retry after completion replays", func(t *testing.T, e *engine.Engine) {
			res := begin(t, e, req("k", "a"))
			if err := res.Claim.Complete(ctx, response(bigBody)); err != nil {
				t.Fatal(err)
			}
			assertReplay(t, begin(t, e, req("k", "a")), response(bigBody))
			e.EvictCacheForTest()
			assertReplay(t, begin(t, e, req("k", "a")), response(bigBody))
		}},
		{"different body conflicts with completed", func(t *testing.T, e *engine.Engine) {
			res := begin(t, e, req("k", "a"))
			if err := res.Claim.Complete(ctx, response("x")); err != nil {
				t.Fatal(err)
			}
			for _, evict := range []bool{false, true} {
				if evict {
					e.EvictCacheForTest()
				}
				got := begin(t, e, req("k", "b"))
				mustOutcome(t, got, engine.Conflict)
				if got.OriginalRequestID != "req-k-a" {
					t.Fatalf("OriginalRequestID = %q; want req-k-a", got.OriginalRequestID)
				}
			}
		}},
		{"handler's request id is stored", func(t *testing.T, e *engine.Engine) {
			res := begin(t, e, req("k", "a"))
			resp := response("x")
			resp.RequestID = "handler-id"
			if err := res.Claim.Complete(ctx, resp); err != nil {
				t.Fatal(err)
			}
			if got := begin(t, e, req("k", "b")); got.OriginalRequestID != "handler-id" {
				t.Fatalf("OriginalRequestID = %q; want handler-id", got.OriginalRequestID)
			}
		}},
		{"different body conflicts with in-flight", func(t *testing.T, e *engine.Engine) {
			mustOutcome(t, begin(t, e, req("k", "a")), engine.Proceed)
			got := begin(t, e, req("k", "b"))
			mustOutcome(t, got, engine.Conflict)
			if got.OriginalRequestID != "req-k-a" {
				t.Fatalf("OriginalRequestID = %q", got.OriginalRequestID)
			}
		}},
		{"no-wait duplicate gets in-flight", func(t *testing.T, e *engine.Engine) {
			mustOutcome(t, begin(t, e, req("k", "a")), engine.Proceed)
			r := req("k", "a")
			r.WhenInProgress = engine.NoWait
			got := begin(t, e, r)
			mustOutcome(t, got, engine.InProgress)
			if got.OriginalRequestID != "req-k-a" {
				t.Fatalf("OriginalRequestID = %q", got.OriginalRequestID)
			}
		}},
		{"waiting duplicate gets the replay", func(t *testing.T, e *engine.Engine) {
			first := begin(t, e, req("k", "a"))
			got := make(chan engine.Result)
			go func() { got <- begin(t, e, req("k", "a")) }()
			waitFor(t, func() bool { return e.Stats().Waits == 1 })
			if err := first.Claim.Complete(ctx, response("done")); err != nil {
				t.Fatal(err)
			}
			assertReplay(t, <-got, response("done"))
		}},
		{"waiting duplicate proceeds after release", func(t *testing.T, e *engine.Engine) {
			first := begin(t, e, req("k", "a"))
			got := make(chan engine.Result)
			go func() { got <- begin(t, e, req("k", "a")) }()
			waitFor(t, func() bool { return e.Stats().Waits == 1 })
			if err := first.Claim.Release(ctx); err != nil {
				t.Fatal(err)
			}
			res := <-got
			mustOutcome(t, res, engine.Proceed)
			if res.Recovered {
				t.Fatal("a released key was reported as recovered")
			}
		}},
		{"wait is bounded by the context", func(t *testing.T, e *engine.Engine) {
			mustOutcome(t, begin(t, e, req("k", "a")), engine.Proceed)
			c, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			if _, err := e.Begin(c, req("k", "a")); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v; want DeadlineExceeded", err)
			}
		}},
		{"release lets a retry run again", func(t *testing.T, e *engine.Engine) {
			res := begin(t, e, req("k", "a"))
			if err := res.Claim.Release(ctx); err != nil {
				t.Fatal(err)
			}
			mustOutcome(t, begin(t, e, req("k", "a")), engine.Proceed)
		}},
		{"a claim finishes once", func(t *testing.T, e *engine.Engine) {
			res := begin(t, e, req("k", "a"))
			if err := res.Claim.Complete(ctx, response("x")); err != nil {
				t.Fatal(err)
			}
			if err := res.Claim.Complete(ctx, response("y")); !errors.Is(err, engine.ErrClaimDone) {
				t.Fatalf("second Complete: %v; want ErrClaimDone", err)
			}
			if err := res.Claim.Release(ctx); !errors.Is(err, engine.ErrClaimDone) {
				t.Fatalf("Release after Complete: %v; want ErrClaimDone", err)
			}
			assertReplay(t, begin(t, e, req("k", "a")), response("x"))
		}},
		{"keys are scoped by tenant and endpoint", func(t *testing.T, e *engine.Engine) {
			res := begin(t, e, req("k", "a"))
			if err := res.Claim.Complete(ctx, response("x")); err != nil {
				t.Fatal(err)
			}
			for _, k := range []record.Key{
				{Scope: "tenant-b", Endpoint: "POST /v1/calls", Key: "k"},
				{Scope: "tenant-a", Endpoint: "POST /v1/agents", Key: "k"},
				{Scope: "tenant-a", Endpoint: "POST /v1/calls", Key: "K"},
			} {
				mustOutcome(t, begin(t, e, engine.Request{Key: k, Fingerprint: record.Sum([]byte("a"))}), engine.Proceed)
			}
		}},
		{"invalid input is refused", func(t *testing.T, e *engine.Engine) {
			if _, err := e.Begin(ctx, engine.Request{Key: record.Key{}, Fingerprint: record.Sum(nil)}); !errors.Is(err, engine.ErrInvalidKey) {
				t.Errorf("empty key: %v", err)
			}
			if _, err := e.Begin(ctx, engine.Request{Key: key(strings.Repeat("k", 256)), Fingerprint: record.Sum(nil)}); !errors.Is(err, engine.ErrInvalidKey) {
				t.Errorf("long key: %v", err)
			}
			if _, err := e.Begin(ctx, engine.Request{Key: key("k")}); !errors.Is(err, engine.ErrInvalid) {
				t.Errorf("no fingerprint: %v", err)
			}
			res := begin(t, e, req("k", "a"))
			if err := res.Claim.Complete(ctx, engine.Response{Status: 42}); !errors.Is(err, engine.ErrInvalid) {
				t.Errorf("status 42: %v", err)
			}
			if err := res.Claim.Complete(ctx, engine.Response{Status: 200, Body: make([]byte, 16<<20+1)}); !errors.Is(err, engine.ErrTooLarge) {
				t.Errorf("huge body: %v", err)
			}
			// Nothing was lost: the claim is still held and completes.
			if err := res.Claim.Complete(ctx, response("ok")); err != nil {
				t.Errorf("Complete after refused input: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := newTestEngine(t, nil)
			tt.run(t, e)
		})
	}
}

func TestRecoveredAfterRestart(t *testing.T) {
	dir := t.TempDir()
	e, err := engine.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := begin(t, e, req("k", "a"))
	mustOutcome(t, res, engine.Proceed)
	// The process "dies" holding the claim: close without completing.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := res.Claim.Complete(ctx, response("late")); err == nil {
		t.Fatal("Complete after Close succeeded")
	}
	e, err = engine.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	got := begin(t, e, req("k", "b"))
	mustOutcome(t, got, engine.Conflict) // the interrupted claim still binds the key to its body
	got = begin(t, e, req("k", "a"))
	mustOutcome(t, got, engine.Proceed)
	if !got.Recovered || got.Claim.Attempt() != 2 || got.Record == nil || got.Record.RequestID != "req-k-a" {
		t.Fatalf("recovered=%v attempt=%d record=%+v; want a recovered second attempt", got.Recovered, got.Claim.Attempt(), got.Record)
	}
	if err := got.Claim.Complete(ctx, response("x")); err != nil {
		t.Fatal(err)
	}
	assertReplay(t, begin(t, e, req("k", "a")), response("x"))
	if s := e.Stats(); s.Recovered != 1 || s.Incarnation != 2 {
		t.Errorf("stats: recovered=%d incarnation=%d; want 1, 2", s.Recovered, s.Incarnation)
	}
}

func TestReplayAfterRestart(t *testing.T) {
	dir := t.TempDir()
	e, err := engine.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := begin(t, e, req("k", "a"))
	if err := res.Claim.Complete(ctx, response("stored")); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := e.Begin(ctx, req("k", "a")); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Begin after Close: %v; want ErrClosed", err)
	}
	e, err = engine.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	assertReplay(t, begin(t, e, req("k", "a")), response("stored"))
}

func TestLeaseExpiryWithinProcess(t *testing.T) {
	clock := expiry.NewFakeClock(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	e, _ := newTestEngine(t, &engine.Options{Clock: clock, Lease: time.Minute})
	first := begin(t, e, req("k", "a"))
	clock.Advance(59 * time.Second)
	r := req("k", "a")
	r.WhenInProgress = engine.NoWait
	mustOutcome(t, begin(t, e, r), engine.InProgress)
	clock.Advance(time.Second)
	second := begin(t, e, req("k", "a"))
	mustOutcome(t, second, engine.Proceed)
	if !second.Recovered || second.Claim.Attempt() != 2 {
		t.Fatalf("takeover: recovered=%v attempt=%d", second.Recovered, second.Claim.Attempt())
	}
	if err := first.Claim.Complete(ctx, response("stale")); !errors.Is(err, engine.ErrLeaseLost) {
		t.Fatalf("stale holder's Complete: %v; want ErrLeaseLost", err)
	}
	if err := second.Claim.Complete(ctx, response("fresh")); err != nil {
		t.Fatal(err)
	}
	assertReplay(t, begin(t, e, req("k", "a")), response("fresh"))
}

func TestTTL(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	clock := expiry.NewFakeClock(t0)
	e, _ := newTestEngine(t, &engine.Options{Clock: clock, TTL: time.Hour})
	res := begin(t, e, req("k", "a"))
	clock.Advance(10 * time.Minute) // the TTL counts from completion
	if err := res.Claim.Complete(ctx, response("x")); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour - time.Nanosecond)
	assertReplay(t, begin(t, e, req("k", "a")), response("x"))
	clock.Advance(time.Nanosecond)
	for _, evict := range []bool{false, true} {
		if evict {
			e.EvictCacheForTest()
		}
		if _, err := e.Get(ctx, key("k")); !errors.Is(err, engine.ErrNotFound) {
			t.Fatalf("Get of an expired record: %v; want ErrNotFound", err)
		}
	}
	res = begin(t, e, req("k", "b")) // a different body is fine once expired
	mustOutcome(t, res, engine.Proceed)
	if err := res.Claim.Complete(ctx, response("y")); err != nil {
		t.Fatal(err)
	}
	assertReplay(t, begin(t, e, req("k", "b")), response("y"))
}

func TestSweepDropsExpiredGenerations(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	clock := expiry.NewFakeClock(t0)
	e, _ := newTestEngine(t, &engine.Options{Clock: clock, TTL: time.Hour})
	for i := range 100 {
		res := begin(t, e, req(fmt.Sprint(i), "a"))
		if err := res.Claim.Complete(ctx, response(strings.Repeat("x", 1000))); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Minute)
	}
	count := func(includeExpired bool) int {
		n := 0
		err := e.Scan(ctx, engine.ScanOptions{IncludeExpired: includeExpired}, func(engine.Entry) error { n++; return nil })
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := count(false); got != 59 {
		t.Fatalf("live records after 100 minutes with a 1h TTL = %d; want 59", got)
	}
	if got := count(true); got != 100 {
		t.Fatalf("stored records before sweeping = %d; want 100", got)
	}
	dropped, err := e.Sweep(ctx)
	if err != nil || dropped == 0 {
		t.Fatalf("Sweep = %d, %v; want some generations dropped", dropped, err)
	}
	after := count(true)
	if after < 59 || after >= 100 {
		t.Fatalf("stored records after sweeping = %d; want fewer than 100 and every live one", after)
	}
	if got := count(false); got != 59 {
		t.Fatalf("live records after sweeping = %d; want 59", got)
	}
	for i := 41; i < 100; i++ {
		assertReplay(t, begin(t, e, req(fmt.Sprint(i), "a")), response(strings.Repeat("x", 1000)))
	}
	clock.Advance(2 * time.Hour)
	if _, err := e.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if got := count(true); got != 0 {
		t.Fatalf("records left after everything expired and was swept = %d", got)
	}
}

func TestCorruptRecordIsReportedNotReplayed(t *testing.T) {
	e, _ := newTestEngine(t, nil)
	for _, name := range []string{"header", "body", "truncated"} {
		t.Run(name, func(t *testing.T) {
			k := "corrupt-" + name
			res := begin(t, e, req(k, "a"))
			if err := res.Claim.Complete(ctx, response(strings.Repeat(`{"a":1}`, 100))); err != nil {
				t.Fatal(err)
			}
			err := e.DamageForTest(key(k), func(v []byte) []byte {
				switch name {
				case "header":
					v[4] ^= 0x40
				case "body":
					v[len(v)-10] ^= 0x01
				default:
					v = v[:len(v)/2]
				}
				return v
			})
			if err != nil {
				t.Fatal(err)
			}
			e.EvictCacheForTest()
			if _, err := e.Begin(ctx, req(k, "a")); !errors.Is(err, engine.ErrCorrupt) {
				t.Fatalf("Begin on a damaged record: %v; want ErrCorrupt", err)
			}
			if _, err := e.Get(ctx, key(k)); !errors.Is(err, engine.ErrCorrupt) {
				t.Fatalf("Get on a damaged record: %v; want ErrCorrupt", err)
			}
			var bad int
			_ = e.Scan(ctx, engine.ScanOptions{WithBody: true, Prefix: record.ScopePrefix("tenant-a")}, func(en engine.Entry) error {
				if en.Key == key(k) && errors.Is(en.Err, engine.ErrCorrupt) {
					bad++
				}
				return nil
			})
			if bad != 1 {
				t.Fatalf("Scan reported %d damaged entries for the key; want 1", bad)
			}
			// An operator can delete it, after which the key is fresh.
			if err := e.Delete(ctx, key(k)); err != nil {
				t.Fatal(err)
			}
			mustOutcome(t, begin(t, e, req(k, "a")), engine.Proceed)
		})
	}
}

func TestGetDeleteScan(t *testing.T) {
	e, _ := newTestEngine(t, nil)
	mk := func(scope, endpoint, k string) record.Key {
		return record.Key{Scope: scope, Endpoint: endpoint, Key: k}
	}
	keys := []record.Key{
		mk("a", "POST /x", "1"), mk("a", "POST /x", "2"), mk("a", "POST /y", "1"),
		mk("b", "POST /x", "1"), mk("a\x01", "POST /x", "1"),
	}
	for _, k := range keys {
		res := begin(t, e, engine.Request{Key: k, Fingerprint: record.Sum([]byte("f")), RequestID: k.String()})
		if err := res.Claim.Complete(ctx, response(k.String())); err != nil {
			t.Fatal(err)
		}
	}
	inflight := begin(t, e, engine.Request{Key: mk("a", "POST /x", "3"), Fingerprint: record.Sum([]byte("f"))})
	tests := []struct {
		prefix record.Prefix
		want   int
	}{
		{record.AllKeys(), 6},
		{record.ScopePrefix("a"), 4},
		{record.EndpointPrefix("a", "POST /x"), 3},
		{record.ScopePrefix("b"), 1},
		{record.ScopePrefix("c"), 0},
	}
	for _, tt := range tests {
		n := 0
		if err := e.Scan(ctx, engine.ScanOptions{Prefix: tt.prefix}, func(en engine.Entry) error {
			if en.Err != nil {
				t.Fatal(en.Err)
			}
			n++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n != tt.want {
			t.Errorf("Scan(%+v) visited %d records; want %d", tt.prefix, n, tt.want)
		}
	}
	r, err := e.Get(ctx, keys[0])
	if err != nil || r.State != record.Completed || string(r.Body) != keys[0].String() {
		t.Fatalf("Get = %+v, %v", r, err)
	}
	r, err = e.Get(ctx, mk("a", "POST /x", "3"))
	if err != nil || r.State != record.Claimed {
		t.Fatalf("Get of an in-flight key = %+v, %v", r, err)
	}
	if err := e.Delete(ctx, mk("a", "POST /x", "3")); !errors.Is(err, engine.ErrInProgress) {
		t.Fatalf("Delete of an in-flight key: %v; want ErrInProgress", err)
	}
	_ = inflight.Claim.Release(ctx)
	if err := e.Delete(ctx, keys[0]); err != nil {
		t.Fatal(err)
	}
	if err := e.Delete(ctx, keys[0]); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("second Delete: %v; want ErrNotFound", err)
	}
	if _, err := e.Get(ctx, keys[0]); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	mustOutcome(t, begin(t, e, engine.Request{Key: keys[0], Fingerprint: record.Sum([]byte("other"))}), engine.Proceed)
}

// TestExactlyOnceUnderContention hammers a few keys from thousands of
// goroutines and checks that the "handler" ran exactly once per key and
// that every caller saw the same response.
func TestExactlyOnceUnderContention(t *testing.T) {
	for _, d := range []engine.Durability{engine.Synced, engine.Relaxed} {
		t.Run(d.String(), func(t *testing.T) {
			e, _ := newTestEngine(t, &engine.Options{Durability: d})
			const keys, goroutines = 8, 2000
			var runs [keys]atomic.Int32
			var mu sync.Mutex
			seen := map[int]string{}
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					k := g % keys
					r := req(fmt.Sprint(k), "same-body")
					for {
						res, err := e.Begin(ctx, r)
						if err != nil {
							t.Error(err)
							return
						}
						var body string
						switch res.Outcome {
						case engine.Proceed:
							n := runs[k].Add(1)
							body = fmt.Sprintf("key %d run %d", k, n)
							if g%7 == 0 && n == 1 {
								// Some first runs fail and release; a
								// waiter must then run it instead.
								runs[k].Add(-1)
								if err := res.Claim.Release(ctx); err != nil {
									t.Error(err)
								}
								continue
							}
							if err := res.Claim.Complete(ctx, engine.Response{Status: 200, Body: []byte(body)}); err != nil {
								t.Error(err)
								return
							}
						case engine.Replay:
							body = string(res.Record.Body)
						default:
							t.Errorf("outcome %v", res.Outcome)
							return
						}
						mu.Lock()
						if prev, ok := seen[k]; ok && prev != body {
							t.Errorf("key %d: responses %q and %q", k, prev, body)
						}
						seen[k] = body
						mu.Unlock()
						return
					}
				}()
			}
			wg.Wait()
			for k := range keys {
				if n := runs[k].Load(); n != 1 {
					t.Errorf("key %d: handler ran %d times; want 1", k, n)
				}
			}
		})
	}
}

func TestOptionsValidation(t *testing.T) {
	bad := []engine.Options{
		{Stripes: 3},
		{MaxBodySize: -1},
		{Durability: 9},
		{TTL: 30 * 24 * time.Hour, GenerationWidth: time.Hour},
		{GenerationWidth: 1500 * time.Millisecond},
	}
	for _, o := range bad {
		if _, err := engine.Open(t.TempDir(), &o); err == nil {
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
	// The width of an existing directory is kept whatever the options say.
	dir := t.TempDir()
	e, err := engine.Open(dir, &engine.Options{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	w := e.Stats().GenerationWidth
	e.Close()
	e, err = engine.Open(dir, &engine.Options{TTL: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if got := e.Stats().GenerationWidth; got != w || w != 7*time.Minute+30*time.Second {
		t.Fatalf("width after reopening with another TTL = %v; want %v (7m30s)", got, w)
	}
}

func TestSecondOpenRefused(t *testing.T) {
	_, dir := newTestEngine(t, nil)
	if e2, err := engine.Open(dir, nil); err == nil {
		e2.Close()
		t.Fatal("a second engine opened a directory already in use")
	}
}

// TestReplayAllocs bounds the allocations of the hot replay path (a retry
// of a recently completed request): the decoded record, its strings, its
// headers and its body, and nothing proportional to the body beyond the
// decompressed copy.
func TestReplayAllocs(t *testing.T) {
	e, _ := newTestEngine(t, nil)
	body := strings.Repeat(`{"id":"call_1","status":"queued"},`, 60)
	res := begin(t, e, req("k", "a"))
	if err := res.Claim.Complete(ctx, response(body)); err != nil {
		t.Fatal(err)
	}
	r := req("k", "a")
	cached := testing.AllocsPerRun(200, func() {
		if res, err := e.Begin(ctx, r); err != nil || res.Outcome != engine.Replay {
			t.Fatalf("%v %v", res.Outcome, err)
		}
	})
	// A cached replay hands out the shared record: nothing to allocate.
	if cached > 0 {
		t.Errorf("a cached replay allocates %v times; want none", cached)
	}
	t.Logf("allocations per cached replay: %v", cached)
}

// TestColdReplayAllocs pins what a replay from storage allocates, with the
// record cache off, for a body stored as it is (2 KB, compressed by Pebble
// in its blocks) and a compressed one (64 KB), in the memtable and in
// flushed tables: at most 6 allocations, and of the body's size only the
// decoded copy handed to the caller.
func TestColdReplayAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector (sync.Pool drops objects); run without -race")
	}
	e, _ := newTestEngine(t, &engine.Options{CacheSize: -1})
	sizes := []int{2 << 10, 64 << 10}
	bodies := make([]string, len(sizes))
	for i, n := range sizes {
		bodies[i] = string(payload.JSON(nil, n, uint64(i+1)))
		res := begin(t, e, req(fmt.Sprint("k", n), "a"))
		if err := res.Claim.Complete(ctx, response(bodies[i])); err != nil {
			t.Fatal(err)
		}
	}
	for _, where := range []string{"memtable", "tables"} {
		if where == "tables" {
			if err := e.FlushForTest(); err != nil {
				t.Fatal(err)
			}
		}
		for i, n := range sizes {
			r := req(fmt.Sprint("k", n), "a")
			replay := func() {
				res, err := e.Begin(ctx, r)
				if err != nil || res.Outcome != engine.Replay || len(res.Record.Body) != len(bodies[i]) {
					t.Fatalf("%v %v", res.Outcome, err)
				}
			}
			replay() // warm Pebble's caches
			allocs := testing.AllocsPerRun(200, replay)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			const runs = 200
			for range runs {
				replay()
			}
			runtime.ReadMemStats(&after)
			perOp := (after.TotalAlloc - before.TotalAlloc) / runs
			t.Logf("%s, %d B body: %v allocations, %d bytes per replay", where, len(bodies[i]), allocs, perOp)
			if allocs > 6 {
				t.Errorf("%s, %d B body: a replay from storage allocates %v times; want at most 6", where, n, allocs)
			}
			// The decoded body (rounded up to the allocator's size class or
			// page, so up to a few KiB more), plus a constant for the record,
			// its text fields and the lookup (about 700 bytes): a second
			// copy of the body would exceed it.
			if limit := uint64(len(bodies[i]))*5/4 + 2<<10; perOp > limit {
				t.Errorf("%s, %d B body: a replay from storage allocates %d bytes; want at most %d (the body once)", where, n, perOp, limit)
			}
		}
	}
}

// TestReplayIsolatedFromCallerBuffers checks that Complete copies what it
// caches: the caller may reuse its response's slices at once.
func TestReplayIsolatedFromCallerBuffers(t *testing.T) {
	e, _ := newTestEngine(t, nil)
	res := begin(t, e, req("k", "a"))
	resp := response("original body")
	if err := res.Claim.Complete(ctx, resp); err != nil {
		t.Fatal(err)
	}
	copy(resp.Body, "XXXXXXXXXXXXX")
	resp.Header[0] = record.Header{Name: "Content-Type", Value: "text/plain"}
	assertReplay(t, begin(t, e, req("k", "a")), response("original body"))
}

// TestDiskBytesCountsEveryFile checks Stats.DiskBytes against the files in
// the directory, also after a reopen (Pebble's own usage metric then leaves
// out blob files written earlier).
func TestDiskBytesCountsEveryFile(t *testing.T) {
	dir := t.TempDir()
	e, err := engine.Open(dir, &engine.Options{MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat(`{"id":"call_1","status":"queued","n":12345},`, 100)
	for i := range 2000 {
		res := begin(t, e, req(fmt.Sprint("k", i), "a"))
		if err := res.Claim.Complete(ctx, response(fmt.Sprint(i, body))); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	onDisk := func() uint64 {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, ent := range ents {
			if fi, err := ent.Info(); err == nil && fi.Mode().IsRegular() {
				n += uint64(fi.Size())
			}
		}
		return n
	}
	e, err = engine.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	got, want := e.Stats().DiskBytes, onDisk()
	if got < want*9/10 || got > want*11/10 {
		t.Errorf("DiskBytes after reopen = %d; the directory's files hold %d", got, want)
	}
}

// TestBytesWrittenCountsWhatReachesFiles: every completed record passes
// through the write-ahead log, so BytesWritten covers at least the bodies
// written, and it only grows.
func TestBytesWrittenCountsWhatReachesFiles(t *testing.T) {
	e, _ := newTestEngine(t, nil)
	before := e.Stats().BytesWritten
	body := make([]byte, 2000)
	rng := rand.NewChaCha8([32]byte{7})
	const n = 200
	for i := range n {
		_, _ = rng.Read(body) // incompressible, so the log holds every byte
		res := begin(t, e, req(fmt.Sprint("w", i), "a"))
		if err := res.Claim.Complete(ctx, response(string(body))); err != nil {
			t.Fatal(err)
		}
	}
	after := e.Stats().BytesWritten
	if after < before || after-before < n*uint64(len(body)) {
		t.Fatalf("BytesWritten grew from %d to %d over %d records of %d random bytes; want at least %d more", before, after, n, len(body), n*len(body))
	}
}

// TestInMemoryLeavesNoFiles: an InMemory engine answers like any other
// and touches no directory on disk; it refuses ReadOnly, which needs one.
func TestInMemoryLeavesNoFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	e, err := engine.Open(dir, &engine.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	res := begin(t, e, req("k", "a"))
	if err := res.Claim.Complete(ctx, response("body")); err != nil {
		t.Fatal(err)
	}
	if res := begin(t, e, req("k", "a")); res.Outcome != engine.Replay {
		t.Fatalf("retry: %v; want Replay", res.Outcome)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an InMemory engine left %s on disk (%v)", dir, err)
	}
	if _, err := engine.Open(dir, &engine.Options{InMemory: true, ReadOnly: true}); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("Open(InMemory, ReadOnly): %v; want ErrInvalid", err)
	}
}

// TestStatsCounts checks the counters Stats adds up, some of which are
// kept per stripe (answers from the cache) and some engine-wide.
func TestStatsCounts(t *testing.T) {
	e, _ := newTestEngine(t, nil)
	ctx := context.Background()
	res := begin(t, e, req("k", "a"))
	mustOutcome(t, res, engine.Proceed)
	if err := res.Claim.Complete(ctx, response("A")); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		mustOutcome(t, begin(t, e, req("k", "a")), engine.Replay)
	}
	mustOutcome(t, begin(t, e, req("k", "b")), engine.Conflict)
	mustOutcome(t, begin(t, e, req("other", "a")), engine.Proceed)
	st := e.Stats()
	got := [...]uint64{st.Begins, st.Proceeds, st.Replays, st.Conflicts, st.CacheHits, st.Completes}
	want := [...]uint64{6, 2, 3, 1, 4, 1}
	if got != want {
		t.Fatalf("Begins, Proceeds, Replays, Conflicts, CacheHits, Completes = %v; want %v", got, want)
	}
}
