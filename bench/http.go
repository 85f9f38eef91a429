package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
)

// httpSystemNames are the systems RunHTTP measures, in the order of
// HTTPReport.Results.
var httpSystemNames = []string{"bare", "idemhttp"}

// httpRequestBody is the body of every request: a small JSON command.
var httpRequestBody = []byte(`{"to":"+15550100","agent":"agent_7","metadata":{"campaign":"spring"}}`)

// HTTPReport is the outcome of RunHTTP.
type HTTPReport struct {
	// Config is the run's configuration with defaults filled in.
	Config Config
	// Results holds the bare handler's result, then the middleware's
	// ("bare", "idemhttp").
	Results []Result
	// BodyLen is the length of the handler's response body in bytes.
	BodyLen int
	// GoVersion and GOMAXPROCS describe the process that measured.
	GoVersion  string
	GOMAXPROCS int
	// Paired is the latency the middleware adds, measured with both
	// servers up and every client alternating between them.
	Paired PairedLatency
}

// PairedLatency is the latency the middleware adds, measured in pairs:
// with both servers up, each client sends a request to the bare handler
// and the same request to the middleware, one right after the other (in
// alternating order), so that both see the same moment of the machine.
// Sequential runs of the two systems differ by whatever the machine does
// between them, which on a small shared machine is often more than the
// middleware costs.
type PairedLatency struct {
	Pairs int `json:"pairs"`
	// BareP50 and MiddlewareP50 are the medians of each side's latencies.
	BareP50       time.Duration `json:"bare_p50_ns"`
	MiddlewareP50 time.Duration `json:"middleware_p50_ns"`
	// AddedP50 and AddedP99 are the 50th and 99th percentiles of the
	// per-pair differences (middleware minus bare).
	AddedP50 time.Duration `json:"added_p50_ns"`
	AddedP99 time.Duration `json:"added_p99_ns"`
}

// RunHTTP measures the idemhttp middleware over idemkv, wrapping a
// trivial handler, against the bare handler: each served by its own
// net/http server on a loopback port and driven by Concurrency clients
// over keep-alive connections. The workload is Fresh (a new key every
// request) or Replay (a retry of a request completed before the phase);
// Records must be 0 and NoBaselines is ignored. The handler reads the
// request and answers 201 with a JSON body of about BodySize bytes.
func RunHTTP(ctx context.Context, cfg Config) (HTTPReport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return HTTPReport{Config: cfg}, err
	}
	switch {
	case cfg.Workload != Fresh && cfg.Workload != Replay:
		return HTTPReport{Config: cfg}, fmt.Errorf("%w: the HTTP benchmark runs the fresh or replay workload, not %s", ErrInvalid, cfg.Workload)
	case cfg.Records != 0:
		return HTTPReport{Config: cfg}, fmt.Errorf("%w: the HTTP benchmark does not prefill records", ErrInvalid)
	case cfg.Rate != 0:
		return HTTPReport{Config: cfg}, fmt.Errorf("%w: the HTTP benchmark runs closed loop (no Rate)", ErrInvalid)
	}
	d := newDataset(0, cfg.BodySize)
	rep := HTTPReport{Config: cfg, BodyLen: len(d.bodies[0]), GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	root, err := os.MkdirTemp(cfg.Dir, "idemkv-bench-http-")
	if err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(root)
	sweep := Sweep{{Config: cfg}}
	for _, name := range httpSystemNames {
		open := func(bool) (system, error) {
			return openHTTPSystem(ctx, name, filepath.Join(root, name), cfg, d)
		}
		err := runSystem(ctx, name, open, sweep, d)
		rep.Results = sweep[0].Results
		if err != nil {
			return rep, fmt.Errorf("bench: http %s: %w", name, err)
		}
	}
	if rep.Paired, err = pairedHTTP(ctx, cfg, d, root); err != nil {
		return rep, fmt.Errorf("bench: http paired: %w", err)
	}
	return rep, nil
}

