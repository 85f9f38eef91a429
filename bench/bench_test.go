package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/idemkv/idemkv/engine"
)

// TestRunSmoke runs every workload in both durability modes with a few
// operations and checks what the systems answered, never how fast.
func TestRunSmoke(t *testing.T) {
	const ops = 200
	for _, wl := range []Workload{Fresh, Replay, ReplayCold, Conflict} {
		for _, dur := range []engine.Durability{engine.Synced, engine.Relaxed} {
			t.Run(wl.String()+"/"+dur.String(), func(t *testing.T) {
				rep, err := Run(context.Background(), Config{
					Workload: wl, Durability: dur, Concurrency: 8, BodySize: 700, Ops: ops, Dir: t.TempDir()})
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, r := range rep.Results {
					got = append(got, r.System)
				}
				if want := []string{"idemkv", "map", "pebble"}; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("systems %v; want %v", got, want)
				}
				for _, r := range rep.Results {
					if r.Ops != ops || r.OpsPerSec <= 0 || r.P50 <= 0 || r.P50 > r.P99 || r.P99 > r.P999 {
						t.Errorf("%s: implausible result %+v", r.System, r)
					}
					if hasDisk := r.System != "map"; (r.DiskBytesPerRecord > 0) != hasDisk {
						t.Errorf("%s: disk bytes per record %v", r.System, r.DiskBytesPerRecord)
					}
				}
				want := Outcomes{}
				switch wl {
				case Fresh:
					want.Proceed = ops
				case Replay, ReplayCold:
					want.Replay = ops
				case Conflict:
					want.Conflict = ops
				}
				if got := rep.Results[0].Outcomes; got != want {
					t.Errorf("idemkv answered %+v; want %+v", got, want)
				}
				for _, r := range rep.Results[1:] {
					if r.Outcomes != (Outcomes{}) {
						t.Errorf("%s counted outcomes %+v; want none", r.System, r.Outcomes)
					}
				}
				if r := rep.Ratio("pebble"); r <= 0 {
					t.Errorf("Ratio(pebble) = %v; want > 0", r)
				}
				checkWriters(t, rep)
			})
		}
	}
}

func checkWriters(t *testing.T, rep Report) {
	t.Helper()
	var tab, cs, js bytes.Buffer
	if err := rep.WriteTable(&tab); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(tab.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("table has %d lines; want 5:\n%s", len(lines), tab.String())
	}
	for _, l := range lines[2:] {
		if n, want := utf8.RuneCountInString(l), utf8.RuneCountInString(lines[1]); n != want {
			t.Errorf("table row is %d wide; want %d like the header:\n%s", n, want, tab.String())
		}
	}
	for _, s := range []string{"idemkv", "map", "pebble", "p99.9"} {
		if !strings.Contains(tab.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, tab.String())
		}
	}
	if err := rep.WriteCSV(&cs); err != nil {
		t.Fatal(err)
	}
	if recs, err := csv.NewReader(&cs).ReadAll(); err != nil || len(recs) != 4 {
		t.Errorf("csv: %d records, %v; want 4", len(recs), err)
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var v struct {
		Config struct {
			Workload string `json:"workload"`
		} `json:"config"`
		Results []Result `json:"results"`
	}
	if err := json.Unmarshal(js.Bytes(), &v); err != nil {
		t.Fatalf("json: %v\n%s", err, js.String())
	}
	if v.Config.Workload != rep.Config.Workload.String() || len(v.Results) != 3 || v.Results[0] != rep.Results[0] {
		t.Errorf("json round trip: got %+v", v)
	}
}

