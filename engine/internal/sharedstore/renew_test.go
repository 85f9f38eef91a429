package sharedstore

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// renewals counts a Renewal's calls of Renew and of enter and leave.
type renewals struct {
	renews, inside atomic.Int64
	held           atomic.Bool
	closed         atomic.Bool
	calls          chan struct{}
	wg             sync.WaitGroup
}

func newRenewals() *renewals {
	r := &renewals{calls: make(chan struct{}, 100)}
	r.held.Store(true)
	return r
}

func (r *renewals) start(ctx context.Context, every, maxHold time.Duration) (end func()) {
	return Renewal{Every: every, MaxHold: maxHold, Start: time.Now(), Renew: func(context.Context) (bool, error) {
		r.renews.Add(1)
		r.calls <- struct{}{}
		return r.held.Load(), nil
	}}.Begin(ctx, r.enter, r.leave)
}

func (r *renewals) enter() bool {
	if r.closed.Load() {
		return false
	}
	r.wg.Add(1)
	r.inside.Add(1)
	return true
}

func (r *renewals) leave() { r.inside.Add(-1); r.wg.Done() }

func (r *renewals) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-r.calls:
		case <-time.After(10 * time.Second):
			t.Fatalf("after %d renewals, no more", r.renews.Load())
		}
	}
}

// quiet reports whether Renew is not called again within d.
func (r *renewals) quiet(d time.Duration) bool {
	r.wg.Wait()
	before := r.renews.Load()
	time.Sleep(d)
	return r.renews.Load() == before
}

// TestRenewalRenewsUntilEnded: the lease is renewed again and again
// while the claim is held, and never after its end.
func TestRenewalRenewsUntilEnded(t *testing.T) {
	r := newRenewals()
	end := r.start(context.Background(), 2*time.Millisecond, time.Hour)
	r.wait(t, 5)
	end()
	end() // twice is harmless
	if !r.quiet(20 * time.Millisecond) {
		t.Fatal("renewed after the claim ended")
	}
	if n := r.inside.Load(); n != 0 {
		t.Fatalf("%d renewals still counted as work", n)
	}
}

// TestRenewalStopsWhenTheClaimIsLost, at MaxHold, and when the store
// closes: a lost claim is not renewed again, a forgotten one is let go,
// and a closed store renews nothing.
func TestRenewalStopsWhenTheClaimIsLost(t *testing.T) {
	r := newRenewals()
	r.held.Store(false)
	defer r.start(context.Background(), 2*time.Millisecond, time.Hour)()
	r.wait(t, 1)
	if !r.quiet(20 * time.Millisecond) {
		t.Fatal("renewed a lost claim again")
	}

	r = newRenewals()
	defer r.start(context.Background(), 2*time.Millisecond, 10*time.Millisecond)()
	time.Sleep(15 * time.Millisecond)
	if !r.quiet(20 * time.Millisecond) {
		t.Fatal("renewed past MaxHold")
	}

	r = newRenewals()
	ctx, cancel := context.WithCancel(context.Background())
	defer r.start(ctx, 2*time.Millisecond, time.Hour)()
	r.wait(t, 1)
	cancel()
	r.closed.Store(true)
	if !r.quiet(20 * time.Millisecond) {
		t.Fatal("renewed after the store closed")
	}
}