// pairedHTTP measures PairedLatency on new servers and a new store.
func pairedHTTP(ctx context.Context, cfg Config, d *dataset, root string) (p PairedLatency, err error) {
	var sys [2]*httpSystem
	for k, name := range httpSystemNames {
		if sys[k], err = openHTTPSystem(ctx, name, filepath.Join(root, "paired-"+name), cfg, d); err != nil {
			return p, err
		}
		defer func() { err = errors.Join(err, sys[k].close()) }()
	}
	mw := sys[1]
	n := cfg.Ops
	want := engine.Proceed
	if cfg.Workload == Replay {
		want = engine.Replay
		if err := mw.load(ctx, 0, n, cfg.Progress); err != nil {
			return p, err
		}
	}
	lat := make([][2]time.Duration, n) // bare, middleware; each i is one goroutine's
	_, _, err = parallel(ctx, n, cfg.Concurrency, 0, 0, func(w *worker, i int) error {
		id := string(appendID(nil, uint64(i)))
		order := [2]int{0, 1}
		if i%2 == 1 {
			order = [2]int{1, 0}
		}
		for _, k := range order {
			t0 := time.Now()
			if err := sys[k].post(w, id, want); err != nil {
				return err
			}
			lat[i][k] = time.Since(t0)
		}
		return nil
	}, cfg.Progress, "paired bare/idemhttp "+cfg.Workload.String())
	if err != nil {
		return p, err
	}
	sides := [2][]time.Duration{make([]time.Duration, n), make([]time.Duration, n)}
	diff := make([]time.Duration, n)
	for i, l := range lat {
		sides[0][i], sides[1][i], diff[i] = l[0], l[1], l[1]-l[0]
	}
	for _, s := range append(sides[:], diff) {
		slices.Sort(s)
	}
	return PairedLatency{
		Pairs: n, BareP50: percentile(sides[0], 0.5), MiddlewareP50: percentile(sides[1], 0.5),
		AddedP50: percentile(diff, 0.5), AddedP99: percentile(diff, 0.99),
	}, nil
}

// httpSystem is a handler served on a loopback port, and its client.
type httpSystem struct {
	name   string
	d      *dataset
	e      *engine.Engine // nil for the bare handler
	srv    *http.Server
	done   chan struct{} // closed when srv.Serve returns
	tr     *http.Transport
	client *http.Client
	url    string
}

// httpLoaders is the number of clients that store retry targets.
const httpLoaders = 32

