package engine_test

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/idemkv/idemkv/bench/payload"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/expiry"
	"github.com/idemkv/idemkv/record"
)

// TestLookupResultsOwnTheirMemory: records that a lookup decoded
// while Pebble's value was pinned (Begin's Replay, Get, a recovered claim)
// must keep their content after Pebble reuses that memory: memtables are
// recycled, blocks evicted, files compacted and deleted.
func TestLookupResultsOwnTheirMemory(t *testing.T) {
	fs := vfs.NewMem()
	o := engine.WithFSForTest(&engine.Options{CacheSize: -1, MemTableSize: 256 << 10, BlockCacheSize: 256 << 10, Durability: engine.Relaxed, Logger: quietLogger()}, fs)
	e, err := engine.Open("data", o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Close() }()
	headers := func(n int) []record.Header {
		var h []record.Header
		for i := range n {
			h = append(h, record.Header{Name: fmt.Sprint("X-H", i), Value: strings.Repeat(fmt.Sprint(i), 20)})
		}
		return h
	}
	type stored struct {
		k    string
		resp engine.Response
	}
	var keys []stored
	for i, size := range []int{10, 300, 2 << 10, 64 << 10} {
		for _, nh := range []int{0, 1, 4, 5} {
			k := fmt.Sprintf("k%d-%d", i, nh)
			res := begin(t, e, req(k, "a"))
			mustOutcome(t, res, engine.Proceed)
			if err := res.Claim.Checkpoint(ctx, "phase-"+k, []byte("cp-"+k)); err != nil {
				t.Fatal(err)
			}
			resp := engine.Response{Status: 201, Header: headers(nh), Body: payload.JSON(nil, size, uint64(i*10+nh+1))}
			if err := res.Claim.Complete(ctx, resp); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, stored{k, resp})
		}
	}
	// An interrupted claim with a checkpoint, left by a "crash" (Close).
	res := begin(t, e, req("lease", "a"))
	if err := res.Claim.Checkpoint(ctx, "phase-lease", []byte("cp-lease")); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if e, err = engine.Open("data", o); err != nil {
		t.Fatal(err)
	}

	type held struct {
		what string
		got  *record.Record
		want *record.Record
	}
	var all []held
	snapshot := func(round string) {
		for _, s := range keys {
			r := begin(t, e, req(s.k, "a"))
			assertReplay(t, r, s.resp)
			g, err := e.Get(ctx, key(s.k))
			if err != nil {
				t.Fatal(err)
			}
			if r.Record.Checkpoint == nil || string(r.Record.Checkpoint.Data) != "cp-"+s.k {
				t.Fatalf("%s: checkpoint %+v", s.k, r.Record.Checkpoint)
			}
			all = append(all, held{round + " replay " + s.k, r.Record, r.Record.Clone()}, held{round + " get " + s.k, g, g.Clone()})
		}
		c := begin(t, e, req("lease", "b"))
		mustOutcome(t, c, engine.Conflict)
		g, err := e.Get(ctx, key("lease"))
		if err != nil {
			t.Fatal(err)
		}
		if g.State != record.Claimed || g.Checkpoint == nil || string(g.Checkpoint.Data) != "cp-lease" {
			t.Fatalf("Get of an interrupted claim: %+v", g)
		}
		all = append(all, held{round + " conflict lease", c.Record, c.Record.Clone()}, held{round + " get lease", g, g.Clone()})
	}
	churn := func(prefix string) {
		for i := range 400 {
			k := fmt.Sprint(prefix, i)
			r := begin(t, e, req(k, "a"))
			if err := r.Claim.Complete(ctx, engine.Response{Status: 200, Body: payload.JSON(nil, 3000, uint64(i)+99)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.FlushForTest(); err != nil {
			t.Fatal(err)
		}
	}
	snapshot("memtable") // the records are in the log, replayed into a memtable
	churn("a")
	snapshot("tables")
	churn("b")
	churn("c")
	for _, h := range all {
		if !reflect.DeepEqual(h.got, h.want) {
			t.Errorf("%s: changed after more writes: %+v; want %+v", h.what, h.got, h.want)
		}
	}
	// The recovered claim carries its checkpoint.
	rec := begin(t, e, req("lease", "a"))
	if !rec.Recovered || rec.Claim.LastCheckpoint() == nil || string(rec.Claim.LastCheckpoint().Data) != "cp-lease" {
		t.Fatalf("recovery: %+v", rec)
	}
	_ = rec.Claim.Release(ctx)
}

// TestLookupExpiry: a completed record that has expired in storage
// is not replayed nor returned by Get; an interrupted claim keeps binding
// its key past the TTL that its lease record carries, as before.
func TestLookupExpiry(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	clock := expiry.NewFakeClock(t0)
	dir := t.TempDir()
	o := &engine.Options{Clock: clock, TTL: time.Hour, CacheSize: -1, Logger: quietLogger()}
	e, err := engine.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	res := begin(t, e, req("done", "a"))
	if err := res.Claim.Complete(ctx, response("x")); err != nil {
		t.Fatal(err)
	}
	_ = begin(t, e, req("held", "a")) // interrupted by Close
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if e, err = engine.Open(dir, o); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	assertReplay(t, begin(t, e, req("done", "a")), response("x"))
	clock.Advance(time.Hour)
	if _, err := e.Get(ctx, key("done")); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("Get of an expired record: %v", err)
	}
	r := begin(t, e, req("done", "b"))
	mustOutcome(t, r, engine.Proceed)
	if r.Recovered || r.Record != nil {
		t.Fatalf("an expired record recovered: %+v", r)
	}
	if err := r.Claim.Complete(ctx, response("y")); err != nil {
		t.Fatal(err)
	}
	e.EvictCacheForTest()
	assertReplay(t, begin(t, e, req("done", "b")), response("y"))
}

// TestConflictAnswerHoldsNoBody: a Conflict with a completed record hands
// out the record "without a body" (WithoutBody). A record decoded from
// storage with one to four headers holds them in its own allocation
// (record.recordWithHeaders), which points at the decoded body: the answer
// must not share them, or every Conflict answer a caller keeps holds a full
// copy of the stored body.
func TestConflictAnswerHoldsNoBody(t *testing.T) {
	e, _ := newTestEngine(t, &engine.Options{CacheSize: -1, Durability: engine.Relaxed})
	body := payload.JSON(nil, 1<<20, 7)
	res := begin(t, e, req("k", "a"))
	if err := res.Claim.Complete(ctx, engine.Response{Status: 201, Header: []record.Header{{Name: "Content-Type", Value: "application/json"}}, Body: body}); err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		var m runtime.MemStats
		for range 3 {
			runtime.GC()
		}
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	const n = 32
	kept := make([]*record.Record, 0, n)
	before := heap()
	for range n {
		c := begin(t, e, req("k", "b"))
		mustOutcome(t, c, engine.Conflict)
		if c.Record.Body != nil {
			t.Fatal("a conflict answer carries the body")
		}
		kept = append(kept, c.Record)
	}
	after := heap()
	runtime.KeepAlive(kept)
	perAnswer := (int64(after) - int64(before)) / n
	t.Logf("heap grew by %d bytes per kept Conflict answer (body %d bytes)", perAnswer, len(body))
	if perAnswer > 64<<10 {
		t.Fatalf("each kept Conflict answer holds %d bytes of heap; the body it does not carry is %d bytes", perAnswer, len(body))
	}
}
