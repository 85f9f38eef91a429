package redisstore

import (
	"errors"
	"fmt"

	"github.com/idemkv/idemkv/engine"
)

// ErrCollision is returned when two different keys map to one Redis key
// (their SHA-256 prefixes collide). The request is refused rather than
// answered from another key's record. It also matches engine.ErrStorage.
var ErrCollision = errors.New("redisstore: two idempotency keys share one Redis key")

// ErrNoPersistence is returned by Open (and CheckPersistence) for a Redis
// server that persists nothing, neither an append-only file nor RDB
// snapshots: a restart of that server forgets every record, and every
// retry then runs its handler again. Options.AllowNoPersistence accepts
// such a server.
var ErrNoPersistence = errors.New("redisstore: the Redis server persists nothing (appendonly no, no save points): a restart of it forgets every record, and every retry then runs its handler again")

// storageErr wraps an error from Redis for op so that it matches
// engine.ErrStorage (the middleware answers 503).
func storageErr(op string, err error) error {
	return fmt.Errorf("redisstore: %s: %w: %w", op, engine.ErrStorage, err)
}

// ErrScopeSecret is returned by Open (and CheckScopeSecret) when
// Options.ScopeSecret is not the secret that the server's records are
// stored under, nor one of Options.PreviousScopeSecrets: this replica
// would find none of them, and every retry it took would run its handler
// again. Every replica must be given the same secret.
var ErrScopeSecret = errors.New("redisstore: the scope secret differs from the one the server's records are stored under (every replica needs the same ScopeSecret; during a rotation, the old one in PreviousScopeSecrets)")
