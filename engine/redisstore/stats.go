package redisstore

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/internal/sharedstore"
)

// Stats returns the Store's counters since New: the request counters of
// engine.Stats, as this Store (this replica) saw them. The fields about
// local storage (Lookups, CacheHits, generations, fsyncs, disk bytes)
// stay zero: Redis keeps the records.
func (s *Store) Stats() engine.Stats { return s.st.Stats() }

// roundTrips is a go-redis hook that counts what the Store's own client
// sends (see Open); a client given to New is not hooked, and its round
// trips are not counted.
type roundTrips struct{ c *sharedstore.Counters }

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
	h.c.RoundTrips.Add(1)
	var reply redis.Error
	if err != nil && !errors.Is(err, redis.Nil) && !errors.As(err, &reply) {
		h.c.RoundTripErrors.Add(1)
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
