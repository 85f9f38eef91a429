package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/idemkv/idemkv/bench"
	"github.com/idemkv/idemkv/engine"
)

// TestRunSmoke runs every workload briefly. Run itself fails if idemkv
// gives an answer the workload does not expect (a fresh key that is not
// Proceed, a retry that is not Replay, a different body that is not
// Conflict), so this checks behaviour, not timing.
func TestRunSmoke(t *testing.T) {
	for _, w := range []bench.Workload{bench.Fresh, bench.Replay, bench.ReplayCold, bench.Conflict} {
		for _, d := range []engine.Durability{engine.Synced, engine.Relaxed} {
			t.Run(fmt.Sprintf("%s/%s", w, d), func(t *testing.T) {
				rep, err := bench.Run(context.Background(), bench.Config{
					Workload: w, Concurrency: 8, BodySize: 700, Durability: d, Ops: 300, Dir: t.TempDir()})
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Results) != 3 {
					t.Fatalf("%d results; want idemkv and two baselines", len(rep.Results))
				}
				for _, r := range rep.Results {
					if r.OpsPerSec <= 0 || r.Ops != 300 || r.P50 <= 0 || r.P999 < r.P50 {
						t.Errorf("%s: implausible result %+v", r.System, r)
					}
				}
				var tab, csv, js bytes.Buffer
				if err := rep.WriteTable(&tab); err != nil || !strings.Contains(tab.String(), "raw-pebble") {
					t.Errorf("table: %v\n%s", err, tab.String())
				}
				if err := rep.WriteCSV(&csv); err != nil || strings.Count(csv.String(), "\n") != 4 {
					t.Errorf("csv: %v\n%s", err, csv.String())
				}
				var v map[string]any
				if err := rep.WriteJSON(&js); err != nil || json.Unmarshal(js.Bytes(), &v) != nil {
					t.Errorf("json: %v\n%s", err, js.String())
				}
			})
		}
	}
	if _, err := bench.ParseWorkload("nope"); err == nil {
		t.Error("ParseWorkload accepted nope")
	}
}

// The go test benchmarks measure each system on each workload at 1 and 64
// goroutines and four body sizes; compare idemkv with map and raw-pebble
// lines of the same run (benchstat works well).
func BenchmarkFresh(b *testing.B)    { benchWorkload(b, bench.Fresh) }
func BenchmarkReplay(b *testing.B)   { benchWorkload(b, bench.Replay) }
func BenchmarkConflict(b *testing.B) { benchWorkload(b, bench.Conflict) }

func benchWorkload(b *testing.B, w bench.Workload) {
	for _, sys := range []string{"idemkv", "map", "raw-pebble"} {
		for _, g := range []int{1, 64} {
			for _, size := range []int{200, 2048, 64 << 10, 1 << 20} {
				b.Run(fmt.Sprintf("%s/g%d/%dB", sys, g, size), func(b *testing.B) {
					b.ReportAllocs()
					b.SetBytes(int64(size))
					rep, err := bench.RunSystem(context.Background(), sys, bench.Config{
						Workload: w, Concurrency: g, BodySize: size, Ops: b.N, Dir: b.TempDir()})
					if err != nil {
						b.Fatal(err)
					}
					// Only the measured phase counts (not the prefill of
					// keys that Replay and Conflict retry).
					b.ReportMetric(float64(rep.Elapsed.Nanoseconds())/float64(b.N), "ns/op")
					b.ReportMetric(rep.P99.Seconds()*1e6, "p99-µs")
				})
			}
		}
	}
}
