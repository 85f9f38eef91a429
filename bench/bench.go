package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemkv/idemkv/engine"
)

// Workload is what each measured operation does (see the package
// documentation for what it means for each system).
type Workload uint8

const (
	// Fresh: a first request on a never-seen key.
	Fresh Workload = iota
	// Replay: a retry of a request completed moments before.
	Replay
	// ReplayCold: a retry answered from storage: idemkv runs with its
	// cache of recent records disabled.
	ReplayCold
	// Conflict: a request that reuses a completed request's key with a
	// different body (fingerprint).
	Conflict
	// Mixed: fresh requests, replays and conflicts in the proportions
	// that Config.ReplayRatio and Config.ConflictRatio set.
	Mixed
)

var workloadNames = [...]string{Fresh: "fresh", Replay: "replay", ReplayCold: "replay-cold", Conflict: "conflict", Mixed: "mixed"}

func (w Workload) String() string {
	if int(w) < len(workloadNames) {
		return workloadNames[w]
	}
	return fmt.Sprintf("Workload(%d)", uint8(w))
}

// ParseWorkload parses "fresh", "replay", "replay-cold", "conflict" or
// "mixed".
func ParseWorkload(s string) (Workload, error) {
	if i := slices.Index(workloadNames[:], s); i >= 0 {
		return Workload(i), nil
	}
	return 0, fmt.Errorf("%w: unknown workload %q (want fresh, replay, replay-cold, conflict or mixed)", ErrInvalid, s)
}