func TestRunNoBaselines(t *testing.T) {
	rep, err := Run(context.Background(), Config{
		Workload: Replay, Durability: engine.Relaxed, Ops: 50, Concurrency: 4, NoBaselines: true, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.Results[0].System != "idemkv" {
		t.Fatalf("results %+v; want idemkv alone", rep.Results)
	}
	if r := rep.Ratio("pebble"); r != 0 {
		t.Errorf("Ratio(pebble) = %v without baselines; want 0", r)
	}
}

func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, Config{Ops: 50, Dir: t.TempDir()})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v; want context.Canceled", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Config
		want Config
		err  bool
	}{
		{"zero", Config{}, Config{Concurrency: 64, BodySize: 2048, Ops: 20000}, false},
		{"fewer ops than goroutines", Config{Ops: 10}, Config{Concurrency: 10, BodySize: 2048, Ops: 10}, false},
		{"negative ops", Config{Ops: -1}, Config{}, true},
		{"bad workload", Config{Workload: 9}, Config{}, true},
		{"bad durability", Config{Durability: 9}, Config{}, true},
		{"negative rate", Config{Rate: -1}, Config{}, true},
		{"NaN rate", Config{Rate: math.NaN()}, Config{}, true},
		{"infinite rate", Config{Rate: math.Inf(1)}, Config{}, true},
		{"a run over a day", Config{Ops: 100, Rate: 1e-3}, Config{}, true},
		{"rate", Config{Rate: 5000}, Config{Concurrency: 64, BodySize: 2048, Ops: 20000, Rate: 5000}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.withDefaults()
			if tc.err {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("got %v; want ErrInvalid", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseWorkload(t *testing.T) {
	for _, w := range []Workload{Fresh, Replay, ReplayCold, Conflict} {
		got, err := ParseWorkload(w.String())
		if err != nil || got != w {
			t.Errorf("ParseWorkload(%q) = %v, %v; want %v", w.String(), got, err, w)
		}
		var u Workload
		b, err := w.MarshalText()
		if err != nil || u.UnmarshalText(b) != nil || u != w {
			t.Errorf("text round trip of %v: %q, %v, %v", w, b, err, u)
		}
	}
	if _, err := ParseWorkload("Fresh"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseWorkload(Fresh) = %v; want ErrInvalid", err)
	}
}

func TestExpect(t *testing.T) {
	ok := []*worker{
		{outcomes: Outcomes{Replay: 3}, intended: Outcomes{Replay: 3}},
		{outcomes: Outcomes{Replay: 2, Proceed: 1}, intended: Outcomes{Replay: 2, Proceed: 1}},
	}
	if err := expect(ok, Mixed); err != nil {
		t.Errorf("as intended: %v", err)
	}
	bad := append(ok, &worker{outcomes: Outcomes{Proceed: 1}, intended: Outcomes{Replay: 1}})
	if err := expect(bad, Replay); !errors.Is(err, ErrUnexpectedOutcome) {
		t.Errorf("one proceed: got %v; want ErrUnexpectedOutcome", err)
	}
	if err := expect([]*worker{{intended: Outcomes{Replay: 5}}}, Replay); err != nil {
		t.Errorf("no answers (a baseline): %v", err)
	}
}

func TestPercentile(t *testing.T) {
	lat := make([]time.Duration, 1000)
	for i := range lat {
		lat[i] = time.Duration(i + 1)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 500}, {0.99, 990}, {0.999, 999}, {1, 1000}, {0, 1}} {
		if got := percentile(lat, tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %v; want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil) = %v; want 0", got)
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{850, "850ns"}, {7300, "7.30µs"}, {38800, "38.8µs"}, {1612345, "1.61ms"}, {2 * time.Second, "2.00s"}} {
		if got := short(tc.d); got != tc.want {
			t.Errorf("short(%d) = %q; want %q", tc.d, got, tc.want)
		}
	}
	for _, tc := range []struct {
		x    float64
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {37471.4, "37,471"}, {2705468, "2,705,468"}} {
		if got := group(tc.x); got != tc.want {
			t.Errorf("group(%v) = %q; want %q", tc.x, got, tc.want)
		}
	}
}

func TestDataset(t *testing.T) {
	d := newDataset(5000, 300)
	seen := make(map[string]bool)
	for i := range d.n {
		id := d.id(i)
		if len(id) != idLen || id[14] != '4' || seen[id] {
			t.Fatalf("id %d = %q: not a new version 4 UUID", i, id)
		}
		seen[id] = true
		if err := d.key(i).Validate(); err != nil {
			t.Fatal(err)
		}
		if d.fp(i) == d.otherFP(i) {
			t.Fatalf("op %d: conflicting fingerprint equals its own", i)
		}
	}
	if d.bodyLen() < 300 {
		t.Errorf("bodyLen %d; want at least 300", d.bodyLen())
	}
}

func TestMapBudget(t *testing.T) {
	d := newDataset(2000, 1000)
	s := newMapSystem(d, 256*10_000) // 10 kB a shard: about 10 bodies
	w := &worker{}
	for i := range d.n {
		if err := s.first(w, i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sum := 0
		for _, c := range sh.copies {
			sum += len(sh.m[c.key])
		}
		if sh.bytes != sum || sh.bytes > s.budget {
			t.Errorf("shard %d: %d bytes counted, %d held in copies; budget %d", i, sh.bytes, sum, s.budget)
		}
	}
	for i := range d.n {
		if err := s.retry(w, i, false); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w.dst, d.body(i)) {
			t.Fatalf("key %d: read a wrong body", i)
		}
	}
}

// Benchmarks: each workload on each system, at 1 and 64 goroutines and
// four body sizes. Lines of one system are comparable with the other
// systems' lines of the same run (benchstat -col /system works well).
// Replay and Conflict cycle through a set of keys stored before the timer
// starts; Fresh uses b.N new keys. Everything runs in the Synced mode.
func BenchmarkFresh(b *testing.B)    { benchmarkWorkload(b, Fresh) }
func BenchmarkReplay(b *testing.B)   { benchmarkWorkload(b, Replay) }
func BenchmarkConflict(b *testing.B) { benchmarkWorkload(b, Conflict) }

var (
	benchGoroutines = []int{1, 64}
	benchSizes      = []int{200, 2048, 64 << 10, 1 << 20}
)

func benchmarkWorkload(b *testing.B, wl Workload) {
	for _, name := range systemNames {
		for _, g := range benchGoroutines {
			for _, size := range benchSizes {
				b.Run(fmt.Sprintf("system=%s/g=%d/size=%d", name, g, size), func(b *testing.B) {
					benchmarkSystem(b, name, wl, g, size)
				})
			}
		}
	}
}

// retryKeys is how many keys the Replay and Conflict benchmarks store and
// cycle through: at most 1024, and at most 64 MiB of bodies.
func retryKeys(size int) int { return max(16, min(1024, (64<<20)/size)) }

func benchmarkSystem(b *testing.B, name string, wl Workload, g, size int) {
	n := b.N
	if wl != Fresh {
		n = retryKeys(size)
	}
	d := newDataset(n, size)
	cfg := Config{Workload: wl, BodySize: size}
	s, err := openSystem(name, b.TempDir(), cfg, d, false)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := s.close(); err != nil {
			b.Error(err)
		}
	}()
	if wl != Fresh {
		if err := s.load(context.Background(), 0, n, nil); err != nil {
			b.Fatal(err)
		}
	}
	op := opFor(s, cfg)
	var (
		mu     sync.Mutex
		counts []*worker
	)
	b.SetBytes(int64(d.bodyLen()))
	b.ReportAllocs()
	if g == 1 {
		w := &worker{}
		counts = append(counts, w)
		b.ResetTimer()
		for i := range b.N {
			if err := op(w, i%n); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism((g + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		var next atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			w := &worker{}
			mu.Lock()
			counts = append(counts, w)
			mu.Unlock()
			for pb.Next() {
				if err := op(w, int(next.Add(1)-1)%n); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.StopTimer()
	if err := expect(counts, wl); err != nil {
		b.Error(err)
	}
}
