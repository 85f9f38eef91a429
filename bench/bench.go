package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/idemkv/idemkv/bench/payload"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// Workload is what each measured operation does.
type Workload uint8

const (
	// Fresh: a first request on a never-seen key (idemkv: Begin, then
	// Complete).
	Fresh Workload = iota
	// Replay: a retry of a request completed moments before (idemkv:
	// Begin answering Replay, usually from its cache of recent records).
	Replay
	// ReplayCold: a retry answered from storage (idemkv with its cache
	// disabled).
	ReplayCold
	// Conflict: the same key with a different body.
	Conflict
)

var workloadNames = []string{"fresh", "replay", "replay-cold", "conflict"}

func (w Workload) String() string {
	if int(w) < len(workloadNames) {
		return workloadNames[w]
	}
	return fmt.Sprintf("Workload(%d)", uint8(w))
}

// ParseWorkload parses fresh, replay, replay-cold or conflict.
func ParseWorkload(s string) (Workload, error) {
	if i := slices.Index(workloadNames, s); i >= 0 {
		return Workload(i), nil
	}
	return 0, fmt.Errorf("bench: unknown workload %q (want fresh, replay, replay-cold or conflict)", s)
}

// Config describes one run. The zero value is a valid run with the
// defaults below.
type Config struct {
	Workload    Workload
	Concurrency int               // goroutines issuing requests; default 64
	BodySize    int               // response body bytes (realistic JSON); default 2048
	Durability  engine.Durability // idemkv's mode; raw Pebble uses Sync or NoSync to match
	Ops         int               // measured operations per system; default 20000
	Dir         string            // where data directories go; default a temporary directory, removed after
	NoBaselines bool              // measure idemkv only
}

func (c Config) withDefaults() Config {
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.BodySize <= 0 {
		c.BodySize = 2048
	}
	if c.Ops <= 0 {
		c.Ops = 20000
	}
	return c
}

// Result is one system's measurements.
type Result struct {
	System             string
	Ops                int
	Elapsed            time.Duration
	OpsPerSec          float64
	P50, P99, P999     time.Duration
	AllocsPerOp        float64
	DiskBytesPerRecord float64 // 0 for the map
}

// Report is the outcome of Run: idemkv first, then the baselines.
type Report struct {
	Config  Config
	Results []Result
}

// system is one store under test.
type system interface {
	name() string
	// do performs one operation of the workload on key. prefilled keys
	// exist for Replay and Conflict.
	do(key string, body, other []byte) error
	fresh(key string, body []byte) error
	diskBytes() uint64
	close() error
}

// Run measures the workload on idemkv and, unless NoBaselines, on the
// baselines, one after the other, and returns the report.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg = cfg.withDefaults()
	rep := Report{Config: cfg}
	root := cfg.Dir
	if root == "" {
		d, err := os.MkdirTemp("", "idemkv-bench-")
		if err != nil {
			return rep, err
		}
		defer os.RemoveAll(d)
		root = d
	}
	makers := []func(dir string) (system, error){
		func(dir string) (system, error) { return openIdemkv(dir, cfg) },
	}
	if !cfg.NoBaselines {
		makers = append(makers,
			func(string) (system, error) { return newMapSystem(), nil },
			func(dir string) (system, error) { return openRawPebble(dir, cfg.Durability) })
	}
	bodies := [2][]byte{payload.JSON(nil, cfg.BodySize, 1), payload.JSON(nil, cfg.BodySize, 2)}
	for i, mk := range makers {
		dir, err := os.MkdirTemp(root, "sys"+strconv.Itoa(i)+"-")
		if err != nil {
			return rep, err
		}
		s, err := mk(dir)
		if err != nil {
			return rep, err
		}
		res, err := measure(ctx, s, cfg, bodies)
		if cerr := s.close(); err == nil {
			err = cerr
		}
		if err != nil {
			return rep, fmt.Errorf("bench: %s: %w", s.name(), err)
		}
		rep.Results = append(rep.Results, res)
	}
	return rep, nil
}