// MarshalText implements encoding.TextMarshaler (for JSON and flag.TextVar).
func (w Workload) MarshalText() ([]byte, error) {
	if int(w) >= len(workloadNames) {
		return nil, fmt.Errorf("%w: unknown workload %d", ErrInvalid, uint8(w))
	}
	return []byte(workloadNames[w]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseWorkload.
func (w *Workload) UnmarshalText(b []byte) error {
	v, err := ParseWorkload(string(b))
	if err != nil {
		return err
	}
	*w = v
	return nil
}

// retries reports whether w asks for keys stored before the measured
// phase.
func (w Workload) retries() bool { return w == Replay || w == ReplayCold || w == Conflict }

// Config describes one run. The zero value is valid: it measures the
// Fresh workload in the Synced mode with the defaults below. Zero numeric
// fields take their defaults; negative ones are invalid.
type Config struct {
	// Workload is what every operation does. Default Fresh.
	Workload Workload

	// ReplayRatio and ConflictRatio are, in the Mixed workload, the
	// probabilities that an operation is a retry of a request that its
	// goroutine completed earlier in the phase (Replay), or a request
	// that reuses such a key with another body (Conflict); every other
	// operation is a fresh request. Each is at most 1, and so is their
	// sum. They must be zero for the other workloads.
	ReplayRatio   float64
	ConflictRatio float64

	// Concurrency is the number of goroutines that share the operations.
	// Default 64; at most Ops.
	Concurrency int

	// Rate, if positive, offers the operations open loop at this many per
	// second over all goroutines: operation i is due i/Rate seconds after
	// the start, and the goroutines take the operations in order as they
	// become free, like a client's connection pool of Concurrency
	// connections, each waiting for its operation's due time. An
	// operation that falls due before any goroutine is free counts its
	// latency from when it was due, not from when it started, so a system
	// that falls behind the rate shows the queueing delay its clients
	// would see (no coordinated omission); one that a goroutine waited for
	// counts from the wake-up (timers wake up late, by a fraction of a
	// millisecond or a few when the cores are busy, which is not the
	// system's doing). Throughput is about Rate for every system that
	// keeps up, so compare latencies; for a system that does not, the
	// latencies grow with the length of the run. In open loop, which
	// goroutine serves which operation depends on timing. A run must be
	// due within a day (Ops/Rate). Default 0: closed loop, each goroutine
	// starts its next operation when the last one returns.
	Rate float64

	// BodySize is the size in bytes of each response body (realistic
	// JSON from package payload, which for sizes from 120 up is at least
	// this long and a few hundred bytes longer at most). Default 2048.
	BodySize int

	// Durability is idemkv's durability mode. Raw Pebble commits with
	// pebble.Sync in the Synced mode and pebble.NoSync in the Relaxed
	// mode. Default engine.Synced.
	Durability engine.Durability

	// Ops is the number of measured operations for each system and
	// concurrency, every fresh request and every stored retry target on
	// a distinct key. Default 20000.
	Ops int

	// Keys is, for the replay, replay-cold and conflict workloads, how
	// many stored keys the operations cycle through (operation i retries
	// key i mod Keys): a run of many operations whose keys all fit in
	// idemkv's cache of recent records measures long enough for a stable
	// ratio. Default Ops, every retry on a key of its own.
	Keys int

	// Records is the number of completed records that every system
	// holds before it is measured, stored without being measured, so that
	// the cost of a larger store shows. Default 0.
	Records int

	// Warmup is the number of fresh requests each system serves before
	// it is measured, unmeasured, on keys of their own (after the
	// prefill, before the retry targets are stored), so that the figures
	// are those of a store that has been running: in its first seconds a
	// store pays for memory it touches for the first time (Pebble's
	// memtables grow from 256 KiB to their full size, each a fresh
	// allocation; the heap grows), which a server pays once. A Redis
	// server measured beside it has usually been running for long.
	// Default 0: no warm-up; the idemkv bench command warms up with
	// DefaultWarmup requests.
	Warmup int

	// Dir is the directory in which Run creates a temporary directory for
	// the systems' data; Run removes it before it returns. Default
	// os.TempDir(). Set it to measure on a particular filesystem.
	Dir string

	// NoBaselines measures idemkv alone. By default (false) the map and
	// raw Pebble baselines are measured too.
	NoBaselines bool

	// Redis, if set, is the URL of a Redis (or Valkey) server on which a
	// third baseline is measured, unless NoBaselines: the claim/complete
	// pattern written by hand with go-redis (SET NX with a lease expiry,
	// then SET of the response with the record's expiry; GET for a
	// retry). The server's own persistence settings apply; the report
	// records them. The run's keys are deleted afterwards.
	Redis string

	// Postgres, if set, is the URL of a PostgreSQL database in which
	// another baseline is measured, unless NoBaselines: the
	// claim/complete pattern written by hand with pgx (INSERT … ON
	// CONFLICT DO NOTHING of a claimed row with a lease expiry, then an
	// UPDATE storing the response and the record's expiry; a SELECT for
	// a retry), in a table of the run's own, dropped afterwards. The
	// server's settings apply; the report records its fsync and
	// synchronous_commit.
	Postgres string

	// Backend, "redis" or "postgres", also measures idemkv on that
	// backend (package engine/redisstore on the server at Redis, or
	// engine/pgstore in the database at Postgres), beside the embedded
	// engine and the hand-written pattern. Default "" (the embedded
	// engine only).
	Backend string

	// maxConcurrency is the highest concurrency of the run (sweeps), for
	// the size of connection pools.
	maxConcurrency int

	// Progress, if not nil, receives a line every two seconds of a phase
	// (prefill, waiting for compactions, measuring) that lasts longer,
	// with the operations done and their rate.
	Progress io.Writer
}

// Defaults of Config.
const (
	DefaultConcurrency = 64
	DefaultBodySize    = 2048
	DefaultOps         = 20000
	// DefaultWarmup is the idemkv bench command's warm-up (Config.Warmup):
	// at the default body size, enough writes (about 350 MB) for Pebble's
	// memtables to reach their full size and be recycled.
	DefaultWarmup = 150000
)

// maxRateSpan bounds the time over which Config.Rate spreads a run.
const maxRateSpan = 24 * time.Hour

// maxRecords bounds Config.Records and Ops: key indexes stay below 2^56
// (see appendID) with room to spare.
const maxRecords = 1 << 40

// withDefaults fills in the defaults and validates c.
func (c Config) withDefaults() (Config, error) {
	switch {
	case int(c.Workload) >= len(workloadNames):
		return c, fmt.Errorf("%w: unknown workload %d", ErrInvalid, uint8(c.Workload))
	case c.Durability > engine.Relaxed:
		return c, fmt.Errorf("%w: unknown durability %d", ErrInvalid, uint8(c.Durability))
	case !(c.Rate >= 0) || math.IsInf(c.Rate, 0):
		return c, fmt.Errorf("%w: Rate %v: want a finite number of operations per second, or 0", ErrInvalid, c.Rate)
	case c.Concurrency < 0 || c.BodySize < 0 || c.Ops < 0 || c.Records < 0 || c.Keys < 0 || c.Warmup < 0:
		return c, fmt.Errorf("%w: negative Concurrency, BodySize, Ops, Keys, Records or Warmup", ErrInvalid)
	case c.Keys > 0 && !c.Workload.retries():
		return c, fmt.Errorf("%w: Keys needs the replay, replay-cold or conflict workload", ErrInvalid)
	case c.Backend != "" && c.Backend != "pebble" && c.Backend != "redis" && c.Backend != "postgres":
		return c, fmt.Errorf("%w: unknown backend %q (want pebble, redis or postgres)", ErrInvalid, c.Backend)
	case c.Backend == "redis" && c.Redis == "":
		return c, fmt.Errorf("%w: backend redis needs the URL of a Redis server (Config.Redis)", ErrInvalid)
	case c.Backend == "postgres" && c.Postgres == "":
		return c, fmt.Errorf("%w: backend postgres needs the URL of a PostgreSQL database (Config.Postgres)", ErrInvalid)
	case c.Ops > maxRecords || c.Records > maxRecords || c.Warmup > maxRecords:
		return c, fmt.Errorf("%w: Ops, Records or Warmup above %d", ErrInvalid, maxRecords)
	case c.Workload != Mixed && (c.ReplayRatio != 0 || c.ConflictRatio != 0):
		return c, fmt.Errorf("%w: ReplayRatio and ConflictRatio need the mixed workload", ErrInvalid)
	case !(c.ReplayRatio >= 0 && c.ConflictRatio >= 0 && c.ReplayRatio+c.ConflictRatio <= 1):
		return c, fmt.Errorf("%w: ReplayRatio %v and ConflictRatio %v: each from 0 to 1, their sum at most 1",
			ErrInvalid, c.ReplayRatio, c.ConflictRatio)
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.BodySize == 0 {
		c.BodySize = DefaultBodySize
	}
	if c.Ops == 0 {
		c.Ops = DefaultOps
	}
	c.Concurrency = min(c.Concurrency, c.Ops)
	if c.Rate > 0 && float64(c.Ops)/c.Rate > maxRateSpan.Seconds() {
		return c, fmt.Errorf("%w: %d operations at Rate %v would take over %v", ErrInvalid, c.Ops, c.Rate, maxRateSpan)
	}
	if c.Workload.retries() && (c.Keys == 0 || c.Keys > c.Ops) {
		c.Keys = c.Ops
	}
	return c, nil
}

// Run measures cfg's workload on idemkv and, unless cfg.NoBaselines, on
// the in-memory map and raw Pebble, one system after the other in this
// process, and returns the report. Results are in that order. On error
// the report holds the results measured so far.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Report{Config: cfg}, err
	}
	s, err := RunSweep(ctx, cfg, []int{cfg.Concurrency})
	if len(s) == 0 {
		return Report{Config: cfg}, err
	}
	return s[0], err
}

// RunSweep measures cfg's workload as Run does at each concurrency in
// turn (cfg.Concurrency is ignored), and returns one report for each, in
// the order given. Each system is opened and prefilled once; the steps
// then measure it one after the other, each on keys of its own, so a
// step finds the records of the steps before it in the store (Ops each,
// or Ops more for the workloads that store their retry targets first).
// On error the reports hold the results measured so far.
func RunSweep(ctx context.Context, cfg Config, concurrency []int) (Sweep, error) {
	if len(concurrency) == 0 {
		return nil, fmt.Errorf("%w: no concurrency to measure", ErrInvalid)
	}
	for _, c := range concurrency {
		if c < 1 {
			return nil, fmt.Errorf("%w: concurrency %d", ErrInvalid, c)
		}
	}
	cfg.Concurrency = concurrency[0]
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	d := newDataset(0, cfg.BodySize)
	sweep := make(Sweep, len(concurrency))
	for k, c := range concurrency {
		sc := cfg
		sc.Concurrency = min(c, cfg.Ops)
		sweep[k] = Report{Config: sc, BodyLen: d.bodyLen(), GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	}
	root, err := os.MkdirTemp(cfg.Dir, "idemkv-bench-")
	if err != nil {
		return sweep, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(root)
	cfg.maxConcurrency = slices.Max(concurrency)
	names := systemNames
	if cfg.Redis != "" {
		desc, err := RedisPersistence(ctx, cfg.Redis)
		if err != nil {
			return sweep, fmt.Errorf("bench: %w", err)
		}
		for k := range sweep {
			sweep[k].RedisPersistence = desc
		}
	}
	if cfg.Postgres != "" {
		desc, err := PostgresSettings(ctx, cfg.Postgres)
		if err != nil {
			return sweep, fmt.Errorf("bench: %w", err)
		}
		for k := range sweep {
			sweep[k].PostgresSettings = desc
		}
	}
	if cfg.NoBaselines {
		names = names[:1]
	}
	if cfg.Redis != "" && !cfg.NoBaselines {
		names = append(slices.Clip(names), "redis")
	}
	if cfg.Backend == "redis" {
		names = append(slices.Clip(names), "idemkv-redis")
	}
	if cfg.Postgres != "" && !cfg.NoBaselines {
		names = append(slices.Clip(names), "postgres")
	}
	if cfg.Backend == "postgres" {
		names = append(slices.Clip(names), "idemkv-postgres")
	}
	for _, name := range names {
		open := func(prefill bool) (system, error) {
			return openSystem(name, filepath.Join(root, name), cfg, d, prefill)
		}
		if err := runSystem(ctx, name, open, sweep, d); err != nil {
			return sweep, fmt.Errorf("bench: %s: %w", name, err)
		}
	}
	return sweep, nil
}

// runSystem opens a system, prefills it, measures it at each step of
// sweep, appending its results, and closes it. The steps share
// everything in sweep[0].Config but the concurrency.
func runSystem(ctx context.Context, name string, open func(prefill bool) (system, error), sweep Sweep, d *dataset) (err error) {
	cfg := sweep[0].Config
	s, err := open(cfg.Records > 0)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := s.close(); err == nil && cerr != nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}()
	stored := 0
	if cfg.Records > 0 {
		if err := s.load(ctx, 0, cfg.Records, cfg.Progress); err != nil {
			return fmt.Errorf("prefill: %w", err)
		}
		if err := s.reopen(); err != nil {
			return fmt.Errorf("reopen after prefill: %w", err)
		}
		stored = cfg.Records
	}
	if cfg.Warmup > 0 {
		// On keys after every step's.
		if err := warmUp(ctx, name, s, cfg, cfg.Records+len(sweep)*cfg.Ops, d); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		stored += cfg.Warmup
	}
	for k := range sweep {
		sc := sweep[k].Config
		base := cfg.Records + k*cfg.Ops
		d.setWindow(base, cfg.Ops)
		if sc.Workload.retries() {
			if err := s.load(ctx, base, base+cfg.Keys, cfg.Progress); err != nil {
				return fmt.Errorf("store the keys to retry: %w", err)
			}
			stored += cfg.Keys
		}
		// The step before settled after its phase.
		if k == 0 || sc.Workload.retries() {
			if err := settle(ctx, s, name, cfg.Progress); err != nil {
				return err
			}
		}
		res, err := measure(ctx, name, s, sc, d, uint64(k), &stored)
		if err != nil {
			return err
		}
		sweep[k].Results = append(sweep[k].Results, res)
	}
	return nil
}

// warmUp has s serve cfg.Warmup fresh requests on the keys from base, at
// cfg's concurrency, unmeasured (see Config.Warmup).
func warmUp(ctx context.Context, name string, s system, cfg Config, base int, d *dataset) error {
	d.setWindow(base, cfg.Warmup)
	fresh := cfg
	fresh.Workload, fresh.ReplayRatio, fresh.ConflictRatio = Fresh, 0, 0
	label := fmt.Sprintf("%s warm-up c=%d", name, cfg.Concurrency)
	ws, _, err := parallel(ctx, d.n, cfg.Concurrency, 0, ^uint64(0), opFor(s, fresh), cfg.Progress, label)
	if err != nil {
		return err
	}
	return expect(ws, Fresh)
}

// settleQuiet is how long a store must have written nothing before a
// phase is measured, so that the flushes and compactions of what was
// stored before are not counted as the phase's writes, and after it, so
// that those the phase caused are; settleMax bounds the wait.
var (
	settleQuiet = 300 * time.Millisecond
	settleMax   = 2 * time.Minute
)

// settle waits until s has written nothing for settleQuiet, at most
// settleMax.
func settle(ctx context.Context, s system, name string, pr io.Writer) error {
	n0, ok := s.written()
	if !ok {
		return nil
	}
	var moved atomic.Int64
	stop := startProgress(pr, name+": waiting for flushes and compactions", "bytes written", 0, moved.Load)
	defer stop()
	t := time.NewTicker(settleQuiet / 6)
	defer t.Stop()
	start, last, lastN := time.Now(), time.Now(), n0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-t.C:
			n, _ := s.written()
			moved.Store(int64(n - n0))
			if n != lastN {
				last, lastN = now, n
			}
			if now.Sub(last) >= settleQuiet || now.Sub(start) >= settleMax {
				return nil
			}
		}
	}
}

