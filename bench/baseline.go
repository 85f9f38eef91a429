package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
	"github.com/idemkv/idemkv/engine"
)

// systemNames are the measured systems, in the order of Report.Results.
var systemNames = []string{"idemkv", "map", "pebble"}

// A system is one store under test. Its methods are called from many
// goroutines at once, each with its own worker.
type system interface {
	// first answers a first request for operation i's key and stores its
	// response (Fresh, and the prefill of the other workloads).
	first(w *worker, i int) error
	// retry answers a request for operation i's key, which holds a stored
	// response: a retry (Replay), or with conflict a request with another
	// body (Conflict).
	retry(w *worker, i int, conflict bool) error
	// diskBytes returns the disk space in use, 0 for the map.
	diskBytes() uint64
	close() error
}

// mapFreshBudget bounds the bodies the map keeps in the Fresh workload.
const mapFreshBudget = 1 << 30

// openSystem opens the named system with its data in dir, for the
// operations of d.
func openSystem(name, dir string, cfg Config, d *dataset) (system, error) {
	switch name {
	case "idemkv":
		o := &engine.Options{Durability: cfg.Durability}
		if cfg.Workload == ReplayCold {
			o.CacheSize = -1
		}
		e, err := engine.Open(dir, o)
		if err != nil {
			return nil, err
		}
		return &idemkvSystem{e: e, d: d}, nil
	case "map":
		budget := 0
		if cfg.Workload == Fresh {
			budget = mapFreshBudget
		}
		return newMapSystem(d, budget), nil
	case "pebble":
		return openPebbleSystem(dir, cfg.Durability, d)
	}
	return nil, fmt.Errorf("%w: unknown system %q", ErrInvalid, name)
}

// idemkvSystem drives the engine the way a server does.
type idemkvSystem struct {
	e *engine.Engine
	d *dataset
}

func (s *idemkvSystem) first(w *worker, i int) error {
	d := s.d
	ctx := context.Background()
	res, err := s.e.Begin(ctx, engine.Request{Key: d.key(i), Fingerprint: d.fp(i), RequestID: d.id(i)})
	if err != nil {
		return err
	}
	w.outcomes.count(res.Outcome)
	if res.Outcome != engine.Proceed {
		return nil // counted; the run fails after the phase
	}
	return res.Claim.Complete(ctx, engine.Response{Status: 201, Header: d.hdr, Body: d.body(i)})
}

func (s *idemkvSystem) retry(w *worker, i int, conflict bool) error {
	d := s.d
	ctx := context.Background()
	fp := d.fp(i)
	if conflict {
		fp = d.otherFP(i)
	}
	res, err := s.e.Begin(ctx, engine.Request{Key: d.key(i), Fingerprint: fp, RequestID: d.id(i)})
	if err != nil {
		return err
	}
	w.outcomes.count(res.Outcome)
	switch res.Outcome {
	case engine.Proceed:
		// Counted as unexpected; do not leave the claim held.
		return res.Claim.Release(ctx)
	case engine.Replay:
		// Check the replayed response: always its status and length, and
		// every 64th body byte for byte (cheap against a replay).
		r, want := res.Record, d.body(i)
		if r.Status != 201 || len(r.Body) != len(want) || (i%64 == 0 && !bytes.Equal(r.Body, want)) {
			return fmt.Errorf("%w: key %s replayed status %d, %d body bytes; want 201, %d bytes",
				ErrUnexpectedOutcome, d.id(i), r.Status, len(r.Body), len(want))
		}
	}
	return nil
}

func (s *idemkvSystem) diskBytes() uint64 { return s.e.Stats().DiskBytes }
func (s *idemkvSystem) close() error      { return s.e.Close() }

// mapSystem is the in-memory upper bound: 256 shards of a Go map, each
// behind a RWMutex. A read copies the value out, as a store that hands out
// owned bytes must (fastcache's Get(dst, k)); a write stores a copy.
type mapSystem struct {
	d      *dataset
	seed   maphash.Seed
	budget int // bytes of values per shard; 0 means unbounded
	shards [256]mapShard
}

