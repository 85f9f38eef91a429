package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/idemkv/idemkv/engine"
)

// systemNames are the measured systems, in the order of Report.Results.
var systemNames = []string{"idemkv", "map", "pebble"}

// A system is one store under test. Its methods are called from many
// goroutines at once, each with its own worker.
type system interface {
	// first answers a first request for operation i's key and stores its
	// response (Fresh, and the fresh requests of Mixed).
	first(w *worker, i int) error
	// retry answers a request for operation i's key, which holds a stored
	// response: a retry (Replay), or with conflict a request with another
	// body (Conflict).
	retry(w *worker, i int, conflict bool) error
	// load stores the records of key indexes lo to hi, not measured, as
	// fast as the system allows; progress lines go to pr.
	load(ctx context.Context, lo, hi int, pr io.Writer) error
	// reopen closes the store and opens it again on the same data in the
	// measured configuration (after a prefill).
	reopen() error
	// written returns the bytes written to the store's files so far; ok
	// is false for a system without files.
	written() (n uint64, ok bool)
	// diskBytes returns the disk space in use, 0 for the map.
	diskBytes() uint64
	close() error
}

// mapBudget bounds the bytes of the bodies the map holds copies of.
const mapBudget = 1 << 30

// idemkvLoaders is the number of goroutines that load records into
// idemkv: enough for its commits to share write(2) calls and fsyncs.
const idemkvLoaders = 64

// openSystem opens the named system with its data in dir, for the
// operations of d. With prefill, a store may open in a configuration that
// loads faster; reopen then switches to the measured one.
func openSystem(name, dir string, cfg Config, d *dataset, prefill bool) (system, error) {
	switch name {
	case "idemkv":
		o := engine.Options{Durability: cfg.Durability}
		if cfg.Workload == ReplayCold {
			o.CacheSize = -1
		}
		s := &idemkvSystem{storeOps: storeOps{d: d, label: "idemkv"}, dir: dir, opts: o}
		if prefill {
			// Relaxed loads many times faster; Close fsyncs it all.
			o.Durability = engine.Relaxed
		}
		return s, s.open(o)
	case "map":
		return newMapSystem(d, mapBudget), nil
	case "pebble":
		return openPebbleSystem(dir, cfg.Durability, d)
	case "redis":
		return openRedisSystem(cfg.Redis, max(cfg.Concurrency, cfg.maxConcurrency), d)
	case "idemkv-redis":
		return openRedisStoreSystem(cfg.Redis, max(cfg.Concurrency, cfg.maxConcurrency), d)
	case "postgres":
		return openPGSystem(cfg.Postgres, max(cfg.Concurrency, cfg.maxConcurrency), d)
	case "idemkv-postgres":
		return openPGStoreSystem(cfg.Postgres, max(cfg.Concurrency, cfg.maxConcurrency), d)
	}
	return nil, fmt.Errorf("%w: unknown system %q", ErrInvalid, name)
}

// loadChunks calls fn for [lo, hi) cut into ranges of chunk indexes, from
// the given number of goroutines, and prints progress as label. It stops
// at the first error or when ctx is done.
func loadChunks(ctx context.Context, lo, hi, goroutines, chunk int, pr io.Writer, label string, fn func(lo, hi int) error) error {
	var next, done atomic.Int64
	next.Store(int64(lo))
	stop := startProgress(pr, label, "records", hi-lo, done.Load)
	defer stop()
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				a := int(next.Add(int64(chunk))) - chunk
				if a >= hi {
					return
				}
				b := min(a+chunk, hi)
				if err := fn(a, b); err != nil {
					errs[g] = err
					next.Store(int64(hi)) // stop the others
					return
				}
				done.Add(int64(b - a))
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}

// idemkvSystem drives the engine the way a server does.
type idemkvSystem struct {
	storeOps
	dir  string
	opts engine.Options // the measured configuration
	e    *engine.Engine
}

// storeOps are the operations of a system that is an idemkv store: the
// engine, or its Redis backend.
type storeOps struct {
	d     *dataset
	st    engine.Store
	label string // names the store in progress lines
}