// measure runs the measured phase of one step on s and returns its
// result. stored counts the records s holds; measure adds the fresh
// requests it stored.
func measure(ctx context.Context, name string, s system, cfg Config, d *dataset, seed uint64, stored *int) (Result, error) {
	op := opFor(s, cfg)
	w0, hasFiles := s.written()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	label := fmt.Sprintf("%s %s c=%d", name, cfg.Workload, cfg.Concurrency)
	ws, elapsed, err := parallel(ctx, d.n, cfg.Concurrency, cfg.Rate, seed, op, cfg.Progress, label)
	runtime.ReadMemStats(&after)
	if err != nil {
		return Result{System: name}, err
	}
	// Count the writes the phase left to the background (a write-ahead
	// log written asynchronously, flushes, compactions) as its own.
	if err := settle(ctx, s, name, cfg.Progress); err != nil {
		return Result{System: name}, err
	}
	w1, _ := s.written()
	res := Result{
		System:      name,
		Ops:         d.n,
		Elapsed:     elapsed,
		OpsPerSec:   float64(d.n) / elapsed.Seconds(),
		AllocsPerOp: float64(after.Mallocs-before.Mallocs) / float64(d.n),
	}
	lat := make([]time.Duration, 0, d.n)
	var intended Outcomes
	for _, w := range ws {
		lat = append(lat, w.lat...)
		res.Outcomes.add(w.outcomes)
		intended.add(w.intended)
	}
	slices.Sort(lat)
	res.P50, res.P99, res.P999 = percentile(lat, 0.50), percentile(lat, 0.99), percentile(lat, 0.999)
	*stored += intended.Proceed
	res.Records = *stored
	if b := s.diskBytes(); b > 0 && res.Records > 0 {
		res.DiskBytesPerRecord = float64(b) / float64(res.Records)
	}
	if hasFiles {
		res.BytesWrittenPerOp = float64(w1-w0) / float64(d.n)
		res.WriteAmp = res.BytesWrittenPerOp / float64(d.bodyLen())
	}
	if err := expect(ws, cfg.Workload); err != nil {
		return res, err
	}
	return res, nil
}

