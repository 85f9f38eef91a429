package sharedstore

import (
	"context"
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

// Run renews every Every until done is closed, the lease is lost, MaxHold
// has passed (the lease then runs out: a forgotten claim is not held for
// ever) or stop (the store's Close) is closed. A failed renewal is tried
// again at the next tick; if the lease runs out meanwhile, another replica
// may take the key over, and the claim's Complete fails with
// engine.ErrLeaseLost.
func (r Renewal) Run(storeCtx context.Context, done <-chan struct{}) {
	t := time.NewTicker(r.Every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-storeCtx.Done():
			return
		case <-t.C:
			if time.Since(r.Start) >= r.MaxHold {
				return
			}
			ctx, cancel := context.WithTimeout(storeCtx, r.Every)
			held, err := r.Renew(ctx)
			cancel()
			if err == nil && !held {
				return
			}
		}
	}
}