func keyOf(i int) string { return "key-" + strconv.Itoa(i) }

func measure(ctx context.Context, s system, cfg Config, bodies [2][]byte) (Result, error) {
	if cfg.Workload != Fresh {
		// Prefill the keys the workload will retry.
		if err := parallel(ctx, cfg.Concurrency, cfg.Ops, nil, func(i int) error {
			return s.fresh(keyOf(i), bodies[0])
		}); err != nil {
			return Result{}, err
		}
	}
	lat := make([]time.Duration, cfg.Ops)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	err := parallel(ctx, cfg.Concurrency, cfg.Ops, lat, func(i int) error {
		k := keyOf(i)
		if cfg.Workload == Fresh {
			return s.fresh(k, bodies[0])
		}
		return s.do(k, bodies[0], bodies[1])
	})
	elapsed := time.Since(start)
	runtime.ReadMemStats(&ms1)
	if err != nil {
		return Result{}, err
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(float64(len(lat))*p))] }
	r := Result{
		System: s.name(), Ops: cfg.Ops, Elapsed: elapsed,
		OpsPerSec: float64(cfg.Ops) / elapsed.Seconds(),
		P50:       q(0.50), P99: q(0.99), P999: q(0.999),
		AllocsPerOp: float64(ms1.Mallocs-ms0.Mallocs) / float64(cfg.Ops),
	}
	if d := s.diskBytes(); d > 0 {
		r.DiskBytesPerRecord = float64(d) / float64(cfg.Ops)
	}
	return r, nil
}

// parallel runs fn(0..n-1) on workers goroutines, recording each call's
// latency in lat if it is not nil.
func parallel(ctx context.Context, workers, n int, lat []time.Duration, fn func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				err := fn(i)
				if lat != nil {
					lat[i] = time.Since(t0)
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

// idemkvSystem drives the engine the way a server does.
type idemkvSystem struct {
	e        *engine.Engine
	workload Workload
}

func openIdemkv(dir string, cfg Config) (*idemkvSystem, error) {
	o := &engine.Options{Durability: cfg.Durability}
	if cfg.Workload == ReplayCold {
		o.CacheSize = -1
	}
	e, err := engine.Open(dir, o)
	if err != nil {
		return nil, err
	}
	return &idemkvSystem{e: e, workload: cfg.Workload}, nil
}

func (s *idemkvSystem) name() string { return "idemkv" }

var errUnexpected = errors.New("unexpected outcome")

func (s *idemkvSystem) fresh(key string, body []byte) error {
	res, err := s.e.Begin(context.Background(), engine.Request{
		Key: record.Key{Scope: "bench", Endpoint: "POST /v1/calls", Key: key}, Fingerprint: record.Sum(body), RequestID: key})
	if err != nil {
		return err
	}
	if res.Outcome != engine.Proceed {
		return fmt.Errorf("%w: fresh key %s got %v", errUnexpected, key, res.Outcome)
	}
	return res.Claim.Complete(context.Background(), engine.Response{
		Status: 201, Body: body, Header: []record.Header{{Name: "Content-Type", Value: "application/json"}}})
}

func (s *idemkvSystem) do(key string, body, other []byte) error {
	fp, want := record.Sum(body), engine.Replay
	if s.workload == Conflict {
		fp, want = record.Sum(other), engine.Conflict
	}
	res, err := s.e.Begin(context.Background(), engine.Request{
		Key: record.Key{Scope: "bench", Endpoint: "POST /v1/calls", Key: key}, Fingerprint: fp})
	if err != nil {
		return err
	}
	if res.Outcome != want {
		return fmt.Errorf("%w: %s got %v, want %v", errUnexpected, key, res.Outcome, want)
	}
	return nil
}

func (s *idemkvSystem) diskBytes() uint64 { return s.e.Stats().DiskBytes }
func (s *idemkvSystem) close() error      { return s.e.Close() }

// mapSystem is the in-memory upper bound: 256 shards of a Go map. A
// replay copies the stored body out, as a store that returns owned bytes
// must (fastcache's Get(dst, k)).
type mapSystem struct {
	shards [256]struct {
		sync.RWMutex
		m map[string][]byte
	}
	dst sync.Pool
}

func newMapSystem() *mapSystem {
	s := &mapSystem{}
	for i := range s.shards {
		s.shards[i].m = make(map[string][]byte)
	}
	s.dst.New = func() any { return new([]byte) }
	return s
}

func (s *mapSystem) shard(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return int(h & 255)
}

func (s *mapSystem) name() string { return "map" }

func (s *mapSystem) fresh(key string, body []byte) error {
	sh := &s.shards[s.shard(key)]
	sh.Lock()
	defer sh.Unlock()
	if _, ok := sh.m[key]; ok {
		return fmt.Errorf("%w: fresh key %s exists", errUnexpected, key)
	}
	sh.m[key] = append([]byte(nil), body...)
	return nil
}

func (s *mapSystem) do(key string, _, _ []byte) error {
	sh := &s.shards[s.shard(key)]
	d := s.dst.Get().(*[]byte)
	sh.RLock()
	v, ok := sh.m[key]
	*d = append((*d)[:0], v...)
	sh.RUnlock()
	s.dst.Put(d)
	if !ok {
		return fmt.Errorf("%w: %s missing", errUnexpected, key)
	}
	return nil
}

func (s *mapSystem) diskBytes() uint64 { return 0 }
func (s *mapSystem) close() error      { return nil }

// pebbleSystem is naive raw Pebble: default options, Get then Set with
// one commit per request.
type pebbleSystem struct {
	db *pebble.DB
	wo *pebble.WriteOptions
}

func openRawPebble(dir string, d engine.Durability) (*pebbleSystem, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quiet{}})
	if err != nil {
		return nil, err
	}
	wo := pebble.Sync
	if d == engine.Relaxed {
		wo = pebble.NoSync
	}
	return &pebbleSystem{db: db, wo: wo}, nil
}

