package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
)

func TestRunMixed(t *testing.T) {
	const ops = 600
	rep, err := Run(context.Background(), Config{
		Workload: Mixed, ReplayRatio: 0.5, ConflictRatio: 0.2, Durability: engine.Relaxed,
		Concurrency: 4, BodySize: 500, Ops: ops, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	o := rep.Results[0].Outcomes
	if o.Total() != ops {
		t.Fatalf("idemkv answered %+v; want %d answers", o, ops)
	}
	// Every goroutine's first operation is fresh; then the ratios hold
	// within a wide margin.
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"replay", float64(o.Replay), 0.5}, {"conflict", float64(o.Conflict), 0.2}, {"fresh", float64(o.Proceed), 0.3}} {
		if f := c.got / ops; math.Abs(f-c.want) > 0.1 {
			t.Errorf("%s: %.2f of operations; want about %.2f", c.name, f, c.want)
		}
	}
	// The systems saw the same operations: each stored the fresh ones.
	for _, r := range rep.Results {
		if r.Records != o.Proceed {
			t.Errorf("%s holds %d records; want %d", r.System, r.Records, o.Proceed)
		}
	}
	checkWriters(t, rep)
}

// TestRunRecords prefills records and checks that the measured phase
// found them in every system.
func TestRunRecords(t *testing.T) {
	const ops, records = 100, 3000
	rep, err := Run(context.Background(), Config{
		Workload: ReplayCold, Records: records, Durability: engine.Synced,
		Concurrency: 4, BodySize: 300, Ops: ops, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.Records != records+ops {
			t.Errorf("%s: %d records; want %d", r.System, r.Records, records+ops)
		}
		if hasDisk := r.System != "map"; (r.DiskBytesPerRecord > 0) != hasDisk {
			t.Errorf("%s: disk bytes per record %v", r.System, r.DiskBytesPerRecord)
		}
	}
	if got := rep.Results[0].Outcomes; got != (Outcomes{Replay: ops}) {
		t.Errorf("idemkv answered %+v; want %d replays", got, ops)
	}
}

// TestLoad checks that every system answers retries of prefilled records
// after it was reopened, as the measured phase needs.
func TestLoad(t *testing.T) {
	for _, name := range systemNames {
		t.Run(name, func(t *testing.T) {
			d := newDataset(0, 400)
			cfg := Config{Workload: Replay, Durability: engine.Synced}
			s, err := openSystem(name, t.TempDir(), cfg, d, true)
			if err != nil {
				t.Fatal(err)
			}
			defer s.close()
			var out bytes.Buffer
			if err := s.load(context.Background(), 0, 500, &out); err != nil {
				t.Fatal(err)
			}
			if err := s.reopen(); err != nil {
				t.Fatal(err)
			}
			d.setWindow(100, 300)
			w := &worker{}
			for i := range d.n {
				if err := s.retry(w, i, false); err != nil {
					t.Fatal(err)
				}
			}
			if w.outcomes.Total() != w.outcomes.Replay {
				t.Errorf("answers %+v; want replays only", w.outcomes)
			}
			// idemkv's load goes through Begin, which refuses stored keys.
			if err := s.load(context.Background(), 450, 600, nil); name == "idemkv" && !errors.Is(err, ErrUnexpectedOutcome) {
				t.Errorf("loading stored keys again: got %v; want ErrUnexpectedOutcome", err)
			}
		})
	}
}

func TestRunSweep(t *testing.T) {
	const ops = 100
	s, err := RunSweep(context.Background(), Config{Durability: engine.Relaxed, BodySize: 300, Ops: ops, Dir: t.TempDir()},
		[]int{1, 4, 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 3 {
		t.Fatalf("%d reports; want 3", len(s))
	}
	for k, want := range []int{1, 4, ops} {
		r := s[k]
		if r.Config.Concurrency != want || len(r.Results) != 3 {
			t.Fatalf("step %d: concurrency %d, %d results; want %d, 3", k, r.Config.Concurrency, len(r.Results), want)
		}
		for _, res := range r.Results {
			if res.Records != (k+1)*ops {
				t.Errorf("step %d: %s holds %d records; want %d", k, res.System, res.Records, (k+1)*ops)
			}
			if persistent := res.System != "map"; (res.BytesWrittenPerOp > 0) != persistent || (res.WriteAmp > 0) != persistent {
				t.Errorf("step %d: %s wrote %v bytes per op, write amp %v", k, res.System, res.BytesWrittenPerOp, res.WriteAmp)
			}
		}
		if res := r.Results[0]; res.BytesWrittenPerOp < float64(r.BodyLen)/10 {
			t.Errorf("step %d: idemkv wrote %v bytes per fresh request of %d", k, res.BytesWrittenPerOp, r.BodyLen)
		}
	}

	var tab, cs, js, svg bytes.Buffer
	if err := s.WriteTable(&tab); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSuffix(tab.String(), "\n"), "\n"); len(lines) != 2+9 || !strings.HasPrefix(lines[1], "c ") {
		t.Errorf("table:\n%s", tab.String())
	}
	if err := s.WriteCSV(&cs); err != nil {
		t.Fatal(err)
	}
	if recs, err := csv.NewReader(&cs).ReadAll(); err != nil || len(recs) != 10 {
		t.Errorf("csv: %d records, %v; want 10", len(recs), err)
	}
	if err := s.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var v []struct {
		Config struct {
			Concurrency int `json:"concurrency"`
		} `json:"config"`
		Results []Result `json:"results"`
	}
	if err := json.Unmarshal(js.Bytes(), &v); err != nil || len(v) != 3 || v[1].Config.Concurrency != 4 || v[2].Results[2] != s[2].Results[2] {
		t.Errorf("json: %v, %+v", err, v)
	}
	if err := s.WriteChart(&svg); err != nil {
		t.Fatal(err)
	}
	checkChart(t, svg.Bytes(), systemNames)
}

// TestWarmupServesKeysOfItsOwnUnmeasured checks that the warm-up's
// requests reach every system without touching the keys of the prefill,
// the retry targets or any step of a sweep (a shared key would answer
// Replay where Proceed is expected, and the run would fail), and that
// they count as stored records but not as measured operations.
func TestWarmupServesKeysOfItsOwnUnmeasured(t *testing.T) {
	const ops, records, warmup = 60, 100, 150
	for _, wl := range []Workload{Fresh, Replay} {
		t.Run(wl.String(), func(t *testing.T) {
			s, err := RunSweep(context.Background(), Config{Workload: wl, Durability: engine.Relaxed, BodySize: 300,
				Ops: ops, Records: records, Warmup: warmup, Dir: t.TempDir()}, []int{1, 4})
			if err != nil {
				t.Fatal(err)
			}
			for k, r := range s {
				for _, res := range r.Results {
					if want := records + warmup + (k+1)*ops; res.Records != want || res.Ops != ops {
						t.Errorf("step %d: %s: %d records, %d ops; want %d, %d", k, res.System, res.Records, res.Ops, want, ops)
					}
				}
				want := Outcomes{Proceed: ops}
				if wl == Replay {
					want = Outcomes{Replay: ops}
				}
				if got := r.Results[0].Outcomes; got != want {
					t.Errorf("step %d: idemkv answered %+v; want %+v", k, got, want)
				}
			}
			var tab bytes.Buffer
			if err := s[0].WriteTable(&tab); err != nil || !strings.Contains(tab.String(), "warmup=150") {
				t.Errorf("the report does not state the warm-up (%v):\n%s", err, tab.String())
			}
		})
	}
}

func TestConfigInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"ratio without mixed", Config{Workload: Replay, ReplayRatio: 0.5}},
		{"ratios above one", Config{Workload: Mixed, ReplayRatio: 0.7, ConflictRatio: 0.4}},
		{"negative ratio", Config{Workload: Mixed, ConflictRatio: -0.1}},
		{"NaN ratio", Config{Workload: Mixed, ReplayRatio: math.NaN()}},
		{"negative records", Config{Records: -1}},
		{"negative warm-up", Config{Warmup: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Run(context.Background(), tc.cfg); !errors.Is(err, ErrInvalid) {
				t.Errorf("got %v; want ErrInvalid", err)
			}
		})
	}
	for _, cs := range [][]int{nil, {4, 0}} {
		if _, err := RunSweep(context.Background(), Config{}, cs); !errors.Is(err, ErrInvalid) {
			t.Errorf("RunSweep(%v): got %v; want ErrInvalid", cs, err)
		}
	}
}

