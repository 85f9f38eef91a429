package redisstore_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/redisstore"
	"github.com/idemkv/idemkv/engine/redistest"
	"github.com/redis/go-redis/v9"
)

// commandsProcessed reads the server's total_commands_processed (INFO
// stats); the INFO itself counts one.
func commandsProcessed(t *testing.T, rc *redis.Client) int64 {
	t.Helper()
	info, err := rc.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no total_commands_processed in INFO stats")
	return 0
}

func rawClient(t testing.TB, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opt)
	t.Cleanup(func() { rc.Close() })
	return rc
}

// startWaiters starts n Begins with Wait on key k in each store, and
// returns their results once all have returned. One that proceeds
// completes its claim at once.
func startWaiters(ctx context.Context, stores []*redisstore.Store, k string, n int) func() []engine.Result {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var results []engine.Result
	for _, s := range stores {
		for range n {
			wg.Go(func() {
				req := request(k)
				req.WhenInProgress = engine.Wait
				res, err := s.Begin(ctx, req)
				if err != nil {
					res = engine.Result{Outcome: 255}
				}
				if res.Outcome == engine.Proceed {
					if err := res.Claim.Complete(ctx, engine.Response{Status: 201}); err != nil {
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

// TestWaitingDuplicatesDoNotLoadRedis (finding 6): 200 duplicates on two
// replicas waiting for one slow request cost Redis well under one command
// per waiter per second (counted from INFO stats; polling cost about 59),
// and are all woken by the completion's notification: their fallback
// poll is a minute, longer than the test may take.
func TestWaitingDuplicatesDoNotLoadRedis(t *testing.T) {
	url := redistest.Start(t, nil)
	rc := rawClient(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := redisstore.Options{Prefix: "load:", Lease: 2 * time.Minute, MaxPollInterval: time.Minute}
	holder := openStore(t, url, o)
	replicas := []*redisstore.Store{openStore(t, url, o), openStore(t, url, o)}
	const perReplica = 100
	first := proceed(t, holder, "slow")

	const waiters = 2 * perReplica
	before := commandsProcessed(t, rc)
	start := time.Now()
	results := startWaiters(ctx, replicas, "slow", perReplica)
	for replicas[0].Stats().Waits+replicas[1].Stats().Waits < waiters {
		time.Sleep(5 * time.Millisecond)
	}
	// While they all wait.
	waitStart, waitBefore := time.Now(), commandsProcessed(t, rc)
	time.Sleep(3 * time.Second)
	waiting := commandsProcessed(t, rc) - waitBefore - 1 // less the INFO
	waitTime := time.Since(waitStart)
	if err := first.Claim.Complete(ctx, engine.Response{Status: 201, Body: []byte("done")}); err != nil {
		t.Fatal(err)
	}
	got := results()
	total := commandsProcessed(t, rc) - before - 3 // less the INFOs
	elapsed := time.Since(start)
	for _, r := range got {
		if r.Outcome != engine.Replay || string(r.Record.Body) != "done" {
			t.Fatalf("a waiter got %v; want the replay (woken by the notification)", r.Outcome)
		}
	}
	// Commands as Redis counts them: a script's own calls (TIME, HMGET...)
	// count too, so one ask is three or four.
	perWaiterSecond := float64(waiting) / (waiters * waitTime.Seconds())
	perWaiter := float64(total) / waiters
	t.Logf("%d waiters: %d commands in %.1f s of waiting (%.4f per waiter per second; target at most 1); "+
		"%d in all from their arrival to their replay in %.1f s (%.1f per waiter: its own ask, the wake-up, the completion)",
		waiters, waiting, waitTime.Seconds(), perWaiterSecond, total, elapsed.Seconds(), perWaiter)
	if perWaiterSecond > 1 {
		t.Fatalf("%.2f commands per waiter per second of waiting; want at most 1", perWaiterSecond)
	}
	if perWaiter > 8 {
		t.Fatalf("%.1f commands per waiter in all; want a few (one ask, a share of the wake-up)", perWaiter)
	}
}

// TestWaitersPollWhenNotNotified: a completion that publishes nothing (a
// holder of a version before notifications, or a publication lost while
// the subscription reconnected) still ends the wait, by the slow poll; so
// does a holder that crashed, when its lease runs out.
func TestWaitersPollWhenNotNotified(t *testing.T) {
	url := redistest.Start(t, nil)
	rc := rawClient(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := redisstore.Options{Prefix: "quiet:", Lease: 2 * time.Minute, MaxPollInterval: 200 * time.Millisecond}
	holder, waiter := openStore(t, url, o), openStore(t, url, o)
	first := proceed(t, holder, "k")
	results := startWaiters(ctx, []*redisstore.Store{waiter}, "k", 20)
	for waiter.Stats().Waits < 20 {
		time.Sleep(5 * time.Millisecond)
	}
	// As a holder that does not publish: the waiters' mark is gone.
	keys, err := rc.Keys(ctx, "quiet:{*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %v %v", keys, err)
	}
	if err := rc.SetRange(ctx, keys[0], 2, "0").Err(); err != nil { // the w byte of layout 2
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

	// A crashed holder: its lease runs out, and one waiter takes over.
	short := openStore(t, url, redisstore.Options{Prefix: "quiet:", Lease: 300 * time.Millisecond, RenewEvery: -1, MaxPollInterval: time.Minute})
	proceed(t, short, "crashed")
	results = startWaiters(ctx, []*redisstore.Store{waiter}, "crashed", 5)
	proceeded := 0
	for _, r := range results() {
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