// opFor returns the operation that cfg's workload performs on s. Each
// counts what it asks for in the worker's intended outcomes.
func opFor(s system, cfg Config) func(*worker, int) error {
	keyOf := func(i int) int { return i } // the key a retry operation uses
	if cfg.Keys > 0 {
		keyOf = func(i int) int { return i % cfg.Keys }
	}
	switch cfg.Workload {
	case Fresh:
		return func(w *worker, i int) error {
			w.intended.Proceed++
			return s.first(w, i)
		}
	case Conflict:
		return func(w *worker, i int) error {
			w.intended.Conflict++
			return s.retry(w, keyOf(i), true)
		}
	case Mixed:
		replay, retry := cfg.ReplayRatio, cfg.ReplayRatio+cfg.ConflictRatio
		return func(w *worker, i int) error {
			if u := w.rng.Float64(); u < retry && len(w.done) > 0 {
				j := w.done[w.rng.IntN(len(w.done))]
				if u < replay {
					w.intended.Replay++
					return s.retry(w, j, false)
				}
				w.intended.Conflict++
				return s.retry(w, j, true)
			}
			w.intended.Proceed++
			if err := s.first(w, i); err != nil {
				return err
			}
			w.done = append(w.done, i)
			return nil
		}
	}
	return func(w *worker, i int) error {
		w.intended.Replay++
		return s.retry(w, keyOf(i), false)
	}
}