func TestAppendID(t *testing.T) {
	d := newDataset(0, 200)
	d.setWindow(1000, 50)
	for i := range d.n {
		if got, want := d.id(i), string(appendID(nil, uint64(1000+i))); got != want {
			t.Fatalf("window id %d = %q; want %q", i, got, want)
		}
		if got, want := d.keyAt(1000+i), d.key(i); got != want {
			t.Fatalf("keyAt(%d) = %v; want %v", 1000+i, got, want)
		}
	}
	if a, b := string(appendID(nil, 7)), string(appendID(nil, 1<<40+7)); a == b || a[:8] == b[:8] {
		t.Errorf("ids %q and %q: want distinct, in random order", a, b)
	}
}

func TestProgress(t *testing.T) {
	defer func(d time.Duration) { progressEvery = d }(progressEvery)
	progressEvery = 5 * time.Millisecond
	var out bytes.Buffer
	stop := startProgress(&out, "idemkv c=8", "ops", 1000, func() int64 { return 500 })
	time.Sleep(30 * time.Millisecond)
	stop()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "bench: idemkv c=8: 500/1,000 ops, ") ||
		!strings.HasSuffix(lines[len(lines)-1], ", done") {
		t.Errorf("progress lines:\n%s", out.String())
	}
	out.Reset()
	startProgress(&out, "quick", "ops", 10, func() int64 { return 10 })()
	if out.Len() != 0 {
		t.Errorf("a short phase printed %q; want nothing", out.String())
	}
}

