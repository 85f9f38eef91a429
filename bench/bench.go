package bench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemkv/idemkv/bench/payload"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
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
)

var workloadNames = [...]string{Fresh: "fresh", Replay: "replay", ReplayCold: "replay-cold", Conflict: "conflict"}

func (w Workload) String() string {
	if int(w) < len(workloadNames) {
		return workloadNames[w]
	}
	return fmt.Sprintf("Workload(%d)", uint8(w))
}

// ParseWorkload parses "fresh", "replay", "replay-cold" or "conflict".
func ParseWorkload(s string) (Workload, error) {
	if i := slices.Index(workloadNames[:], s); i >= 0 {
		return Workload(i), nil
	}
	return 0, fmt.Errorf("%w: unknown workload %q (want fresh, replay, replay-cold or conflict)", ErrInvalid, s)
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

// Config describes one run. The zero value is valid: it measures the
// Fresh workload in the Synced mode with the defaults below. Zero numeric
// fields take their defaults; negative ones are invalid.
type Config struct {
	// Workload is what every operation does. Default Fresh.
	Workload Workload

	// Concurrency is the number of goroutines that share the operations.
	// Default 64; at most Ops.
	Concurrency int

	// BodySize is the size in bytes of each response body (realistic
	// JSON from package payload, which for sizes from 120 up is at least
	// this long and a few hundred bytes longer at most). Default 2048.
	BodySize int

	// Durability is idemkv's durability mode. Raw Pebble commits with
	// pebble.Sync in the Synced mode and pebble.NoSync in the Relaxed
	// mode. Default engine.Synced.
	Durability engine.Durability

	// Ops is the number of measured operations for each system, every one
	// on a distinct key; it is also the number of records each stores.
	// Default 20000.
	Ops int

	// Dir is the directory in which Run creates a temporary directory for
	// the systems' data; Run removes it before it returns. Default
	// os.TempDir(). Set it to measure on a particular filesystem.
	Dir string

	// NoBaselines measures idemkv alone. By default (false) the map and
	// raw Pebble baselines are measured too.
	NoBaselines bool
}

// Defaults of Config.
const (
	DefaultConcurrency = 64
	DefaultBodySize    = 2048
	DefaultOps         = 20000
)

// withDefaults fills in the defaults and validates c.
func (c Config) withDefaults() (Config, error) {
	switch {
	case int(c.Workload) >= len(workloadNames):
		return c, fmt.Errorf("%w: unknown workload %d", ErrInvalid, uint8(c.Workload))
	case c.Durability > engine.Relaxed:
		return c, fmt.Errorf("%w: unknown durability %d", ErrInvalid, uint8(c.Durability))
	case c.Concurrency < 0 || c.BodySize < 0 || c.Ops < 0:
		return c, fmt.Errorf("%w: negative Concurrency, BodySize or Ops", ErrInvalid)
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
	d := newDataset(cfg.Ops, cfg.BodySize)
	rep := Report{
		Config: cfg, BodyLen: d.bodyLen(),
		GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0),
	}
	root, err := os.MkdirTemp(cfg.Dir, "idemkv-bench-")
	if err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(root)
	names := systemNames
	if cfg.NoBaselines {
		names = names[:1]
	}
	for _, name := range names {
		res, err := runSystem(ctx, name, filepath.Join(root, name), cfg, d)
		if err != nil {
			return rep, fmt.Errorf("bench: %s: %w", name, err)
		}
		rep.Results = append(rep.Results, res)
	}
	return rep, nil
}

// runSystem opens the named system in dir, measures it and closes it,
// removing dir.
func runSystem(ctx context.Context, name, dir string, cfg Config, d *dataset) (_ Result, err error) {
	defer os.RemoveAll(dir)
	s, err := openSystem(name, dir, cfg, d)
	if err != nil {
		return Result{}, err
	}
	defer func() {
		if cerr := s.close(); err == nil && cerr != nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}()
	if cfg.Workload != Fresh {
		ws, _, err := parallel(ctx, cfg.Concurrency, d, s.first)
		if err != nil {
			return Result{}, fmt.Errorf("prefill: %w", err)
		}
		if err := expect(ws, engine.Proceed, Fresh); err != nil {
			return Result{}, fmt.Errorf("prefill: %w", err)
		}
	}
	op := opFor(s, cfg.Workload)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ws, elapsed, err := parallel(ctx, cfg.Concurrency, d, op)
	runtime.ReadMemStats(&after)
	if err != nil {
		return Result{}, err
	}
	res := Result{
		System:      name,
		Ops:         d.n,
		Elapsed:     elapsed,
		OpsPerSec:   float64(d.n) / elapsed.Seconds(),
		AllocsPerOp: float64(after.Mallocs-before.Mallocs) / float64(d.n),
	}
	lat := make([]time.Duration, 0, d.n)
	for _, w := range ws {
		lat = append(lat, w.lat...)
		res.Outcomes.add(w.outcomes)
	}
	slices.Sort(lat)
	res.P50, res.P99, res.P999 = percentile(lat, 0.50), percentile(lat, 0.99), percentile(lat, 0.999)
	if b := s.diskBytes(); b > 0 {
		res.DiskBytesPerRecord = float64(b) / float64(d.n)
	}
	if err := expect(ws, wantOutcome(cfg.Workload), cfg.Workload); err != nil {
		return res, err
	}
	return res, nil
}

// opFor returns the operation that w performs on s.
func opFor(s system, w Workload) func(*worker, int) error {
	switch w {
	case Fresh:
		return s.first
	case Conflict:
		return func(wk *worker, i int) error { return s.retry(wk, i, true) }
	}
	return func(wk *worker, i int) error { return s.retry(wk, i, false) }
}

func wantOutcome(w Workload) engine.Outcome {
	switch w {
	case Fresh:
		return engine.Proceed
	case Conflict:
		return engine.Conflict
	}
	return engine.Replay
}

// expect checks that every answer the workers counted (only idemkv
// counts) was want.
func expect(ws []*worker, want engine.Outcome, w Workload) error {
	var o Outcomes
	for _, wk := range ws {
		o.add(wk.outcomes)
	}
	if n := o.Total(); n > 0 && o.Of(want) != n {
		return fmt.Errorf("%w: %s workload: %d of %d answers were not %v (%+v)",
			ErrUnexpectedOutcome, w, n-o.Of(want), n, want, o)
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

// worker is one goroutine's state. Nothing in it is shared.
type worker struct {
	dst      []byte          // values the baselines read, reused like fastcache's Get(dst, k)
	kb       []byte          // encoded keys for the baselines
	lat      []time.Duration // latency of each operation, preallocated
	outcomes Outcomes        // idemkv's answers
}

// parallel runs op for every operation of d on the given number of
// goroutines (goroutine g does g, g+goroutines, …) and returns their
// workers and the wall time from the start signal to the last goroutine's
// end. It stops early on the first error or when ctx is done.
func parallel(ctx context.Context, goroutines int, d *dataset, op func(*worker, int) error) ([]*worker, time.Duration, error) {
	var stop atomic.Bool
	defer context.AfterFunc(ctx, func() { stop.Store(true) })()
	n := d.n
	ws := make([]*worker, goroutines)
	errs := make([]error, goroutines)
	for g := range ws {
		ws[g] = &worker{lat: make([]time.Duration, 0, (n-g+goroutines-1)/goroutines)}
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := g; i < n; i += goroutines {
				if stop.Load() {
					return
				}
				t0 := time.Now()
				err := op(w, i)
				w.lat = append(w.lat, time.Since(t0))
				if err != nil {
					errs[g] = err
					stop.Store(true)
					return
				}
			}
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)
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

// The key parts every request uses: a tenant and an operation.
const (
	benchScope    = "acct_9f2c4e1d7a3b"
	benchEndpoint = "POST /v1/calls"
	idLen         = 36 // a UUID's text form
	nBodies       = 8  // distinct bodies per dataset
)

// dataset holds every input of a run, built up front so that operations
// neither allocate nor hash their inputs.
type dataset struct {
	n      int
	ids    string // n idempotency keys of idLen bytes, concatenated
	bodies [][]byte
	fps    []record.Fingerprint // fps[j] is record.Sum(bodies[j])
	hdr    []record.Header
}

// newDataset returns n distinct keys and nBodies bodies of about size
// bytes.
func newDataset(n, size int) *dataset {
	d := &dataset{
		n:   n,
		hdr: []record.Header{{Name: "Content-Type", Value: "application/json"}},
	}
	for j := range nBodies {
		b := payload.JSON(nil, size, uint64(j+1))
		d.bodies = append(d.bodies, b)
		d.fps = append(d.fps, record.Sum(b))
	}
	// UUID-shaped keys: 8 random bytes, then the index (below 2^56, so
	// that the variant bits do not collide), so keys are distinct and
	// arrive in random order, like client-generated UUIDs.
	r := rand.New(rand.NewPCG(uint64(n), 0x6b657973))
	ids := make([]byte, 0, n*idLen)
	var u [16]byte
	for i := range n {
		x := r.Uint64()
		for k := range 8 {
			u[k] = byte(x >> (8 * k))
			u[8+k] = byte(uint64(i) >> (8 * (7 - k)))
		}
		u[6] = u[6]&0x0f | 0x40 // version 4
		u[8] |= 0x80            // variant 10
		ids = appendUUID(ids, u)
	}
	d.ids = string(ids)
	return d
}

func appendUUID(dst []byte, u [16]byte) []byte {
	const hex = "0123456789abcdef"
	for k, b := range u {
		if k == 4 || k == 6 || k == 8 || k == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hex[b>>4], hex[b&15])
	}
	return dst
}

// id returns operation i's idempotency key (it is also used as the
// request id).
func (d *dataset) id(i int) string { return d.ids[i*idLen : (i+1)*idLen] }

// key returns operation i's idemkv key.
func (d *dataset) key(i int) record.Key {
	return record.Key{Scope: benchScope, Endpoint: benchEndpoint, Key: d.id(i)}
}

// appendKey appends the baselines' key of operation i to dst: the same
// bytes as idemkv's encoded key (scope, endpoint, key).
func (d *dataset) appendKey(dst []byte, i int) []byte { return d.key(i).Append(dst) }

// body returns operation i's response body.
func (d *dataset) body(i int) []byte { return d.bodies[i%nBodies] }

// fp returns the fingerprint of operation i's request.
func (d *dataset) fp(i int) record.Fingerprint { return d.fps[i%nBodies] }

// otherFP returns a fingerprint that differs from fp(i), for conflicts.
func (d *dataset) otherFP(i int) record.Fingerprint { return d.fps[(i+1)%nBodies] }

// bodyLen returns the mean length of the bodies.
func (d *dataset) bodyLen() int {
	t := 0
	for _, b := range d.bodies {
		t += len(b)
	}
	return t / len(d.bodies)
}