// expect checks that every answer the workers counted (only idemkv and
// the middleware count) was what the workload asked for.
func expect(ws []*worker, wl Workload) error {
	var got, want Outcomes
	for _, w := range ws {
		got.add(w.outcomes)
		want.add(w.intended)
	}
	if got.Total() > 0 && got != want {
		return fmt.Errorf("%w: %s workload: answers %+v; want %+v", ErrUnexpectedOutcome, wl, got, want)
	}
	return nil
}

// percentile returns the p-quantile of sorted by the nearest-rank method.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// worker is one goroutine's state. Only progress is read by another
// goroutine.
type worker struct {
	dst      []byte          // values the baselines read, reused like fastcache's Get(dst, k)
	kb       []byte          // encoded keys for the baselines
	lat      []time.Duration // latency of each operation, preallocated
	outcomes Outcomes        // idemkv's answers
	intended Outcomes        // what the workload asked for
	rng      *rand.Rand      // the Mixed workload's choices, seeded by step and goroutine
	done     []int           // Mixed: the operations this worker completed as fresh requests
	progress atomic.Int64    // operations done, updated every progressBatch
}

const progressBatch = 16

// parallel runs op for operations 0 to n on the given number of
// goroutines and returns their workers and the wall time from the start
// signal to the last goroutine's end. Closed loop (rate 0), goroutine g
// does operations g, g+goroutines, … one after the other. With rate > 0
// the operations are offered open loop (see Config.Rate): operation i is
// due i/rate seconds after the start, and the goroutines take operations
// in order as they become free, like a pool of connections, each waiting
// for its operation's due time. Worker g's random numbers are seeded by
// (seed, g). It stops early on the first error or when ctx is done (also
// interrupting waits for a due time), and prints progress to pr (if not
// nil) as label.
func parallel(ctx context.Context, n, goroutines int, rate float64, seed uint64, op func(*worker, int) error, pr io.Writer, label string) ([]*worker, time.Duration, error) {
	var stop atomic.Bool
	quit := make(chan struct{})
	var quitOnce sync.Once
	halt := func() {
		stop.Store(true)
		quitOnce.Do(func() { close(quit) })
	}
	defer context.AfterFunc(ctx, halt)()
	ws := make([]*worker, goroutines)
	errs := make([]error, goroutines)
	for g := range ws {
		ws[g] = &worker{
			lat: make([]time.Duration, 0, (n-g+goroutines-1)/goroutines),
			rng: rand.New(rand.NewPCG(seed, uint64(g))),
		}
	}
	start := make(chan struct{})
	var t0 time.Time      // written before start is closed
	var next atomic.Int64 // open loop: the next operation to take
	var wg sync.WaitGroup
	for g, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { w.progress.Store(int64(len(w.lat))) }()
			var timer *time.Timer
			if rate > 0 {
				timer = time.NewTimer(time.Hour)
				timer.Stop()
			}
			<-start
			for k := g; ; k += goroutines {
				i := k
				if rate > 0 {
					i = int(next.Add(1) - 1)
				}
				if i >= n || stop.Load() {
					return
				}
				began := time.Now()
				if rate > 0 {
					// An operation that falls due before a goroutine is
					// free to take it counts from its due time: that wait
					// is the system's. One that a goroutine waits for
					// counts from the wake-up, which the timer makes late
					// (typically by a fraction of a millisecond, a few
					// when the cores are busy): that wait is the
					// harness's.
					due := t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))
					if d := due.Sub(began); d > 0 {
						timer.Reset(d)
						select {
						case <-timer.C:
						case <-quit:
							return
						}
						began = time.Now()
					} else {
						began = due
					}
				}
				err := op(w, i)
				w.lat = append(w.lat, time.Since(began))
				if err != nil {
					errs[g] = err
					halt()
					return
				}
				if len(w.lat)%progressBatch == 0 {
					w.progress.Store(int64(len(w.lat)))
				}
			}
		}()
	}
	done := func() int64 {
		t := int64(0)
		for _, w := range ws {
			t += w.progress.Load()
		}
		return t
	}
	stopProgress := startProgress(pr, label, "ops", n, done)
	t0 = time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)
	stopProgress()
	for _, err := range errs {
		if err != nil {
			return ws, elapsed, err
		}
	}
	if err := ctx.Err(); err != nil {
		return ws, elapsed, err
	}
	return ws, elapsed, nil
}
