package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/redisstore"
	"github.com/idemkv/idemkv/engine/redistest"
	"github.com/idemkv/idemkv/record"
)

// openStore opens a Store on the server at url, closed when t ends.
func openStore(t testing.TB, url string, o redisstore.Options) *redisstore.Store {
	t.Helper()
	if o.ScopeSecret == nil {
		o.ScopeSecret = testSecret
	}
	s, err := redisstore.Open(context.Background(), url, &o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// testSecret is the scope secret of the tests' stores.
var testSecret = []byte("a test scope secret, 32 bytes..")

func request(k string) engine.Request {
	return engine.Request{
		Key:         record.Key{Scope: "t", Endpoint: "POST /x", Key: k},
		Fingerprint: record.Sum([]byte("body")), RequestID: "req-" + k, WhenInProgress: engine.NoWait,
	}
}

// TestClaimOutlivesTTL: a handler that runs longer than the TTL keeps its
// key, because renewals extend the record's expiry with its lease.
func TestClaimOutlivesTTL(t *testing.T) {
	url := redistest.Start(t, nil)
	o := redisstore.Options{TTL: 100 * time.Millisecond, Lease: 150 * time.Millisecond, RenewEvery: 30 * time.Millisecond, Prefix: "ttl:"}
	a, b := openStore(t, url, o), openStore(t, url, o)
	ctx := context.Background()
	res := proceed(t, a, "k")
	for range 5 { // 500ms: five TTLs, three leases
		time.Sleep(100 * time.Millisecond)
		if got, err := b.Begin(ctx, request("k")); err != nil || got.Outcome != engine.InProgress {
			t.Fatalf("a duplicate while the handler runs: %v %v; want InProgress", got.Outcome, err)
		}
	}
	if err := res.Claim.Complete(ctx, engine.Response{Status: 200, Body: []byte("done")}); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Begin(ctx, request("k")); err != nil || got.Outcome != engine.Replay || string(got.Record.Body) != "done" {
		t.Fatalf("after Complete: %v %v", got.Outcome, err)
	}
}

// TestMaxHold: a claim that is never finished stops renewing after
// MaxHold, and the key is recovered as a crashed replica's would be.
func TestMaxHold(t *testing.T) {
	url := redistest.Start(t, nil)
	o := redisstore.Options{Lease: 150 * time.Millisecond, RenewEvery: 30 * time.Millisecond, MaxHold: 300 * time.Millisecond, Prefix: "hold:"}
	a, b := openStore(t, url, o), openStore(t, url, o)
	ctx := context.Background()
	res := proceed(t, a, "k")
	time.Sleep(200 * time.Millisecond) // past one Lease: renewals hold it
	if got, err := b.Begin(ctx, request("k")); err != nil || got.Outcome != engine.InProgress {
		t.Fatalf("within MaxHold: %v %v; want InProgress", got.Outcome, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := b.Begin(ctx, request("k"))
		if err != nil {
			t.Fatal(err)
		}
		if got.Outcome == engine.Proceed {
			if !got.Recovered {
				t.Fatal("the key came back without Recovered")
			}
			_ = got.Claim.Release(ctx)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the forgotten claim still holds the key: %v", got.Outcome)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := res.Claim.Complete(ctx, engine.Response{Status: 200}); !errors.Is(err, engine.ErrLeaseLost) {
		t.Fatalf("Complete of the forgotten claim: %v; want ErrLeaseLost", err)
	}
}

// TestCloseDuringBegin closes Stores while Begins run on them: no Begin
// returns Proceed once Close has returned, every claim handed out ends
// with nil or ErrClosed, and nothing panics (run with -race: renewals
// are registered under the Store's lock).
func TestCloseDuringBegin(t *testing.T) {
	url := redistest.Start(t, nil)
	ctx := context.Background()
	for i := range 30 {
		s, err := redisstore.Open(ctx, url, &redisstore.Options{Prefix: "close:", ScopeSecret: testSecret})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var closedAt time.Time
		for j := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := s.Begin(ctx, request(fmt.Sprint(i, "-", j)))
				returned := time.Now()
				switch {
				case errors.Is(err, engine.ErrClosed):
					return // closed before or during the call
				case err != nil:
					t.Errorf("Begin: %v", err)
					return
				case res.Outcome != engine.Proceed:
					t.Errorf("a new key: %v", res.Outcome)
					return
				}
				mu.Lock()
				late := !closedAt.IsZero() && returned.After(closedAt)
				mu.Unlock()
				if late {
					t.Errorf("Begin returned Proceed after Close had returned")
				}
				if err := res.Claim.Complete(ctx, engine.Response{Status: 200}); err != nil && !errors.Is(err, engine.ErrClosed) {
					t.Errorf("Complete: %v", err)
				}
			}()
		}
		time.Sleep(time.Duration(i%6) * 200 * time.Microsecond)
		_ = s.Close()
		mu.Lock()
		closedAt = time.Now()
		mu.Unlock()
		wg.Wait()
	}
}

// proceed begins a request for the new key k on s and fails the test
// unless it proceeds.
func proceed(t *testing.T, s *redisstore.Store, k string) engine.Result {
	t.Helper()
	res, err := s.Begin(context.Background(), request(k))
	if err != nil || res.Outcome != engine.Proceed {
		t.Fatalf("Begin(%s): %v %v; want Proceed", k, res.Outcome, err)
	}
	return res
}

// TestOpenRefusesServerWithoutPersistence: a Redis that persists nothing
// forgets every record when it restarts, and every retry then runs its
// handler again; Open refuses it unless the caller accepts that, and takes
// a server with an append-only file or with save points.
func TestOpenRefusesServerWithoutPersistence(t *testing.T) {
	ctx := context.Background()
	volatile := redistest.Start(t, &redistest.Options{Config: []string{"--appendonly", "no", "--save", ""}})
	if _, err := redisstore.Open(ctx, volatile, &redisstore.Options{ScopeSecret: testSecret}); !errors.Is(err, redisstore.ErrNoPersistence) {
		t.Fatalf("Open of a server without persistence: %v; want ErrNoPersistence", err)
	}
	s := openStore(t, volatile, redisstore.Options{AllowNoPersistence: true})
	if err := s.CheckPersistence(ctx); !errors.Is(err, redisstore.ErrNoPersistence) {
		t.Fatalf("CheckPersistence of an accepted volatile server: %v; want ErrNoPersistence", err)
	}
	for _, cfg := range [][]string{
		{"--appendonly", "yes"},
		{"--appendonly", "no", "--save", "3600 1"},
	} {
		url := redistest.Start(t, &redistest.Options{Config: cfg})
		s := openStore(t, url, redisstore.Options{})
		if err := s.CheckPersistence(ctx); err != nil {
			t.Fatalf("CheckPersistence with %v: %v", cfg, err)
		}
	}
}

// TestServersBeforeSetNXGet: on a server that refuses SET … NX GET
// (before Redis 7.0), a Store claims new keys by a script that does the
// same, with the same answers.
func TestServersBeforeSetNXGet(t *testing.T) {
	url := redistest.Start(t, nil)
	ctx := context.Background()
	s := openStore(t, url, redisstore.Options{Prefix: fmt.Sprintf("old%d:", prefixes.Add(1))})
	s.WithoutSetNXGet()
	res := proceed(t, s, "k")
	if got, err := s.Begin(ctx, request("k")); err != nil || got.Outcome != engine.InProgress {
		t.Fatalf("a duplicate in flight: %v %v", got.Outcome, err)
	}
	if err := res.Claim.Complete(ctx, engine.Response{Status: 201, Body: []byte("A")}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Begin(ctx, request("k")); err != nil || got.Outcome != engine.Replay || string(got.Record.Body) != "A" {
		t.Fatalf("a retry: %v %v", got.Outcome, err)
	}
	other := request("k")
	other.Fingerprint = record.Sum([]byte("another body"))
	if got, err := s.Begin(ctx, other); err != nil || got.Outcome != engine.Conflict || got.OriginalRequestID != "req-k" {
		t.Fatalf("another body: %v %q %v", got.Outcome, got.OriginalRequestID, err)
	}
	// Each of the four Begins ran the claim script, not SET … NX GET:
	// 11 script calls in all here (a first call of a script is two, the
	// EVALSHA that finds it not loaded and the EVAL), against 6 with
	// SET … NX GET (the scope check, the look, the Complete).
	info, err := rawClient(t, url).Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	scripts := 0
	for _, line := range strings.Split(info, "\r\n") {
		if strings.HasPrefix(line, "cmdstat_evalsha:") || strings.HasPrefix(line, "cmdstat_eval:") {
			var n int
			if _, err := fmt.Sscanf(line[strings.Index(line, "calls="):], "calls=%d", &n); err == nil {
				scripts += n
			}
		}
	}
	if scripts < 10 {
		t.Fatalf("%d script calls; want 11 (the claims were not the script's)\n%s", scripts, info)
	}
}

// TestCheckpointsWhileRenewing: recovery points recorded while the lease
// is being renewed are kept, and the two do not race (run with -race).
func TestCheckpointsWhileRenewing(t *testing.T) {
	url := redistest.Start(t, nil)
	ctx := context.Background()
	for _, layout := range []int{1, 2} {
		s := openStore(t, url, redisstore.Options{Prefix: fmt.Sprintf("cpr%d:", prefixes.Add(1)), Lease: 100 * time.Millisecond, Layout: layout})
		res := proceed(t, s, "k")
		for i := range 20 {
			if err := res.Claim.Checkpoint(ctx, fmt.Sprint("phase-", i), []byte("data")); err != nil {
				t.Fatalf("layout %d: checkpoint %d: %v", layout, i, err)
			}
			time.Sleep(10 * time.Millisecond) // renewals every ~33 ms meanwhile
		}
		r, err := s.Get(ctx, request("k").Key)
		if err != nil || r.Checkpoint == nil || r.Checkpoint.Phase != "phase-19" {
			t.Fatalf("layout %d: after the checkpoints: %+v %v", layout, r, err)
		}
		if err := res.Claim.Complete(ctx, engine.Response{Status: 201}); err != nil {
			t.Fatalf("layout %d: %v", layout, err)
		}
	}
}
