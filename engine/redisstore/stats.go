package redisstore

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/idemkv/idemkv/engine"
)

// counters are the Store's request counters, reported by Stats.
type counters struct {
	begins, proceeds, recovered, replays, conflicts, inprogress, waits,
	completes, releases, deletes, leasesLost, corrupt, errors,
	roundTrips, roundTripErrors atomic.Uint64
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
		RoundTrips: c.roundTrips.Load(), RoundTripErrors: c.roundTripErrors.Load(),
	}
}

// roundTrips is a go-redis hook that counts what the Store's own client
// sends (see Open); a client given to New is not hooked, and its round
// trips are not counted.
type roundTrips struct{ c *counters }

func (h roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.count(err)
		return err
	}
}

func (h roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.count(err)
		return err
	}
}

// count counts one round trip, and as failed one that got no answer (a
// connection refused or broken, a timeout): not a server's error reply,
// such as the NOSCRIPT that makes a script be sent whole.
func (h roundTrips) count(err error) {
	h.c.roundTrips.Add(1)
	var reply redis.Error
	if err != nil && !errors.Is(err, redis.Nil) && !errors.As(err, &reply) {
		h.c.roundTripErrors.Add(1)
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
