// Package storetest is the behaviour suite every idemkv store must pass:
// one table of cases, run against the embedded engine (in package engine's
// tests) and against Redis (in package redisstore's), so that the stores
// cannot drift apart. It is to stores what net/http/httptest is to
// handlers: a test helper, imported only by tests.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// Settings are what a case needs of the stores it opens.
type Settings struct {
	// TTL and Lease are the store's; zero means its defaults.
	TTL, Lease time.Duration
	// NoRenew asks for claims that do not extend their lease while they
	// run (a paused or partitioned replica), so that it expires after
	// Lease. Stores whose leases expire without renewal anyway ignore it.
	NoRenew bool
}

// Deployment is the stores of one case, all on the same fresh data.
type Deployment interface {
	// Store returns the first replica.
	Store() engine.Store
	// Replica returns another replica on the same data, or nil if the
	// store cannot have two at once (the embedded engine).
	Replica() engine.Store
	// Crash makes the first replica die without finishing its claims and
	// returns its replacement (a restarted process, or a new replica).
	Crash() engine.Store
}

// Factory opens a Deployment on fresh data for one case; it closes what it
// opened when t ends.
type Factory func(t *testing.T, s Settings) Deployment

type testCase struct {
	name     string
	settings Settings
	run      func(t *testing.T, d Deployment)
}

// Run runs every case against the stores f opens.
func Run(t *testing.T, f Factory) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, f(t, tc.settings))
		})
	}
}

var ctx = context.Background()

func key(k string) record.Key {
	return record.Key{Scope: "tenant-a", Endpoint: "POST /v1/payments", Key: k}
}

func req(k, body string) engine.Request {
	return engine.Request{Key: key(k), Fingerprint: record.Sum([]byte(body)), RequestID: "req-" + k + "-" + body}
}

func resp(body string) engine.Response {
	return engine.Response{
		Status: 201,
		Header: []record.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Location", Value: "/v1/payments/1"}},
		Body:   []byte(body),
	}
}

func begin(t *testing.T, s engine.Store, r engine.Request, want engine.Outcome) engine.Result {
	t.Helper()
	res, err := s.Begin(ctx, r)
	if err != nil {
		t.Fatalf("Begin(%s): %v", r.Key.Key, err)
	}
	if res.Outcome != want {
		t.Fatalf("Begin(%s) = %v (original %q); want %v", r.Key.Key, res.Outcome, res.OriginalRequestID, want)
	}
	return res
}

func checkReplay(t *testing.T, res engine.Result, want engine.Response) {
	t.Helper()
	r := res.Record
	if res.Outcome != engine.Replay || r == nil {
		t.Fatalf("outcome %v, record %v; want a replay", res.Outcome, r)
	}
	if r.Status != want.Status || string(r.Body) != string(want.Body) || fmt.Sprint(r.Header) != fmt.Sprint(want.Header) {
		t.Fatalf("replayed %d %v %q; want %d %v %q", r.Status, r.Header, r.Body, want.Status, want.Header, want.Body)
	}
}

func complete(t *testing.T, res engine.Result, body string) {
	t.Helper()
	if err := res.Claim.Complete(ctx, resp(body)); err != nil {
		t.Fatalf("Complete: %v", err)
	}
}

