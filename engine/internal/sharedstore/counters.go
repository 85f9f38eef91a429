package sharedstore

import (
	"errors"
	"sync/atomic"

	"github.com/idemkv/idemkv/engine"
)

// Counters are a store's request counters, reported by its Stats.
type Counters struct {
	Begins, Proceeds, Recovered, Replays, Conflicts, InProgress, Waits,
	Completes, Releases, Deletes, LeasesLost, Corrupt, Errors,
	RoundTrips, RoundTripErrors atomic.Uint64
	Claims atomic.Int64
}

// Count counts one answer of Begin.
func (c *Counters) Count(res engine.Result, err error) {
	switch {
	case err != nil:
		c.CountErr(err)
	case res.Outcome == engine.Proceed:
		c.Proceeds.Add(1)
		c.Claims.Add(1)
		if res.Recovered {
			c.Recovered.Add(1)
		}
	case res.Outcome == engine.Replay:
		c.Replays.Add(1)
	case res.Outcome == engine.Conflict:
		c.Conflicts.Add(1)
	case res.Outcome == engine.InProgress:
		c.InProgress.Add(1)
	}
}

// CountErr counts an error returned to a caller.
func (c *Counters) CountErr(err error) {
	switch {
	case errors.Is(err, engine.ErrCorrupt):
		c.Corrupt.Add(1)
		c.Errors.Add(1)
	case errors.Is(err, engine.ErrStorage):
		c.Errors.Add(1)
	case errors.Is(err, engine.ErrLeaseLost):
		c.LeasesLost.Add(1)
	}
}

// Stats returns the counters as engine.Stats; the fields about local
// storage stay zero.
func (c *Counters) Stats() engine.Stats {
	return engine.Stats{
		Begins: c.Begins.Load(), Proceeds: c.Proceeds.Load(), Recovered: c.Recovered.Load(),
		Replays: c.Replays.Load(), Conflicts: c.Conflicts.Load(), InProgress: c.InProgress.Load(),
		Waits: c.Waits.Load(), Completes: c.Completes.Load(), Releases: c.Releases.Load(),
		Deletes: c.Deletes.Load(), LeasesLost: c.LeasesLost.Load(), Corrupt: c.Corrupt.Load(),
		Errors: c.Errors.Load(), Claims: c.Claims.Load(),
		RoundTrips: c.RoundTrips.Load(), RoundTripErrors: c.RoundTripErrors.Load(),
	}
}