// openHTTPSystem serves the named system on a loopback port and opens
// cfg.Concurrency connections to it.
func openHTTPSystem(ctx context.Context, name, dir string, cfg Config, d *dataset) (_ *httpSystem, err error) {
	s := &httpSystem{name: name, d: d, done: make(chan struct{})}
	body := d.bodies[0]
	var arrived atomic.Int64
	warm := make(chan struct{})
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		if r.Method == http.MethodGet { // a warm-up request: wait for the others
			if arrived.Add(1) == int64(cfg.Concurrency) {
				close(warm)
			}
			select {
			case <-warm:
			case <-time.After(5 * time.Second):
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(body)
	})
	if name == "idemhttp" {
		o := engine.Options{Durability: cfg.Durability}
		if s.e, err = engine.Open(dir, &o); err != nil {
			return nil, err
		}
		m, err := idemhttp.New(s.e, nil)
		if err != nil {
			_ = s.e.Close()
			return nil, err
		}
		h = m.Handler(h)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		if s.e != nil {
			_ = s.e.Close()
		}
		return nil, err
	}
	s.srv = &http.Server{Handler: h, ReadHeaderTimeout: time.Minute, ErrorLog: log.New(io.Discard, "", 0)}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	s.url = "http://" + ln.Addr().String() + "/v1/calls"
	conns := max(cfg.Concurrency, httpLoaders)
	s.tr = &http.Transport{
		DialContext:         (&net.Dialer{}).DialContext,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     5 * time.Minute,
		DisableCompression:  true,
	}
	s.client = &http.Client{Transport: s.tr}
	defer func() {
		if err != nil {
			_ = s.close()
		}
	}()
	// Open every connection before measuring: concurrent requests that
	// the handler holds until all have arrived.
	var wg sync.WaitGroup
	errs := make([]error, cfg.Concurrency)
	for g := range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
			if err != nil {
				errs[g] = err
				return
			}
			resp, err := s.client.Do(req)
			if err != nil {
				errs[g] = err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			errs[g] = resp.Body.Close()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	return s, nil
}

func (s *httpSystem) first(w *worker, i int) error { return s.post(w, s.d.id(i), engine.Proceed) }

func (s *httpSystem) retry(w *worker, i int, conflict bool) error {
	if conflict {
		return fmt.Errorf("%w: the HTTP benchmark has no conflicts", ErrInvalid)
	}
	return s.post(w, s.d.id(i), engine.Replay)
}

// post sends a request with the idempotency key id, reads the response
// and checks it: 201 and the handler's body, and from the middleware the
// Idempotency-Replay header that want implies (counted in w.outcomes).
func (s *httpSystem) post(w *worker, id string, want engine.Outcome) error {
	req, err := http.NewRequest(http.MethodPost, s.url, bytes.NewReader(httpRequestBody))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk_bench")
	req.Header.Set("Idempotency-Key", id)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	w.dst, err = appendAll(w.dst[:0], resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if body := s.d.bodies[0]; resp.StatusCode != http.StatusCreated || len(w.dst) != len(body) {
		return fmt.Errorf("%w: %s: key %s: status %d, %d body bytes (%.80q); want 201, %d bytes",
			ErrUnexpectedOutcome, s.name, id, resp.StatusCode, len(w.dst), w.dst, len(body))
	}
	if s.e == nil {
		return nil
	}
	switch r := resp.Header.Get("Idempotency-Replay"); r {
	case "false":
		w.outcomes.count(engine.Proceed)
	case "true":
		w.outcomes.count(engine.Replay)
	default:
		return fmt.Errorf("%w: %s: key %s: Idempotency-Replay %q", ErrUnexpectedOutcome, s.name, id, r)
	}
	return nil
}

// appendAll appends what r yields to dst, until io.EOF.
func appendAll(dst []byte, r io.Reader) ([]byte, error) {
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// load sends the first request of each key through HTTP.
func (s *httpSystem) load(ctx context.Context, lo, hi int, pr io.Writer) error {
	return loadChunks(ctx, lo, hi, httpLoaders, 16, pr, "store the keys to retry on "+s.name, func(lo, hi int) error {
		w := &worker{}
		for x := lo; x < hi; x++ {
			if err := s.post(w, string(appendID(nil, uint64(x))), engine.Proceed); err != nil {
				return err
			}
		}
		if w.outcomes.Total() != w.outcomes.Proceed {
			return fmt.Errorf("%w: %s: answers %+v to first requests", ErrUnexpectedOutcome, s.name, w.outcomes)
		}
		return nil
	})
}

func (s *httpSystem) reopen() error { return nil }

func (s *httpSystem) written() (uint64, bool) {
	if s.e == nil {
		return 0, false
	}
	return s.e.Stats().BytesWritten, true
}

func (s *httpSystem) diskBytes() uint64 {
	if s.e == nil {
		return 0
	}
	return s.e.Stats().DiskBytes
}

func (s *httpSystem) close() error {
	err := s.srv.Close()
	<-s.done
	s.tr.CloseIdleConnections()
	if s.e != nil {
		err = errors.Join(err, s.e.Close())
	}
	return err
}

// Result returns the named system's result ("bare" or "idemhttp").
func (r HTTPReport) Result(system string) (Result, bool) {
	return Report{Results: r.Results}.Result(system)
}

// Added returns the latency the middleware adds to a request: the
// middleware's 50th and 99th percentiles minus the bare handler's. Both
// are 0 unless both were measured.
func (r HTTPReport) Added() (p50, p99 time.Duration) {
	a, ok1 := r.Result("idemhttp")
	b, ok2 := r.Result("bare")
	if !ok1 || !ok2 {
		return 0, 0
	}
	return a.P50 - b.P50, a.P99 - b.P99
}

// Ratio returns the middleware's throughput divided by the bare
// handler's: below 1 by what the middleware costs. It returns 0 unless
// both were measured.
func (r HTTPReport) Ratio() float64 {
	a, ok1 := r.Result("idemhttp")
	b, ok2 := r.Result("bare")
	if !ok1 || !ok2 || b.OpsPerSec == 0 {
		return 0
	}
	return a.OpsPerSec / b.OpsPerSec
}

// WriteTable writes the report as a configuration line, one row per
// system, and a line with the latency the middleware adds.
func (r HTTPReport) WriteTable(w io.Writer) error {
	c := r.Config
	if _, err := fmt.Fprintf(w, "http: workload=%s durability=%s concurrency=%d body=%dB ops=%d, loopback, keep-alive %s GOMAXPROCS=%d\n",
		c.Workload, c.Durability, c.Concurrency, r.BodyLen, c.Ops, r.GoVersion, r.GOMAXPROCS); err != nil {
		return err
	}
	rows := [][]string{{"system", "ops/s", "p50", "p99", "p99.9", "allocs/op", "written B/op", "disk B/record", "÷ bare"}}
	for _, res := range r.Results {
		written, disk, ratio := "-", "-", "-"
		if res.System == "idemhttp" {
			written = group(res.BytesWrittenPerOp)
			if res.DiskBytesPerRecord > 0 {
				disk = group(res.DiskBytesPerRecord)
			}
			if x := r.Ratio(); x > 0 {
				ratio = ftoa(x, 2) + "x"
			}
		}
		rows = append(rows, []string{res.System, group(res.OpsPerSec), short(res.P50), short(res.P99), short(res.P999),
			ftoa(res.AllocsPerOp, 1), written, disk, ratio})
	}
	if _, err := io.WriteString(w, formatTable(rows)); err != nil {
		return err
	}
	if len(r.Results) < 2 {
		return nil
	}
	p50, p99 := r.Added()
	if _, err := fmt.Fprintf(w, "idemhttp adds %s per request at p50, %s at p99 (sequential runs; allocations: client, server and store)\n",
		signed(p50), signed(p99)); err != nil {
		return err
	}
	if pl := r.Paired; pl.Pairs > 0 {
		_, err := fmt.Fprintf(w, "paired, %d alternating requests to both servers: bare p50 %s, idemhttp p50 %s; idemhttp adds %s at the median of the pairs' differences, %s at their p99\n",
			pl.Pairs, short(pl.BareP50), short(pl.MiddlewareP50), signed(pl.AddedP50), signed(pl.AddedP99))
		return err
	}
	return nil
}

// signed formats d as short does, with a sign.
func signed(d time.Duration) string {
	if d < 0 {
		return "-" + short(-d)
	}
	return "+" + short(d)
}

// WriteCSV writes a header line and one line per system; durations are
// in nanoseconds; added_*_ns and ratio_to_bare compare the line's system
// with the bare handler.
func (r HTTPReport) WriteCSV(w io.Writer) error {
	c := r.Config
	bare, _ := r.Result("bare")
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"workload", "durability", "concurrency", "body_len", "system", "ops", "elapsed_ns",
		"ops_per_sec", "p50_ns", "p99_ns", "p999_ns", "allocs_per_op", "bytes_written_per_op",
		"disk_bytes_per_record", "added_p50_ns", "added_p99_ns", "ratio_to_bare"})
	for _, res := range r.Results {
		ratio := 0.0
		if bare.OpsPerSec > 0 {
			ratio = res.OpsPerSec / bare.OpsPerSec
		}
		_ = cw.Write([]string{c.Workload.String(), c.Durability.String(), strconv.Itoa(c.Concurrency),
			strconv.Itoa(r.BodyLen), res.System, strconv.Itoa(res.Ops), strconv.FormatInt(int64(res.Elapsed), 10),
			ftoa(res.OpsPerSec, 0), strconv.FormatInt(int64(res.P50), 10), strconv.FormatInt(int64(res.P99), 10),
			strconv.FormatInt(int64(res.P999), 10), ftoa(res.AllocsPerOp, 2), ftoa(res.BytesWrittenPerOp, 0),
			ftoa(res.DiskBytesPerRecord, 0), strconv.FormatInt(int64(res.P50-bare.P50), 10),
			strconv.FormatInt(int64(res.P99-bare.P99), 10), ftoa(ratio, 3)})
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes the report as one indented JSON object: the
// configuration, the results (durations in nanoseconds), the latency the
// middleware adds and its throughput divided by the bare handler's.
func (r HTTPReport) WriteJSON(w io.Writer) error {
	type config struct {
		Workload    Workload `json:"workload"`
		Durability  string   `json:"durability"`
		Concurrency int      `json:"concurrency"`
		BodyLen     int      `json:"body_len"`
		Ops         int      `json:"ops"`
		GoVersion   string   `json:"go_version"`
		GOMAXPROCS  int      `json:"gomaxprocs"`
	}
	c := r.Config
	p50, p99 := r.Added()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Config   config        `json:"config"`
		Results  []Result      `json:"results"`
		AddedP50 time.Duration `json:"added_p50_ns"`
		AddedP99 time.Duration `json:"added_p99_ns"`
		Ratio    float64       `json:"ratio_to_bare"`
		Paired   PairedLatency `json:"paired"`
	}{config{c.Workload, c.Durability.String(), c.Concurrency, r.BodyLen, c.Ops, r.GoVersion, r.GOMAXPROCS},
		r.Results, p50, p99, r.Ratio(), r.Paired})
}
