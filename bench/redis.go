package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/redisstore"
	"github.com/redis/go-redis/v9"
)

// redisSystem is the claim/complete pattern that people write by hand on
// Redis, through go-redis over loopback: a first request claims its key
// with SET NX and a lease expiry, then stores the response with SET and
// the record's expiry; a retry is a GET. Keys carry a prefix of the run,
// and close deletes them (it never flushes the database).
type redisSystem struct {
	d      *dataset
	rdb    *redis.Client
	prefix string
}

// Expiries the Redis baseline sets: a lease while the request runs, and
// the record's time to live, as the engine's defaults.
const (
	redisLease = 5 * time.Minute
	redisTTL   = 24 * time.Hour
)

// openRedisSystem connects to the server at url with a pool of at least
// conns connections.
func openRedisSystem(url string, conns int, d *dataset) (*redisSystem, error) {
	rdb, err := dialRedis(url, conns)
	if err != nil {
		return nil, err
	}
	return &redisSystem{d: d, rdb: rdb, prefix: runPrefix("idemkv-bench:")}, nil
}

// dialRedis connects to the server at url with a pool of at least conns
// connections, and checks it with a PING.
func dialRedis(url string, conns int) (*redis.Client, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("%w: redis URL: %w", ErrInvalid, err)
	}
	o.PoolSize = max(o.PoolSize, conns)
	o.MinIdleConns = min(conns, 256)
	rdb := redis.NewClient(o)
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis at %s: %w", url, err)
	}
	if err := settleAOF(context.Background(), rdb); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis at %s: %w", url, err)
	}
	return rdb, nil
}

// settleAOF rewrites the server's append-only file (BGREWRITEAOF), if it
// keeps one, and waits for the rewrite to end, so that every system
// measured on the server starts from a compacted file: none inherits
// another's file grown to just below the size that triggers a rewrite (a
// fork and a copy of the data set, which takes CPU from the run; measured
// back to back, the second of two systems ran at 0.72-0.88x or
// 0.97-1.08x of the first depending on the order, until this).
func settleAOF(ctx context.Context, rdb *redis.Client) error {
	aof, err := rdb.ConfigGet(ctx, "appendonly").Result()
	if err != nil || aof["appendonly"] != "yes" {
		return nil // no file, or CONFIG refused (a managed service)
	}
	if err := rdb.BgRewriteAOF(ctx).Err(); err != nil && !strings.Contains(err.Error(), "in progress") {
		return fmt.Errorf("BGREWRITEAOF: %w", err)
	}
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		info, err := rdb.Info(ctx, "persistence").Result()
		if err != nil {
			return err
		}
		if strings.Contains(info, "aof_rewrite_in_progress:0") && strings.Contains(info, "aof_rewrite_scheduled:0") {
			return nil
		}
	}
	return errors.New("the append-only file's rewrite did not end within 2 minutes")
}

// runPrefix returns base and a random tag: the prefix of one run's keys.
func runPrefix(base string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return base + hex.EncodeToString(b[:]) + ":"
}

// RedisPersistence describes the persistence settings of the Redis server
// at url, for a report: "appendonly=yes appendfsync=everysec save=…".
func RedisPersistence(ctx context.Context, url string) (string, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return "", fmt.Errorf("%w: redis URL: %w", ErrInvalid, err)
	}
	rdb := redis.NewClient(o)
	defer rdb.Close()
	var parts []string
	for _, name := range []string{"appendonly", "appendfsync", "save"} {
		v, err := rdb.ConfigGet(ctx, name).Result()
		if err != nil {
			return "", fmt.Errorf("redis at %s: CONFIG GET %s: %w", url, name, err)
		}
		parts = append(parts, fmt.Sprintf("%s=%q", name, v[name]))
	}
	return strings.Join(parts, " "), nil
}

func (s *redisSystem) key(i int) string {
	return s.prefix + string(s.d.appendKey(nil, i))
}

func (s *redisSystem) first(w *worker, i int) error {
	ctx := context.Background()
	k := s.key(i)
	ok, err := s.rdb.SetNX(ctx, k, "in-flight:"+s.d.id(i), redisLease).Result()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: redis: fresh key %s exists", ErrUnexpectedOutcome, s.d.id(i))
	}
	return s.rdb.Set(ctx, k, s.d.body(i), redisTTL).Err()
}

func (s *redisSystem) retry(w *worker, i int, _ bool) error {
	v, err := s.rdb.Get(context.Background(), s.key(i)).Bytes()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("%w: redis: key %s missing", ErrUnexpectedOutcome, s.d.id(i))
	}
	if err != nil {
		return err
	}
	w.dst = append(w.dst[:0], v...)
	return nil
}

// load stores records with pipelines of about a megabyte.
func (s *redisSystem) load(ctx context.Context, lo, hi int, pr io.Writer) error {
	d := s.d
	chunk := max(1, min(1024, (1<<20)/max(1, d.bodyLen())))
	return loadChunks(ctx, lo, hi, 8, chunk, pr, "prefill redis", func(lo, hi int) error {
		p := s.rdb.Pipeline()
		for x := lo; x < hi; x++ {
			p.Set(ctx, s.prefix+string(d.keyAt(x).Append(nil)), d.bodyAt(x), redisTTL)
		}
		_, err := p.Exec(ctx)
		return err
	})
}

func (s *redisSystem) reopen() error           { return nil }
func (s *redisSystem) written() (uint64, bool) { return 0, false }
func (s *redisSystem) diskBytes() uint64       { return 0 }

// close deletes the run's keys and closes the connections.
func (s *redisSystem) close() error {
	return errors.Join(unlinkPrefix(s.rdb, s.prefix), s.rdb.Close())
}

// unlinkPrefix deletes every key that starts with prefix.
func unlinkPrefix(rdb *redis.Client, prefix string) error {
	ctx := context.Background()
	var err error
	it := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	batch := make([]string, 0, 1000)
	for it.Next(ctx) {
		if batch = append(batch, it.Val()); len(batch) == cap(batch) {
			err = errors.Join(err, rdb.Unlink(ctx, batch...).Err())
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		err = errors.Join(err, rdb.Unlink(ctx, batch...).Err())
	}
	return errors.Join(err, it.Err())
}

// redisStoreSystem is idemkv on its Redis backend (package
// engine/redisstore): the same Begin and Complete as the embedded engine,
// each a Lua script on the server.
type redisStoreSystem struct {
	storeOps
	rdb    *redis.Client
	store  *redisstore.Store
	prefix string
}

func openRedisStoreSystem(url string, conns int, d *dataset) (*redisStoreSystem, error) {
	rdb, err := dialRedis(url, conns)
	if err != nil {
		return nil, err
	}
	prefix := runPrefix("idemkv-bench-store:")
	st, err := redisstore.New(rdb, &redisstore.Options{TTL: redisTTL, Prefix: prefix, ScopeSecret: engine.NewScopeSecret()}) // requests carry their scopes: no credential is digested
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return &redisStoreSystem{storeOps: storeOps{d: d, st: st, label: "idemkv-redis"}, rdb: rdb, store: st, prefix: prefix}, nil
}

func (s *redisStoreSystem) reopen() error           { return nil }
func (s *redisStoreSystem) written() (uint64, bool) { return 0, false }
func (s *redisStoreSystem) diskBytes() uint64       { return 0 }

func (s *redisStoreSystem) close() error {
	return errors.Join(s.store.Close(), unlinkPrefix(s.rdb, s.prefix), s.rdb.Close())
}