// eventually retries Begin until it answers want or the deadline passes.
func eventually(t *testing.T, s engine.Store, r engine.Request, want engine.Outcome, within time.Duration) engine.Result {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r.WhenInProgress = engine.NoWait
		res, err := s.Begin(ctx, r)
		if err == nil && res.Outcome == want {
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("Begin(%s) = %v, %v after %v; want %v", r.Key.Key, res.Outcome, err, within, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// other returns a second replica, or the first if there can be only one.
func other(d Deployment) engine.Store {
	if r := d.Replica(); r != nil {
		return r
	}
	return d.Store()
}

var cases = []testCase{
	{name: "first proceeds, retry replays verbatim", run: func(t *testing.T, d Deployment) {
		s := d.Store()
		res := begin(t, s, req("k", "a"), engine.Proceed)
		if res.Recovered || res.Claim.Attempt() != 1 {
			t.Fatalf("a new key: recovered %v attempt %d", res.Recovered, res.Claim.Attempt())
		}
		complete(t, res, `{"id":1}`)
		for range 3 {
			checkReplay(t, begin(t, s, req("k", "a"), engine.Replay), resp(`{"id":1}`))
		}
		checkReplay(t, begin(t, other(d), req("k", "a"), engine.Replay), resp(`{"id":1}`))
	}},
	{name: "another body conflicts and names the original", run: func(t *testing.T, d Deployment) {
		s := d.Store()
		res := begin(t, s, req("k", "a"), engine.Proceed)
		inflight := begin(t, other(d), req("k", "b"), engine.Conflict)
		if inflight.OriginalRequestID != "req-k-a" {
			t.Fatalf("conflict while in flight names %q", inflight.OriginalRequestID)
		}
		complete(t, res, "A")
		done := begin(t, other(d), req("k", "b"), engine.Conflict)
		if done.OriginalRequestID != "req-k-a" {
			t.Fatalf("conflict with the completed record names %q", done.OriginalRequestID)
		}
	}},
	{name: "keys are scoped by tenant and endpoint", run: func(t *testing.T, d Deployment) {
		s := d.Store()
		complete(t, begin(t, s, req("k", "a"), engine.Proceed), "tenant a")
		r := req("k", "a")
		r.Key.Scope = "tenant-b"
		complete(t, begin(t, s, r, engine.Proceed), "tenant b")
		r = req("k", "a")
		r.Key.Endpoint = "POST /v1/refunds"
		complete(t, begin(t, s, r, engine.Proceed), "refunds")
		checkReplay(t, begin(t, s, req("k", "a"), engine.Replay), resp("tenant a"))
	}},
	{name: "scopes are keyed digests, one on every replica and after a crash", run: func(t *testing.T, d Deployment) {
		const cred = "Bearer sk_storetest"
		s := d.Store().Scoper()
		if s == nil {
			t.Fatal("the store has no Scoper")
		}
		scope := s.Scope(cred)
		if len(scope) != 32 || scope == engine.LegacyScope(cred) || s.Scope("") != "" {
			t.Fatalf("scope %x of %q: want a 32-byte keyed digest", scope, cred)
		}
		if other(d).Scoper().Scope(cred) != scope {
			t.Fatal("two replicas digest a credential differently: neither would find the other's records")
		}
		if d.Crash().Scoper().Scope(cred) != scope {
			t.Fatal("the store digests a credential differently after a crash")
		}
	}},
	{name: "a wait gate bounds waiting", run: func(t *testing.T, d Deployment) {
		s := d.Store()
		res := begin(t, s, req("k", "a"), engine.Proceed)
		refuse := &testGate{admit: false}
		r := req("k", "a")
		r.WhenInProgress, r.Gate = engine.Wait, refuse
		got, err := other(d).Begin(ctx, r) // answered at once: no context deadline needed
		if err != nil || got.Outcome != engine.InProgress || refuse.entered.Load() != 1 || refuse.left.Load() != 0 {
			t.Fatalf("a refusing gate: %v %v, entered %d, left %d; want InProgress at once, 1, 0", got.Outcome, err, refuse.entered.Load(), refuse.left.Load())
		}
		admit := &testGate{admit: true}
		r.Gate = admit
		done := make(chan engine.Result, 1)
		go func() {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			got, _ := other(d).Begin(wctx, r)
			done <- got
		}()
		for admit.entered.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		complete(t, res, "done")
		if got := <-done; got.Outcome != engine.Replay || admit.entered.Load() != 1 || admit.left.Load() != 1 {
			t.Fatalf("an admitting gate: %v, entered %d, left %d; want Replay, 1, 1", got.Outcome, admit.entered.Load(), admit.left.Load())
		}
	}},
	{name: "in flight: NoWait answers InProgress", run: func(t *testing.T, d Deployment) {
		res := begin(t, d.Store(), req("k", "a"), engine.Proceed)
		r := req("k", "a")
		r.WhenInProgress = engine.NoWait
		got := begin(t, other(d), r, engine.InProgress)
		if got.OriginalRequestID != "req-k-a" {
			t.Fatalf("InProgress names %q", got.OriginalRequestID)
		}
		complete(t, res, "A")
	}},
	{name: "in flight: a waiter gets the replay", run: func(t *testing.T, d Deployment) {
		res := begin(t, d.Store(), req("k", "a"), engine.Proceed)
		got := make(chan engine.Result, 1)
		go func() {
			r, err := other(d).Begin(ctx, req("k", "a"))
			if err != nil {
				t.Error(err)
			}
			got <- r
		}()
		time.Sleep(50 * time.Millisecond)
		select {
		case r := <-got:
			t.Fatalf("the waiter returned %v before the claim completed", r.Outcome)
		default:
		}
		complete(t, res, "A")
		select {
		case r := <-got:
			checkReplay(t, r, resp("A"))
		case <-time.After(10 * time.Second):
			t.Fatal("the waiter did not wake")
		}
	}},
	{name: "release lets a waiter proceed", run: func(t *testing.T, d Deployment) {
		res := begin(t, d.Store(), req("k", "a"), engine.Proceed)
		got := make(chan engine.Result, 1)
		go func() {
			r, _ := other(d).Begin(ctx, req("k", "a"))
			got <- r
		}()
		time.Sleep(20 * time.Millisecond)
		if err := res.Claim.Release(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-got:
			if r.Outcome != engine.Proceed || r.Recovered {
				t.Fatalf("after a release the waiter got %v (recovered %v)", r.Outcome, r.Recovered)
			}
			complete(t, r, "B")
		case <-time.After(10 * time.Second):
			t.Fatal("the waiter did not wake")
		}
	}},
	{name: "a claim finishes once", run: func(t *testing.T, d Deployment) {
		res := begin(t, d.Store(), req("k", "a"), engine.Proceed)
		complete(t, res, "A")
		if err := res.Claim.Complete(ctx, resp("B")); !errors.Is(err, engine.ErrClaimDone) {
			t.Fatalf("second Complete: %v; want ErrClaimDone", err)
		}
		if err := res.Claim.Release(ctx); !errors.Is(err, engine.ErrClaimDone) {
			t.Fatalf("Release after Complete: %v; want ErrClaimDone", err)
		}
		checkReplay(t, begin(t, d.Store(), req("k", "a"), engine.Replay), resp("A"))
	}},
	{name: "bad input is refused", run: func(t *testing.T, d Deployment) {
		s := d.Store()
		if _, err := s.Begin(ctx, req("", "a")); !errors.Is(err, engine.ErrInvalidKey) {
			t.Fatalf("empty key: %v", err)
		}
		r := req("k", "a")
		r.Fingerprint.Version = 0
		if _, err := s.Begin(ctx, r); !errors.Is(err, engine.ErrInvalid) {
			t.Fatalf("no fingerprint: %v", err)
		}
		res := begin(t, s, req("k", "a"), engine.Proceed)
		if err := res.Claim.Complete(ctx, engine.Response{Status: 42}); !errors.Is(err, engine.ErrInvalid) {
			t.Fatalf("status 42: %v", err)
		}
	}},
	{name: "concurrent duplicates run once", run: func(t *testing.T, d Deployment) {
		runOnce(t, []engine.Store{d.Store()}, false)
	}},
	{name: "two replicas run a key once", run: func(t *testing.T, d Deployment) {
		r := d.Replica()
		if r == nil {
			t.Skip("this store has one replica at a time")
		}
		runOnce(t, []engine.Store{d.Store(), r}, false)
	}},
	{name: "a crashed claim is taken over once by many duplicates", settings: Settings{Lease: 300 * time.Millisecond}, run: func(t *testing.T, d Deployment) {
		for k := range hotKeys {
			begin(t, d.Store(), req(fmt.Sprint("hot-", k), "a"), engine.Proceed)
		}
		stores := []engine.Store{d.Crash()}
		if r := d.Replica(); r != nil {
			stores = append(stores, r)
		}
		runOnce(t, stores, true)
	}},
	{name: "a crashed claim is recovered", settings: Settings{Lease: 300 * time.Millisecond}, run: func(t *testing.T, d Deployment) {
		begin(t, d.Store(), req("k", "a"), engine.Proceed)
		s := d.Crash()
		res := eventually(t, s, req("k", "a"), engine.Proceed, 10*time.Second)
		if !res.Recovered || res.Claim.Attempt() != 2 || res.Record == nil || res.Record.RequestID != "req-k-a" {
			t.Fatalf("recovered %v attempt %d record %+v", res.Recovered, res.Claim.Attempt(), res.Record)
		}
		complete(t, res, "A2")
		checkReplay(t, begin(t, s, req("k", "a"), engine.Replay), resp("A2"))
	}},
	{name: "an expired lease is fenced off", settings: Settings{Lease: 200 * time.Millisecond, NoRenew: true}, run: func(t *testing.T, d Deployment) {
		old := begin(t, d.Store(), req("k", "a"), engine.Proceed)
		time.Sleep(300 * time.Millisecond)
		taker := eventually(t, other(d), req("k", "a"), engine.Proceed, 10*time.Second)
		if !taker.Recovered || taker.Claim.Token() == old.Claim.Token() {
			t.Fatalf("takeover: recovered %v, token %d (old %d)", taker.Recovered, taker.Claim.Token(), old.Claim.Token())
		}
		if err := old.Claim.Complete(ctx, resp("stale")); !errors.Is(err, engine.ErrLeaseLost) {
			t.Fatalf("Complete by the replica that lost its lease: %v; want ErrLeaseLost", err)
		}
		complete(t, taker, "fresh")
		checkReplay(t, begin(t, d.Store(), req("k", "a"), engine.Replay), resp("fresh"))
	}},
	{name: "recovery points survive a crash", settings: Settings{Lease: 300 * time.Millisecond}, run: func(t *testing.T, d Deployment) {
		res := begin(t, d.Store(), req("k", "a"), engine.Proceed)
		if cp := res.Claim.LastCheckpoint(); cp != nil {
			t.Fatalf("a new claim has a checkpoint: %+v", cp)
		}
		for _, p := range []struct{ phase, data string }{{"order", "ord_1"}, {"charged", "ch_1"}} {
			if err := res.Claim.Checkpoint(ctx, p.phase, []byte(p.data)); err != nil {
				t.Fatalf("Checkpoint(%s): %v", p.phase, err)
			}
		}
		checkPoint(t, "the holder", res.Claim.LastCheckpoint(), "charged", "ch_1")
		s := d.Crash()
		rec := eventually(t, s, req("k", "a"), engine.Proceed, 10*time.Second)
		if !rec.Recovered || rec.Record == nil {
			t.Fatalf("recovered %v, record %v", rec.Recovered, rec.Record)
		}
		checkPoint(t, "the recovered claim", rec.Claim.LastCheckpoint(), "charged", "ch_1")
		checkPoint(t, "the interrupted record", rec.Record.Checkpoint, "charged", "ch_1")
		if err := rec.Claim.Checkpoint(ctx, "emailed", nil); err != nil {
			t.Fatal(err)
		}
		complete(t, rec, "paid")
		replay := begin(t, s, req("k", "a"), engine.Replay)
		checkReplay(t, replay, resp("paid"))
		checkPoint(t, "the completed record", replay.Record.Checkpoint, "emailed", "")
		if err := rec.Claim.Checkpoint(ctx, "late", nil); !errors.Is(err, engine.ErrClaimDone) {
			t.Fatalf("Checkpoint after Complete: %v; want ErrClaimDone", err)
		}
	}},
	{name: "a recovery point is fenced and bounded", settings: Settings{Lease: 200 * time.Millisecond, NoRenew: true}, run: func(t *testing.T, d Deployment) {
		old := begin(t, d.Store(), req("k", "a"), engine.Proceed)
		if err := old.Claim.Checkpoint(ctx, "", nil); !errors.Is(err, engine.ErrInvalid) {
			t.Fatalf("empty phase: %v; want ErrInvalid", err)
		}
		if err := old.Claim.Checkpoint(ctx, "big", make([]byte, record.MaxCheckpointData+1)); !errors.Is(err, engine.ErrTooLarge) {
			t.Fatalf("oversized data: %v; want ErrTooLarge", err)
		}
		if err := old.Claim.Checkpoint(ctx, "order", []byte("ord_1")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		taker := eventually(t, other(d), req("k", "a"), engine.Proceed, 10*time.Second)
		checkPoint(t, "the taker", taker.Claim.LastCheckpoint(), "order", "ord_1")
		if err := old.Claim.Checkpoint(ctx, "charged", []byte("ch_stale")); !errors.Is(err, engine.ErrLeaseLost) {
			t.Fatalf("Checkpoint by the replica that lost its lease: %v; want ErrLeaseLost", err)
		}
		complete(t, taker, "paid")
		checkPoint(t, "the completed record", begin(t, d.Store(), req("k", "a"), engine.Replay).Record.Checkpoint, "order", "ord_1")
	}},
	{name: "an interrupted claim conflicts with another body", settings: Settings{Lease: 300 * time.Millisecond}, run: func(t *testing.T, d Deployment) {
		res := begin(t, d.Store(), req("k", "a"), engine.Proceed)
		if err := res.Claim.Checkpoint(ctx, "order", []byte("ord_1")); err != nil {
			t.Fatal(err)
		}
		s := d.Crash()
		time.Sleep(400 * time.Millisecond)
		got := begin(t, s, req("k", "b"), engine.Conflict)
		r := got.Record
		if got.OriginalRequestID != "req-k-a" || r == nil || r.State != record.Claimed || r.RequestID != "req-k-a" ||
			r.Fingerprint != record.Sum([]byte("a")) || r.Attempt != 1 {
			t.Fatalf("conflict with the interrupted claim: original %q, record %+v", got.OriginalRequestID, r)
		}
		checkPoint(t, "the interrupted record", r.Checkpoint, "order", "ord_1")
		// The original body still recovers it.
		rec := eventually(t, s, req("k", "a"), engine.Proceed, 10*time.Second)
		if !rec.Recovered {
			t.Fatal("the original body did not recover the claim")
		}
		complete(t, rec, "A")
	}},
	{name: "a refused response leaves the claim held", run: func(t *testing.T, d Deployment) {
		res := begin(t, d.Store(), req("k", "a"), engine.Proceed)
		if err := res.Claim.Complete(ctx, engine.Response{Status: 42}); !errors.Is(err, engine.ErrInvalid) {
			t.Fatalf("status 42: %v; want ErrInvalid", err)
		}
		if err := res.Claim.Complete(ctx, engine.Response{Status: 200, Body: make([]byte, 17<<20)}); !errors.Is(err, engine.ErrTooLarge) {
			t.Fatalf("a 17 MiB body: %v; want ErrTooLarge", err)
		}
		r := req("k", "a")
		r.WhenInProgress = engine.NoWait
		begin(t, other(d), r, engine.InProgress)
		if err := res.Claim.Release(ctx); err != nil {
			t.Fatalf("Release after refused responses: %v", err)
		}
		again := begin(t, other(d), req("k", "a"), engine.Proceed)
		if again.Recovered || again.Claim.Attempt() != 1 {
			t.Fatalf("after a release: recovered %v attempt %d", again.Recovered, again.Claim.Attempt())
		}
		complete(t, again, "A")
	}},
	{name: "a stale holder cannot finish a later claim", settings: Settings{Lease: 200 * time.Millisecond, NoRenew: true}, run: func(t *testing.T, d Deployment) {
		old := begin(t, d.Store(), req("k", "a"), engine.Proceed)
		time.Sleep(300 * time.Millisecond)
		taker := eventually(t, other(d), req("k", "a"), engine.Proceed, 10*time.Second)
		if err := taker.Claim.Release(ctx); err != nil {
			t.Fatal(err)
		}
		// The record is gone; a new claim starts from scratch (attempt 1,
		// as the first one did) and the old holder must not touch it.
		fresh := begin(t, other(d), req("k", "a"), engine.Proceed)
		if err := old.Claim.Checkpoint(ctx, "stale", nil); !errors.Is(err, engine.ErrLeaseLost) {
			t.Fatalf("stale Checkpoint: %v; want ErrLeaseLost", err)
		}
		if err := old.Claim.Complete(ctx, resp("stale")); !errors.Is(err, engine.ErrLeaseLost) {
			t.Fatalf("stale Complete: %v; want ErrLeaseLost", err)
		}
		complete(t, fresh, "fresh")
		checkReplay(t, begin(t, d.Store(), req("k", "a"), engine.Replay), resp("fresh"))

		// The same after Delete, and for a stale Release.
		del := deleterOf(t, d.Store())
		old2 := begin(t, d.Store(), req("k2", "a"), engine.Proceed)
		time.Sleep(300 * time.Millisecond)
		if err := del.Delete(ctx, key("k2")); err != nil {
			t.Fatalf("Delete of an expired claim: %v", err)
		}
		fresh2 := begin(t, other(d), req("k2", "a"), engine.Proceed)
		if err := old2.Claim.Release(ctx); !errors.Is(err, engine.ErrLeaseLost) {
			t.Fatalf("stale Release: %v; want ErrLeaseLost", err)
		}
		complete(t, fresh2, "fresh2")
		checkReplay(t, begin(t, d.Store(), req("k2", "a"), engine.Replay), resp("fresh2"))
	}},
	{name: "delete", run: func(t *testing.T, d Deployment) {
		del := deleterOf(t, d.Store())
		if err := del.Delete(ctx, key("none")); !errors.Is(err, engine.ErrNotFound) {
			t.Fatalf("Delete of a missing key: %v; want ErrNotFound", err)
		}
		if err := del.Delete(ctx, record.Key{}); !errors.Is(err, engine.ErrInvalidKey) {
			t.Fatalf("Delete of an empty key: %v; want ErrInvalidKey", err)
		}
		res := begin(t, d.Store(), req("k", "a"), engine.Proceed)
		if err := del.Delete(ctx, key("k")); !errors.Is(err, engine.ErrInProgress) {
			t.Fatalf("Delete while in flight: %v; want ErrInProgress", err)
		}
		complete(t, res, "A")
		if err := del.Delete(ctx, key("k")); err != nil {
			t.Fatalf("Delete of a completed record: %v", err)
		}
		again := begin(t, d.Store(), req("k", "b"), engine.Proceed)
		if again.Recovered {
			t.Fatal("a deleted record came back")
		}
		complete(t, again, "B")
		checkReplay(t, begin(t, d.Store(), req("k", "b"), engine.Replay), resp("B"))
	}},
	{name: "a waiter gives up when its context ends", run: func(t *testing.T, d Deployment) {
		res := begin(t, d.Store(), req("k", "a"), engine.Proceed)
		c, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := other(d).Begin(c, req("k", "a")); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("waiting Begin: %v; want context.DeadlineExceeded", err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("the waiter returned %v after its deadline", el)
		}
		complete(t, res, "A")
		checkReplay(t, begin(t, other(d), req("k", "a"), engine.Replay), resp("A"))
	}},
	{name: "large bodies replay byte for byte", run: func(t *testing.T, d Deployment) {
		for _, n := range []int{0, 1, 64 << 10, 4 << 20} {
			body := make([]byte, n)
			for i := range body {
				body[i] = byte(i*7 + i/251) // incompressible enough to matter, not random
			}
			k := fmt.Sprint("big-", n)
			res := begin(t, d.Store(), req(k, "a"), engine.Proceed)
			if err := res.Claim.Complete(ctx, engine.Response{Status: 200, Body: body}); err != nil {
				t.Fatalf("%d bytes: %v", n, err)
			}
			got := begin(t, other(d), req(k, "a"), engine.Replay)
			if !bytes.Equal(got.Record.Body, body) {
				t.Fatalf("%d bytes: replayed %d bytes, not the same", n, len(got.Record.Body))
			}
		}
	}},
	{name: "a closed store refuses", run: func(t *testing.T, d Deployment) {
		s := d.Store()
		res := begin(t, s, req("k", "a"), engine.Proceed)
		if err := s.Health(ctx); err != nil {
			t.Fatalf("Health of an open store: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := s.Health(ctx); !errors.Is(err, engine.ErrClosed) {
			t.Fatalf("Health after Close: %v; want ErrClosed", err)
		}
		if _, err := s.Begin(ctx, req("k2", "a")); !errors.Is(err, engine.ErrClosed) {
			t.Fatalf("Begin after Close: %v; want ErrClosed", err)
		}
		if err := res.Claim.Complete(ctx, resp("A")); !errors.Is(err, engine.ErrClosed) {
			t.Fatalf("Complete after Close: %v; want ErrClosed", err)
		}
		if _, err := s.Get(ctx, key("k")); !errors.Is(err, engine.ErrClosed) {
			t.Fatalf("Get after Close: %v; want ErrClosed", err)
		}
		if err := s.Delete(ctx, key("k")); !errors.Is(err, engine.ErrClosed) {
			t.Fatalf("Delete after Close: %v; want ErrClosed", err)
		}
	}},
	{name: "stats count every answer", run: func(t *testing.T, d Deployment) {
		s := d.Store()
		before := s.Stats()
		res := begin(t, s, req("k", "a"), engine.Proceed)
		if got := s.Stats().Claims - before.Claims; got != 1 {
			t.Fatalf("Claims while one is held: +%d; want +1", got)
		}
		complete(t, res, "A")
		begin(t, s, req("k", "a"), engine.Replay)
		begin(t, s, req("k", "b"), engine.Conflict)
		res = begin(t, s, req("k2", "a"), engine.Proceed)
		r := req("k2", "a")
		r.WhenInProgress = engine.NoWait
		begin(t, s, r, engine.InProgress)
		if err := res.Claim.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, key("k")); err != nil {
			t.Fatal(err)
		}
		st := s.Stats()
		for _, c := range []struct {
			name      string
			got, want uint64
		}{
			{"Begins", st.Begins - before.Begins, 5},
			{"Proceeds", st.Proceeds - before.Proceeds, 2},
			{"Replays", st.Replays - before.Replays, 1},
			{"Conflicts", st.Conflicts - before.Conflicts, 1},
			{"InProgress", st.InProgress - before.InProgress, 1},
			{"Completes", st.Completes - before.Completes, 1},
			{"Releases", st.Releases - before.Releases, 1},
			{"Deletes", st.Deletes - before.Deletes, 1},
		} {
			if c.got != c.want {
				t.Errorf("Stats.%s grew by %d; want %d", c.name, c.got, c.want)
			}
		}
		if st.Claims != before.Claims {
			t.Errorf("Claims after every claim finished: %d; want %d", st.Claims, before.Claims)
		}
	}},
	{name: "an expired record is not replayed", settings: Settings{TTL: time.Second}, run: func(t *testing.T, d Deployment) {
		complete(t, begin(t, d.Store(), req("k", "a"), engine.Proceed), "A")
		time.Sleep(1200 * time.Millisecond)
		res := begin(t, other(d), req("k", "a"), engine.Proceed)
		if res.Recovered {
			t.Fatal("an expired record came back as an interrupted claim")
		}
		complete(t, res, "A again")
	}},
	{name: "a response's own TTL is kept, and cut to the store's", settings: Settings{TTL: 3 * time.Second}, run: func(t *testing.T, d Deployment) {
		// The lower bounds are sleeps; each check that a record is still
		// there comes at least a second before it expires.
		s := d.Store()
		short := begin(t, s, req("short", "a"), engine.Proceed)
		r := resp("S")
		r.TTL = time.Second
		if err := short.Claim.Complete(ctx, r); err != nil {
			t.Fatal(err)
		}
		checkReplay(t, begin(t, other(d), req("short", "a"), engine.Replay), resp("S"))
		long := begin(t, s, req("long", "a"), engine.Proceed)
		r = resp("L")
		r.TTL = time.Hour // more than the store's: cut to it
		if err := long.Claim.Complete(ctx, r); err != nil {
			t.Fatal(err)
		}
		bad := begin(t, s, req("bad", "a"), engine.Proceed)
		r.TTL = -time.Second
		if err := bad.Claim.Complete(ctx, r); !errors.Is(err, engine.ErrInvalid) {
			t.Fatalf("a negative TTL: %v; want ErrInvalid", err)
		}
		complete(t, bad, "B") // refused, the claim is still held
		time.Sleep(1300 * time.Millisecond)
		if res := begin(t, other(d), req("short", "a"), engine.Proceed); res.Recovered {
			t.Fatal("an expired record came back as an interrupted claim")
		}
		checkReplay(t, begin(t, other(d), req("long", "a"), engine.Replay), resp("L"))
		time.Sleep(2 * time.Second)
		begin(t, other(d), req("long", "a"), engine.Proceed)
	}},
}

// deleterOf returns s's Delete, which both stores have but engine.Store
// does not require.
func deleterOf(t *testing.T, s engine.Store) interface {
	Delete(context.Context, record.Key) error
} {
	t.Helper()
	del, ok := s.(interface {
		Delete(context.Context, record.Key) error
	})
	if !ok {
		t.Skip("this store has no Delete")
	}
	return del
}

func checkPoint(t *testing.T, what string, cp *record.Checkpoint, phase, data string) {
	t.Helper()
	if cp == nil || cp.Phase != phase || string(cp.Data) != data {
		t.Fatalf("%s: checkpoint %+v; want %s %q", what, cp, phase, data)
	}
}

// runOnce sends 64 concurrent requests per key over stores and checks that
// exactly one proceeded for each key and the rest replayed its response.
// runOnce sends 64 duplicates of each of hotKeys keys at once, spread
// over stores, and checks that each key's request runs once (a takeover,
// Recovered, if recovered) and that the others replay its response.
func runOnce(t *testing.T, stores []engine.Store, recovered bool) {
	var wg sync.WaitGroup
	for k := range hotKeys {
		var runs atomic.Int32
		key := fmt.Sprint("hot-", k)
		for i := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := stores[i%len(stores)].Begin(ctx, req(key, "a"))
				if err != nil {
					t.Error(err)
					return
				}
				switch res.Outcome {
				case engine.Proceed:
					if runs.Add(1) != 1 {
						t.Errorf("%s ran twice", key)
					}
					if res.Recovered != recovered {
						t.Errorf("%s: Proceed, Recovered %v", key, res.Recovered)
					}
					time.Sleep(5 * time.Millisecond)
					if err := res.Claim.Complete(ctx, resp("once "+key)); err != nil {
						t.Error(err)
					}
				case engine.Replay:
					if string(res.Record.Body) != "once "+key {
						t.Errorf("%s replayed %q", key, res.Record.Body)
					}
				default:
					t.Errorf("%s: %v", key, res.Outcome)
				}
			}()
		}
	}
	wg.Wait()
}

// hotKeys is how many keys runOnce sends duplicates of.
const hotKeys = 4

// testGate is an engine.WaitGate that admits or refuses every wait, and
// counts.
type testGate struct {
	admit         bool
	entered, left atomic.Int64
}

func (g *testGate) Enter(record.Key) bool { g.entered.Add(1); return g.admit }
func (g *testGate) Leave(record.Key)      { g.left.Add(1) }