func (s *pebbleSystem) name() string { return "raw-pebble" }

func (s *pebbleSystem) fresh(key string, body []byte) error {
	k := []byte(key)
	if _, closer, err := s.db.Get(k); err == nil {
		closer.Close()
		return fmt.Errorf("%w: fresh key %s exists", errUnexpected, key)
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return err
	}
	return s.db.Set(k, body, s.wo)
}

func (s *pebbleSystem) do(key string, _, _ []byte) error {
	v, closer, err := s.db.Get([]byte(key))
	if err != nil {
		return err
	}
	_ = append([]byte(nil), v...)
	return closer.Close()
}

func (s *pebbleSystem) diskBytes() uint64 { return s.db.Metrics().DiskSpaceUsage() }
func (s *pebbleSystem) close() error      { return s.db.Close() }

type quiet struct{}

func (quiet) Infof(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
func (quiet) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// RunSystem measures one system ("idemkv", "map" or "raw-pebble") alone;
// it is what the go test benchmarks use.
func RunSystem(ctx context.Context, name string, cfg Config) (Result, error) {
	cfg = cfg.withDefaults()
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "idemkv-bench-")
		if err != nil {
			return Result{}, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	var s system
	var err error
	switch name {
	case "idemkv":
		s, err = openIdemkv(dir, cfg)
	case "map":
		s = newMapSystem()
	case "raw-pebble":
		s, err = openRawPebble(dir, cfg.Durability)
	default:
		return Result{}, fmt.Errorf("bench: unknown system %q", name)
	}
	if err != nil {
		return Result{}, err
	}
	bodies := [2][]byte{payload.JSON(nil, cfg.BodySize, 1), payload.JSON(nil, cfg.BodySize, 2)}
	res, err := measure(ctx, s, cfg, bodies)
	if cerr := s.close(); err == nil {
		err = cerr
	}
	return res, err
}