type mapShard struct {
	shardState
	_ [128 - unsafe.Sizeof(shardState{})%128]byte // one shard per pair of cache lines
}

type shardState struct {
	mu    sync.RWMutex
	m     map[string][]byte // guarded by mu
	bytes int               // bytes of values in m; guarded by mu
}

func newMapSystem(d *dataset, budget int) *mapSystem {
	s := &mapSystem{d: d, seed: maphash.MakeSeed(), budget: budget / 256}
	for i := range s.shards {
		s.shards[i].m = make(map[string][]byte)
	}
	return s
}

func (s *mapSystem) shard(key []byte) *mapShard {
	return &s.shards[maphash.Bytes(s.seed, key)&255]
}

func (s *mapSystem) first(w *worker, i int) error {
	d := s.d
	w.kb = d.appendKey(w.kb[:0], i)
	sh := s.shard(w.kb)
	sh.mu.RLock()
	_, ok := sh.m[string(w.kb)]
	sh.mu.RUnlock()
	if ok {
		return fmt.Errorf("%w: map: fresh key %s exists", ErrUnexpectedOutcome, d.id(i))
	}
	v := bytes.Clone(d.body(i))
	sh.mu.Lock()
	if s.budget > 0 && sh.bytes+len(v) > s.budget {
		clear(sh.m)
		sh.bytes = 0
	}
	sh.m[string(w.kb)] = v
	sh.bytes += len(v)
	sh.mu.Unlock()
	return nil
}

func (s *mapSystem) retry(w *worker, i int, _ bool) error {
	d := s.d
	w.kb = d.appendKey(w.kb[:0], i)
	sh := s.shard(w.kb)
	sh.mu.RLock()
	v, ok := sh.m[string(w.kb)]
	w.dst = append(w.dst[:0], v...)
	sh.mu.RUnlock()
	if !ok {
		return fmt.Errorf("%w: map: key %s missing", ErrUnexpectedOutcome, d.id(i))
	}
	return nil
}

func (s *mapSystem) diskBytes() uint64 { return 0 }
func (s *mapSystem) close() error      { return nil }

// pebbleSystem is naive raw Pebble: default options, and per request a
// Get, then for a first request a Set committed on its own.
type pebbleSystem struct {
	d  *dataset
	db *pebble.DB
	wo *pebble.WriteOptions
}

func openPebbleSystem(dir string, dur engine.Durability, d *dataset) (*pebbleSystem, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		return nil, err
	}
	wo := pebble.Sync
	if dur == engine.Relaxed {
		wo = pebble.NoSync
	}
	return &pebbleSystem{d: d, db: db, wo: wo}, nil
}

func (s *pebbleSystem) first(w *worker, i int) error {
	d := s.d
	w.kb = d.appendKey(w.kb[:0], i)
	_, closer, err := s.db.Get(w.kb)
	switch {
	case err == nil:
		_ = closer.Close()
		return fmt.Errorf("%w: pebble: fresh key %s exists", ErrUnexpectedOutcome, d.id(i))
	case !errors.Is(err, pebble.ErrNotFound):
		return err
	}
	return s.db.Set(w.kb, d.body(i), s.wo)
}

func (s *pebbleSystem) retry(w *worker, i int, _ bool) error {
	d := s.d
	w.kb = d.appendKey(w.kb[:0], i)
	v, closer, err := s.db.Get(w.kb)
	if errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("%w: pebble: key %s missing", ErrUnexpectedOutcome, d.id(i))
	}
	if err != nil {
		return err
	}
	w.dst = append(w.dst[:0], v...)
	return closer.Close()
}

func (s *pebbleSystem) diskBytes() uint64 { return s.db.Metrics().DiskSpaceUsage() }
func (s *pebbleSystem) close() error      { return s.db.Close() }

// quietLogger drops Pebble's informational messages, which would
// interleave with the report; errors still reach stderr.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	pebble.DefaultLogger.Errorf(format, args...)
}
func (quietLogger) Fatalf(format string, args ...any) {
	pebble.DefaultLogger.Fatalf(format, args...)
}
