package sharedstore

import (
	"context"
	"sync"
	"time"
)

// Renewal is how a claim of a shared store keeps its lease while the
// handler runs.
type Renewal struct {
	// Every is how often (the store's RenewEvery), MaxHold for how long
	// after Start.
	Every, MaxHold time.Duration
	Start          time.Time
	// Renew extends the lease once, within ctx; held is false when the
	// claim is no longer this one's (taken over, or ended).
	Renew func(ctx context.Context) (held bool, err error)
}

// Begin arms the renewals and returns the function that ends them (the
// claim's Complete or Release; it may be called more than once). A
// renewal runs every Every until then, until the lease is lost, MaxHold
// has passed (the lease then runs out: a forgotten claim is not held for
// ever) or the store closes (storeCtx ends). A failed renewal is tried
// again Every later; if the lease runs out meanwhile, another replica may
// take the key over, and the claim's Complete fails with
// engine.ErrLeaseLost.
//
// No goroutine waits meanwhile: each renewal is a timer's (time.AfterFunc),
// so a claim that ends before its first renewal — most do — costs one
// timer. A renewal runs only between enter and leave (the store's count
// of work that Close waits for); enter false means the store has closed.
func (r Renewal) Begin(storeCtx context.Context, enter func() bool, leave func()) (end func()) {
	var mu sync.Mutex
	ended := false
	var t *time.Timer
	mu.Lock() // until t is set: the first renewal reads it
	defer mu.Unlock()
	t = time.AfterFunc(r.Every, func() {
		mu.Lock()
		stop := ended
		mu.Unlock()
		if stop || !enter() {
			return
		}
		defer leave()
		if storeCtx.Err() != nil || time.Since(r.Start) >= r.MaxHold {
			return
		}
		ctx, cancel := context.WithTimeout(storeCtx, r.Every)
		held, err := r.Renew(ctx)
		cancel()
		if err == nil && !held {
			return
		}
		mu.Lock()
		if !ended {
			t.Reset(r.Every)
		}
		mu.Unlock()
	})
	return func() {
		mu.Lock()
		ended = true
		t.Stop()
		mu.Unlock()
	}
}