// open opens the engine with o.
func (s *idemkvSystem) open(o engine.Options) error {
	e, err := engine.Open(s.dir, &o)
	if err != nil {
		return err
	}
	s.e, s.st = e, e
	return nil
}

// reopen reopens the engine in the measured configuration and waits until
// it has loaded its key filters from the records on disk (until then every
// lookup reads storage), so that the measurement sees the steady state.
func (s *idemkvSystem) reopen() error {
	if err := s.e.Close(); err != nil {
		return err
	}
	if err := s.open(s.opts); err != nil {
		return err
	}
	for deadline := time.Now().Add(15 * time.Minute); !s.e.Stats().KeyFiltersReady; {
		if time.Now().After(deadline) {
			return fmt.Errorf("key filters not loaded after 15 minutes")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func (s *storeOps) first(w *worker, i int) error {
	d := s.d
	ctx := context.Background()
	res, err := s.st.Begin(ctx, engine.Request{Key: d.key(i), Fingerprint: d.fp(i), RequestID: d.id(i)})
	if err != nil {
		return err
	}
	w.outcomes.count(res.Outcome)
	if res.Outcome != engine.Proceed {
		return nil // counted; the run fails after the phase
	}
	return res.Claim.Complete(ctx, engine.Response{Status: 201, Header: d.hdr, Body: d.body(i)})
}

func (s *storeOps) retry(w *worker, i int, conflict bool) error {
	d := s.d
	ctx := context.Background()
	fp := d.fp(i)
	if conflict {
		fp = d.otherFP(i)
	}
	res, err := s.st.Begin(ctx, engine.Request{Key: d.key(i), Fingerprint: fp, RequestID: d.id(i)})
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

// load runs Begin and Complete for every key, as first does.
func (s *storeOps) load(ctx context.Context, lo, hi int, pr io.Writer) error {
	d := s.d
	return loadChunks(ctx, lo, hi, idemkvLoaders, 64, pr, "prefill "+s.label, func(lo, hi int) error {
		for x := lo; x < hi; x++ {
			k := d.keyAt(x)
			res, err := s.st.Begin(ctx, engine.Request{Key: k, Fingerprint: d.fpAt(x), RequestID: k.Key})
			if err != nil {
				return err
			}
			if res.Outcome != engine.Proceed {
				return fmt.Errorf("%w: prefill: key %s answered %v; want Proceed", ErrUnexpectedOutcome, k.Key, res.Outcome)
			}
			if err := res.Claim.Complete(ctx, engine.Response{Status: 201, Header: d.hdr, Body: d.bodyAt(x)}); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *idemkvSystem) written() (uint64, bool) { return s.e.Stats().BytesWritten, true }
func (s *idemkvSystem) diskBytes() uint64       { return dirBytes(s.dir) }
func (s *idemkvSystem) close() error            { return s.e.Close() }

// mapSystem is the in-memory upper bound: 256 shards of a Go map, each
// behind a RWMutex. A read copies the value out, as a store that hands out
// owned bytes must (fastcache's Get(dst, k)); a write stores a copy.
//
// The copies are bounded: when a shard's copies outgrow its share of the
// budget, they are replaced by references to the dataset's shared bodies
// (equal bytes), so every key stays readable while memory stays bounded.
type mapSystem struct {
	d      *dataset
	seed   maphash.Seed
	budget int // bytes of copies per shard; 0 means unbounded
	shards [256]mapShard
}

type mapShard struct {
	shardState
	_ [128 - unsafe.Sizeof(shardState{})%128]byte // one shard per pair of cache lines
}

type shardState struct {
	mu     sync.RWMutex
	m      map[string][]byte // guarded by mu
	copies []copied          // the values of m that are copies; guarded by mu
	bytes  int               // bytes of those copies; guarded by mu
}

// copied names a value of a shard's map that is a copy of the body of key
// index x.
type copied struct {
	key string
	x   int
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
	k := string(w.kb)
	sh.mu.Lock()
	if s.budget > 0 && sh.bytes+len(v) > s.budget {
		sh.shareLocked(d)
	}
	sh.m[k] = v
	if s.budget > 0 {
		sh.copies = append(sh.copies, copied{k, d.base + i})
		sh.bytes += len(v)
	}
	sh.mu.Unlock()
	return nil
}

// shareLocked replaces the shard's copies by the shared bodies.
func (sh *mapShard) shareLocked(d *dataset) {
	for _, c := range sh.copies {
		sh.m[c.key] = d.bodyAt(c.x)
	}
	clear(sh.copies)
	sh.copies = sh.copies[:0]
	sh.bytes = 0
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

// load stores each body by reference to the dataset's shared bodies: a
// copy each would hold prefill records times body size in memory.
func (s *mapSystem) load(ctx context.Context, lo, hi int, pr io.Writer) error {
	d := s.d
	return loadChunks(ctx, lo, hi, runtime.GOMAXPROCS(0), 1024, pr, "prefill map", func(lo, hi int) error {
		var kb []byte
		for x := lo; x < hi; x++ {
			kb = d.keyAt(x).Append(kb[:0])
			sh := s.shard(kb)
			sh.mu.Lock()
			sh.m[string(kb)] = d.bodyAt(x)
			sh.mu.Unlock()
		}
		return nil
	})
}

func (s *mapSystem) reopen() error           { return nil }
func (s *mapSystem) written() (uint64, bool) { return 0, false }
func (s *mapSystem) diskBytes() uint64       { return 0 }
func (s *mapSystem) close() error            { return nil }

// pebbleSystem is naive raw Pebble: default options, and per request a
// Get, then for a first request a Set committed on its own.
type pebbleSystem struct {
	dir string
	d   *dataset
	db  *pebble.DB
	wo  *pebble.WriteOptions
	nw  atomic.Uint64 // bytes written to Pebble's files
}

func openPebbleSystem(dir string, dur engine.Durability, d *dataset) (*pebbleSystem, error) {
	wo := pebble.Sync
	if dur == engine.Relaxed {
		wo = pebble.NoSync
	}
	s := &pebbleSystem{dir: dir, d: d, wo: wo}
	return s, s.open()
}

// open opens the database with default options (but for the logger, and
// a filesystem that counts what it writes).
func (s *pebbleSystem) open() error {
	db, err := pebble.Open(s.dir, &pebble.Options{Logger: quietLogger{}, FS: countWrites(vfs.Default, &s.nw)})
	if err != nil {
		return err
	}
	s.db = db
	return nil
}

func (s *pebbleSystem) reopen() error {
	if err := s.db.Close(); err != nil {
		return err
	}
	return s.open()
}

// load commits about a megabyte of records per batch, without fsync.
func (s *pebbleSystem) load(ctx context.Context, lo, hi int, pr io.Writer) error {
	d := s.d
	chunk := max(1, min(1024, (1<<20)/max(1, d.bodyLen())))
	return loadChunks(ctx, lo, hi, runtime.GOMAXPROCS(0), chunk, pr, "prefill pebble", func(lo, hi int) error {
		b := s.db.NewBatch()
		defer b.Close()
		var kb []byte
		for x := lo; x < hi; x++ {
			kb = d.keyAt(x).Append(kb[:0])
			if err := b.Set(kb, d.bodyAt(x), nil); err != nil {
				return err
			}
		}
		return b.Commit(pebble.NoSync)
	})
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

func (s *pebbleSystem) written() (uint64, bool) { return s.nw.Load(), true }
func (s *pebbleSystem) diskBytes() uint64       { return dirBytes(s.dir) }
func (s *pebbleSystem) close() error            { return s.db.Close() }

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

// dirBytes sums the sizes of the regular files in dir: the same measure
// for every system (Pebble's DiskSpaceUsage leaves out blob files written
// before the last Open).
func dirBytes(dir string) uint64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n uint64
	for _, ent := range ents {
		if fi, err := ent.Info(); err == nil && fi.Mode().IsRegular() {
			n += uint64(fi.Size())
		}
	}
	return n
}
