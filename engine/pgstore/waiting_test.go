package pgstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/pgstore"
)

// startWaiters starts n Begins with Wait on key k in each store, and
// returns their results once all have returned. One that proceeds
// completes its claim at once.
func startWaiters(ctx context.Context, stores []*pgstore.Store, k string, n int) func() []engine.Result {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var results []engine.Result
	for _, s := range stores {
		for range n {
			wg.Go(func() {
				req := txReq(k, "a")
				req.WhenInProgress = engine.Wait
				res, err := s.Begin(ctx, req)
				if err != nil {
					res = engine.Result{Outcome: 255}
				}
				if res.Outcome == engine.Proceed {
					if err := res.Claim.Complete(ctx, engine.Response{Status: 201, Body: []byte("done")}); err != nil {
						res = engine.Result{Outcome: 254}
					}
				}
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
			})
		}
	}
	return func() []engine.Result { wg.Wait(); return results }
}

func roundTrips(stores []*pgstore.Store) uint64 {
	var n uint64
	for _, s := range stores {
		n += s.Stats().RoundTrips
	}
	return n
}

// TestWaitingDuplicatesDoNotLoadPostgres: 200 duplicates on two replicas
// waiting for one slow request send PostgreSQL no statements while they
// wait (they are woken by LISTEN/NOTIFY; their fallback poll is a minute),
// and about one each in all: their own first ask, and one woken ask per
// replica whose replay the others share. Counted by the stores' tracers.
func TestWaitingDuplicatesDoNotLoadPostgres(t *testing.T) {
	f := newTxFixture(t, pgstore.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := f.o
	o.Lease, o.MaxPollInterval = 2*time.Minute, time.Minute
	replicas := []*pgstore.Store{openStore(t, f.url, &o), openStore(t, f.url, &o)}
	first := beginAs(t, f.store, txReq("slow", "a"), engine.Proceed)

	const perReplica = 100
	const waiters = 2 * perReplica
	before := roundTrips(replicas)
	start := time.Now()
	results := startWaiters(ctx, replicas, "slow", perReplica)
	for replicas[0].Stats().Waits+replicas[1].Stats().Waits < waiters {
		time.Sleep(5 * time.Millisecond)
	}
	waitStart, waitBefore := time.Now(), roundTrips(replicas)
	time.Sleep(3 * time.Second)
	waiting := roundTrips(replicas) - waitBefore
	waitTime := time.Since(waitStart)
	if err := first.Claim.Complete(ctx, engine.Response{Status: 201, Body: []byte("done")}); err != nil {
		t.Fatal(err)
	}
	got := results()
	total := roundTrips(replicas) - before
	for _, r := range got {
		if r.Outcome != engine.Replay || string(r.Record.Body) != "done" {
			t.Fatalf("a waiter got %v; want the replay (woken by the notification)", r.Outcome)
		}
	}
	perWaiterSecond := float64(waiting) / (waiters * waitTime.Seconds())
	perWaiter := float64(total) / waiters
	t.Logf("%d waiters: %d statements in %.1f s of waiting (%.4f per waiter per second); %d in all from their arrival to their replay in %.1f s (%.2f per waiter)",
		waiters, waiting, waitTime.Seconds(), perWaiterSecond, total, time.Since(start).Seconds(), perWaiter)
	if perWaiterSecond > 0.1 {
		t.Fatalf("%.2f statements per waiter per second of waiting; want next to none", perWaiterSecond)
	}
	if perWaiter > 3 {
		t.Fatalf("%.1f statements per waiter in all; want about one", perWaiter)
	}
}

// TestWaitersPollWhenNotNotified: a completion that notifies no one (the
// waiters' mark cleared, as after a notification lost while the listening
// connection was remade) still ends the wait, by the slow poll; so does a
// holder that crashed, when its lease runs out, and then one waiter runs.
func TestWaitersPollWhenNotNotified(t *testing.T) {
	f := newTxFixture(t, pgstore.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := f.o
	o.Lease, o.MaxPollInterval = 2*time.Minute, 200*time.Millisecond
	waiter := openStore(t, f.url, &o)
	first := beginAs(t, f.store, txReq("k", "a"), engine.Proceed)
	results := startWaiters(ctx, []*pgstore.Store{waiter}, "k", 20)
	for waiter.Stats().Waits < 20 {
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := f.pool.Exec(ctx, `UPDATE `+o.Table+` SET w = false`); err != nil {
		t.Fatal(err)
	}
	if err := first.Claim.Complete(ctx, engine.Response{Status: 201, Body: []byte("done")}); err != nil {
		t.Fatal(err)
	}
	for _, r := range results() {
		if r.Outcome != engine.Replay {
			t.Fatalf("a waiter got %v; want the replay (by polling)", r.Outcome)
		}
	}

	o2 := o
	o2.Lease, o2.RenewEvery, o2.MaxPollInterval = 300*time.Millisecond, -1, time.Minute
	short := openStore(t, f.url, &o2)
	beginAs(t, short, txReq("crashed", "a"), engine.Proceed)
	_ = short.Close() // the crash: no renewal, no release
	proceeded := 0
	for _, r := range startWaiters(ctx, []*pgstore.Store{waiter}, "crashed", 5)() {
		switch r.Outcome {
		case engine.Proceed:
			proceeded++
		case engine.Replay:
		default:
			t.Fatalf("a waiter of a crashed claim got %v", r.Outcome)
		}
	}
	if proceeded != 1 {
		t.Fatalf("%d waiters took over the crashed claim; want 1", proceeded)
	}
}
