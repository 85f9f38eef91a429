package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/idemkv/idemkv/engine"
)

func TestRunHTTP(t *testing.T) {
	const ops = 150
	for _, wl := range []Workload{Fresh, Replay} {
		t.Run(wl.String(), func(t *testing.T) {
			rep, err := RunHTTP(context.Background(), Config{
				Workload: wl, Durability: engine.Relaxed, Concurrency: 4, BodySize: 600, Ops: ops, Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Results) != 2 || rep.Results[0].System != "bare" || rep.Results[1].System != "idemhttp" {
				t.Fatalf("results %+v; want bare, idemhttp", rep.Results)
			}
			for _, r := range rep.Results {
				if r.Ops != ops || r.OpsPerSec <= 0 || r.P50 <= 0 || r.P50 > r.P99 {
					t.Errorf("%s: implausible result %+v", r.System, r)
				}
			}
			want := Outcomes{Proceed: ops}
			if wl == Replay {
				want = Outcomes{Replay: ops}
			}
			if got := rep.Results[1].Outcomes; got != want {
				t.Errorf("idemhttp answered %+v; want %+v", got, want)
			}
			if rep.Ratio() <= 0 {
				t.Errorf("Ratio() = %v; want > 0", rep.Ratio())
			}
			if p50, _ := rep.Added(); p50 != rep.Results[1].P50-rep.Results[0].P50 {
				t.Errorf("Added() p50 = %v", p50)
			}
			var tab, cs, js bytes.Buffer
			if err := rep.WriteTable(&tab); err != nil {
				t.Fatal(err)
			}
			if pl := rep.Paired; pl.Pairs != ops || pl.BareP50 <= 0 || pl.MiddlewareP50 <= 0 {
				t.Errorf("paired: %+v; want %d pairs with both latencies", pl, ops)
			}
			if !strings.Contains(tab.String(), "idemhttp adds ") || !strings.Contains(tab.String(), "paired, 150 alternating") ||
				strings.Count(tab.String(), "\n") != 6 {
				t.Errorf("table:\n%s", tab.String())
			}
			if err := rep.WriteCSV(&cs); err != nil {
				t.Fatal(err)
			}
			if recs, err := csv.NewReader(&cs).ReadAll(); err != nil || len(recs) != 3 {
				t.Errorf("csv: %d records, %v; want 3", len(recs), err)
			}
			if err := rep.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			var v struct {
				Results []Result `json:"results"`
				Ratio   float64  `json:"ratio_to_bare"`
			}
			if err := json.Unmarshal(js.Bytes(), &v); err != nil || len(v.Results) != 2 || v.Ratio != rep.Ratio() {
				t.Errorf("json: %v, %+v", err, v)
			}
		})
	}
}

func TestRunHTTPInvalid(t *testing.T) {
	for _, cfg := range []Config{{Workload: Conflict}, {Workload: Mixed}, {Records: 10}} {
		if _, err := RunHTTP(context.Background(), cfg); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: got %v; want ErrInvalid", cfg, err)
		}
	}
}
