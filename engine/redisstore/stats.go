package redisstore

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/idemkv/idemkv/engine"
)

// counters are the Store's request counters, reported by Stats.
type counters struct {
	begins, proceeds, recovered, replays, conflicts, inprogress, waits,
	completes, releases, deletes, leasesLost, corrupt, errors atomic.Uint64
	claims atomic.Int64
}

// count counts one answer of Begin.
func (c *counters) count(res engine.Result, err error) {
	switch {
	case err != nil:
		c.countErr(err)
	case res.Outcome == engine.Proceed:
		c.proceeds.Add(1)
		c.claims.Add(1)
		if res.Recovered {
			c.recovered.Add(1)
		}
	case res.Outcome == engine.Replay:
		c.replays.Add(1)
	case res.Outcome == engine.Conflict:
		c.conflicts.Add(1)
	case res.Outcome == engine.InProgress:
		c.inprogress.Add(1)
	}
}

// countErr counts an error returned to a caller.
func (c *counters) countErr(err error) {
	switch {
	case errors.Is(err, engine.ErrCorrupt):
		c.corrupt.Add(1)
		c.errors.Add(1)
	case errors.Is(err, engine.ErrStorage):
		c.errors.Add(1)
	case errors.Is(err, engine.ErrLeaseLost):
		c.leasesLost.Add(1)
	}
}

// Stats returns the Store's counters since New: the request counters of
// engine.Stats, as this Store (this replica) saw them. The fields about
// local storage (Lookups, CacheHits, generations, fsyncs, disk bytes)
// stay zero: Redis keeps the records.
func (s *Store) Stats() engine.Stats {
	c := &s.st
	return engine.Stats{
		Begins: c.begins.Load(), Proceeds: c.proceeds.Load(), Recovered: c.recovered.Load(),
		Replays: c.replays.Load(), Conflicts: c.conflicts.Load(), InProgress: c.inprogress.Load(),
		Waits: c.waits.Load(), Completes: c.completes.Load(), Releases: c.releases.Load(),
		Deletes: c.deletes.Load(), LeasesLost: c.leasesLost.Load(), Corrupt: c.corrupt.Load(),
		Errors: c.errors.Load(), Claims: c.claims.Load(),
	}
}

// Health returns engine.ErrClosed after Close, and otherwise the error of
// a PING (matching engine.ErrStorage) if Redis does not answer it before
// ctx ends.
func (s *Store) Health(ctx context.Context) error {
	if s.closed.Load() {
		return engine.ErrClosed
	}
	if err := s.c.Ping(ctx).Err(); err != nil {
		return s.scriptErr("ping", ctx, err)
	}
	return nil
}
