package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"testing"
	"time"
)

// checkChart decodes svg as XML and checks that it is an SVG image with
// one series per system in each of its two panels.
func checkChart(t *testing.T, svg []byte, systems []string) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(svg))
	series := map[string]int{}
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed XML: %v\n%s", err, svg)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if root == "" {
			root = se.Name.Space + " " + se.Name.Local
		}
		for _, a := range se.Attr {
			if se.Name.Local == "g" && a.Name.Local == "data-system" {
				series[a.Value]++
			}
		}
	}
	if root != "http://www.w3.org/2000/svg svg" {
		t.Errorf("root element %q; want svg in the SVG namespace", root)
	}
	for _, s := range systems {
		if series[s] != 2 {
			t.Errorf("system %s has %d series; want 2 (one per panel)", s, series[s])
		}
	}
	if len(series) != len(systems) {
		t.Errorf("series of %v; want %v", series, systems)
	}
}

func TestChart(t *testing.T) {
	report := func(c int, sys ...string) Report {
		r := Report{Config: Config{Workload: Mixed, ReplayRatio: 0.9, Concurrency: c, Ops: 1000}, BodyLen: 2100}
		for k, s := range sys {
			r.Results = append(r.Results, Result{System: s, OpsPerSec: float64(1000 * c * (k + 1)),
				P99: time.Duration(c*(k+1)) * time.Microsecond})
		}
		return r
	}
	for _, tc := range []struct {
		name  string
		sweep Sweep
	}{
		{"sweep", Sweep{report(1, "idemkv", "map", "pebble"), report(16, "idemkv", "map", "pebble"), report(256, "idemkv", "map", "pebble")}},
		{"one concurrency", Sweep{report(64, "idemkv", "map", "pebble")}},
		{"other systems", Sweep{report(3, "bare", "idemhttp<&>"), report(5, "bare", "idemhttp<&>")}},
		{"zero values", Sweep{{Config: Config{Concurrency: 2}, Results: []Result{{System: "idemkv"}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.sweep.WriteChart(&b); err != nil {
				t.Fatal(err)
			}
			var systems []string
			for _, r := range tc.sweep[0].Results {
				systems = append(systems, r.System)
			}
			checkChart(t, b.Bytes(), systems)
		})
	}
	if err := (Sweep{}).WriteChart(io.Discard); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty sweep: got %v; want ErrInvalid", err)
	}
}

func TestLogScale(t *testing.T) {
	s := newLogScale(1, 256, 2)
	if s.lo != 1 || s.hi != 256 || s.pos(16, 0, 8) != 4 {
		t.Errorf("scale %+v: pos(16) = %v; want 1..256, 4", s, s.pos(16, 0, 8))
	}
	if s := newLogScale(3000, 45000, 10); s.lo != 1000 || s.hi != 100000 || len(s.ticks()) != 7 {
		t.Errorf("scale %+v, ticks %v; want 1k..100k with 2 and 5 multiples", s, s.ticks())
	}
	if s := newLogScale(100, 100, 10); s.lo != 10 || s.hi != 1000 {
		t.Errorf("scale of one value %+v; want 10..1000", s)
	}
	for _, tc := range []struct {
		v    float64
		want string
	}{{20000, "20k"}, {1e6, "1M"}, {500, "500"}} {
		if got := siLabel(tc.v); got != tc.want {
			t.Errorf("siLabel(%v) = %q; want %q", tc.v, got, tc.want)
		}
	}
	for _, tc := range []struct {
		v    float64
		want string
	}{{1e4, "10µs"}, {2e6, "2ms"}, {500, "500ns"}, {1e9, "1s"}} {
		if got := durLabel(tc.v); got != tc.want {
			t.Errorf("durLabel(%v) = %q; want %q", tc.v, got, tc.want)
		}
	}
}