// TestRunKeys: with Keys, retries cycle through that many stored keys,
// and every system finds each one.
func TestRunKeys(t *testing.T) {
	const ops, keys = 2000, 50
	for _, wl := range []Workload{Replay, Conflict} {
		rep, err := Run(context.Background(), Config{
			Workload: wl, Durability: engine.Relaxed, Concurrency: 8, BodySize: 300, Ops: ops, Keys: keys, Dir: t.TempDir()})
		if err != nil {
			t.Fatalf("%v: %v", wl, err)
		}
		want := Outcomes{Replay: ops}
		if wl == Conflict {
			want = Outcomes{Conflict: ops}
		}
		if got := rep.Results[0].Outcomes; got != want {
			t.Errorf("%v: idemkv answered %+v; want %+v", wl, got, want)
		}
		if len(rep.Results) != 3 {
			t.Errorf("%v: %d systems measured; want 3", wl, len(rep.Results))
		}
	}
	if _, err := Run(context.Background(), Config{Workload: Fresh, Keys: keys, Dir: t.TempDir()}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Keys with the fresh workload: %v; want ErrInvalid", err)
	}
}

// TestRunRate: with Rate, operations start no earlier than they are due,
// so a run cannot finish before its last operation is due, and every
// operation is measured.
func TestRunRate(t *testing.T) {
	const ops, rate = 200, 400.0
	rep, err := Run(context.Background(), Config{
		Workload: Fresh, Durability: engine.Relaxed, Concurrency: 8, BodySize: 300, Ops: ops, Rate: rate, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.Results[0].Outcomes; got != (Outcomes{Proceed: ops}) {
		t.Errorf("idemkv answered %+v; want %d proceeds", got, ops)
	}
	lastDue := time.Duration(float64(ops-1) / rate * float64(time.Second))
	for _, res := range rep.Results {
		if res.Elapsed < lastDue {
			t.Errorf("%s: measured phase took %v; the last operation was due at %v", res.System, res.Elapsed, lastDue)
		}
		if res.Ops != ops {
			t.Errorf("%s: measured %d operations; want %d", res.System, res.Ops, ops)
		}
	}
	if !strings.Contains(rep.describe(false), "rate=400/s") {
		t.Errorf("the table's configuration line does not give the rate: %q", rep.describe(false))
	}
	var cs bytes.Buffer
	if err := rep.WriteCSV(&cs); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&cs).ReadAll()
	if err != nil || len(recs) < 2 {
		t.Fatalf("csv: %v, %d records", err, len(recs))
	}
	col := slices.Index(recs[0], "rate")
	if col < 0 || recs[1][col] != "400" {
		t.Errorf("csv: rate column %d in %v, first row %v; want 400", col, recs[0], recs[1])
	}
}

// TestParallelOpenLoop: an operation's latency counts from when it was
// due, so a system slower than the offered rate shows its clients'
// queueing delay instead of its service time (no coordinated omission).
func TestParallelOpenLoop(t *testing.T) {
	const n, service = 20, 10 * time.Millisecond
	slow := func(*worker, int) error { time.Sleep(service); return nil }
	// One goroutine, one operation due every millisecond: operation i
	// ends no earlier than (i+1) services after the start, so its latency
	// is at least (i+1)*service - i*1ms.
	ws, _, err := parallel(context.Background(), n, 1, 1000, 0, slow, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range ws[0].lat {
		if floor := time.Duration(i+1)*service - time.Duration(i)*time.Millisecond; l < floor {
			t.Errorf("operation %d: latency %v; it waited behind %d others, so at least %v", i, l, i, floor)
		}
	}
	// Closed loop, the same operations measure their service time alone:
	// one goroutine's latencies do not overlap, so they add up to no more
	// than the run.
	ws, elapsed, err := parallel(context.Background(), n, 1, 0, 0, slow, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	var sum time.Duration
	for _, l := range ws[0].lat {
		sum += l
	}
	if sum > elapsed {
		t.Errorf("closed loop: latencies add up to %v in a run of %v; each should be its own service time", sum, elapsed)
	}
}

// TestParallelOpenLoopPool: in open loop a free goroutine takes the next
// operation, so one stuck operation holds up no other while goroutines
// are free.
func TestParallelOpenLoopPool(t *testing.T) {
	const n = 40
	var others atomic.Int64
	othersDone := make(chan struct{})
	op := func(w *worker, i int) error {
		if i == 0 {
			<-othersDone // stuck until every other operation is served
			return nil
		}
		if others.Add(1) == n-1 {
			close(othersDone)
		}
		return nil
	}
	done := make(chan error, 1)
	go func() {
		// 4 goroutines, an operation due every millisecond. Were
		// operations dealt to goroutines in turn, operation 4 would wait
		// for the stuck goroutine forever.
		_, _, err := parallel(context.Background(), n, 4, 1000, 0, op, nil, "")
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("stuck: %d of %d other operations served while operation 0 waited for them", others.Load(), n-1)
	}
}

// TestParallelCancelWhileWaiting: cancelling the run interrupts a wait
// for a far due time.
func TestParallelCancelWhileWaiting(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		// One operation every 1000 s: all but the first wait that long.
		_, _, err := parallel(ctx, 4, 4, 0.001, 0, func(*worker, int) error { return nil }, nil, "")
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v; want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the run did not stop when cancelled")
	}
}
