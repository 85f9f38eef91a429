package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/redis/go-redis/v9"
)

// The server keeps, in the hash Prefix + "scope", what replicas must
// agree on about scopes:
//
//	check  the engine.Scoper check value of the secret records are
//	       stored under (8 bytes)
//	since  when the first replica with keyed digests started (unix
//	       seconds): records of versions before it, stored under
//	       version-1 digests, are looked up until one TTL and MaxHold
//	       (and Lease) after it
//
// Both are set by the first replica to start (HSETNX) and never expire.

// scopeScript sets the fields that are missing and returns both.
var scopeScript = redis.NewScript(`
redis.call('HSETNX', KEYS[1], 'check', ARGV[1])
redis.call('HSETNX', KEYS[1], 'since', ARGV[2])
return redis.call('HMGET', KEYS[1], 'check', 'since')
`)

// Scoper returns the Store's Scoper (see Options.ScopeSecret).
func (s *Store) Scoper() *engine.Scoper { return s.scoper.Load() }

// CheckScopeSecret checks Options.ScopeSecret against the secret the
// server's records are stored under: it returns an error matching
// ErrScopeSecret if it is another (one that is neither ScopeSecret nor
// one of PreviousScopeSecrets); the first replica to start records its
// own. It also learns the server's upgrade window (see engine.Scoper). A
// check value of a previous secret is replaced by the current one's, so
// that, once every replica has the new secret, the old one can go. Open
// calls it; a Store made by New should call it once before use.
func (s *Store) CheckScopeSecret(ctx context.Context) error {
	cur := s.scoper.Load()
	key := s.opts.Prefix + "scope"
	now := time.Now()
	v, err := scopeScript.Run(ctx, s.c, []string{key}, cur.Check(), now.Unix()).Slice()
	if err != nil {
		return storageErr("scope secret check", err)
	}
	if len(v) != 2 {
		return storageErr("scope secret check", fmt.Errorf("unexpected reply %v", v))
	}
	check, _ := v[0].(string)
	since, _ := v[1].(string)
	switch cur.Knows([]byte(check)) {
	case -1:
		return fmt.Errorf("%w (hash %s)", ErrScopeSecret, key)
	case 0:
	default:
		if err := s.c.HSet(ctx, key, "check", cur.Check()).Err(); err != nil {
			return storageErr("scope secret check", err)
		}
	}
	secs, err := strconv.ParseInt(since, 10, 64)
	if err != nil {
		return storageErr("scope secret check", fmt.Errorf("field since of %s is %q", key, since))
	}
	until := time.Unix(secs, 0).Add(s.opts.TTL + s.opts.MaxHold + s.opts.Lease)
	if !now.Before(until) {
		return nil
	}
	scoper, err := engine.NewScoper(engine.ScopeKeys{Secret: s.opts.ScopeSecret, Previous: s.opts.PreviousScopeSecrets, LegacyUntil: until})
	if err != nil {
		return err
	}
	s.scoper.Store(scoper)
	return nil
}
