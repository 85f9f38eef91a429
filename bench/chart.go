package bench

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"time"
)

// The chart's geometry, in SVG user units.
const (
	chartW      = 960
	chartH      = 430
	panelTop    = 90
	panelBottom = 360
	panelWidth  = 370
)

// panelLeft are the left edges of the two panels' plot areas.
var panelLeft = [2]float64{80, 560}

// systemColors are the lines' colours; other systems take chartPalette's.
var (
	systemColors = map[string]string{"idemkv": "#1f77b4", "map": "#2ca02c", "pebble": "#d62728"}
	chartPalette = []string{"#9467bd", "#ff7f0e", "#8c564b", "#17becf"}
)

// WriteChart draws the sweep as an SVG image with two panels: throughput
// (operations per second) and 99th percentile latency against
// concurrency, all three axes logarithmic, one line per system. It is
// meant for a README; a sweep of one concurrency draws single points.
func (s Sweep) WriteChart(w io.Writer) error {
	if len(s) == 0 || len(s[0].Results) == 0 {
		return fmt.Errorf("%w: nothing to chart", ErrInvalid)
	}
	type point struct{ c, v float64 }
	var systems []string
	series := map[string][2][]point{}
	var cs []float64
	for _, r := range s {
		c := float64(r.Config.Concurrency)
		cs = append(cs, c)
		for _, res := range r.Results {
			if _, ok := series[res.System]; !ok {
				systems = append(systems, res.System)
			}
			p := series[res.System]
			p[0] = append(p[0], point{c, res.OpsPerSec})
			p[1] = append(p[1], point{c, float64(res.P99)})
			series[res.System] = p
		}
	}
	slices.Sort(cs)
	cs = slices.Compact(cs)
	xs := newLogScale(cs[0], cs[len(cs)-1], 2)
	var ys [2]logScale
	for k := range ys {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, p := range series {
			for _, q := range p[k] {
				if q.v > 0 {
					lo, hi = min(lo, q.v), max(hi, q.v)
				}
			}
		}
		if math.IsInf(lo, 1) {
			lo, hi = 1, 10
		}
		ys[k] = newLogScale(lo, hi, 10)
	}

	var b bytes.Buffer
	c := s[0].Config
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", chartW, chartH)
	wl := c.Workload.String()
	if c.Workload == Mixed {
		wl += fmt.Sprintf(" (replay %.2f, conflict %.2f)", c.ReplayRatio, c.ConflictRatio)
	}
	title := fmt.Sprintf("idemkv bench: %s, %s, %d B bodies, %s ops, %s prefilled records, GOMAXPROCS=%d",
		wl, c.Durability, s[0].BodyLen, group(float64(c.Ops)), group(float64(c.Records)), s[0].GOMAXPROCS)
	if c.Rate > 0 {
		title += fmt.Sprintf(", open loop at %s ops/s", group(c.Rate))
	}
	fmt.Fprintf(&b, `<text x="%d" y="24" text-anchor="middle" font-size="15">%s</text>`+"\n", chartW/2, esc(title))

	// The legend.
	colors := map[string]string{}
	x := 80.0
	for i, sys := range systems {
		col, ok := systemColors[sys]
		if !ok {
			col = chartPalette[i%len(chartPalette)]
		}
		colors[sys] = col
		fmt.Fprintf(&b, `<line x1="%.1f" y1="50" x2="%.1f" y2="50" stroke="%s" stroke-width="3"/><text x="%.1f" y="54">%s</text>`+"\n",
			x, x+24, col, x+30, esc(sys))
		x += 40 + 8*float64(len(sys))
	}

	titles := [2]string{"throughput (ops/s, log scale)", "p99 latency (log scale)"}
	labels := [2]func(float64) string{siLabel, durLabel}
	values := [2]func(float64) string{
		func(v float64) string { return group(v) + " ops/s" },
		func(v float64) string { return short(time.Duration(v)) },
	}
	for k, left := range panelLeft {
		right := left + panelWidth
		fmt.Fprintf(&b, `<g class="panel" data-panel="%d">`+"\n", k)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="13">%s</text>`+"\n",
			left+panelWidth/2, panelTop-12, esc(titles[k]))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>`+"\n",
			left, panelTop, panelWidth, panelBottom-panelTop)
		for _, t := range ys[k].ticks() {
			y := ys[k].pos(t, panelBottom, panelTop)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n",
				left, y, right, y, left-6, y+4, esc(labels[k](t)))
		}
		for _, t := range cs {
			xx := xs.pos(t, left, right)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n",
				xx, panelTop, xx, panelBottom, xx, panelBottom+16, strconv.FormatFloat(t, 'f', -1, 64))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">concurrency (goroutines)</text>`+"\n",
			left+panelWidth/2, panelBottom+36)
		for _, sys := range systems {
			var pts []byte
			var dots bytes.Buffer
			for _, q := range series[sys][k] {
				if q.v <= 0 {
					continue
				}
				px, py := xs.pos(q.c, left, right), ys[k].pos(q.v, panelBottom, panelTop)
				pts = fmt.Appendf(pts, "%.1f,%.1f ", px, py)
				fmt.Fprintf(&dots, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s</title></circle>`,
					px, py, colors[sys], esc(fmt.Sprintf("%s, concurrency %g: %s", sys, q.c, values[k](q.v))))
			}
			fmt.Fprintf(&b, `<g class="series" data-system="%s"><polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>%s</g>`+"\n",
				esc(sys), bytes.TrimSpace(pts), colors[sys], dots.Bytes())
		}
		b.WriteString("</g>\n")
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#555">%s</text>`+"\n", chartW/2, chartH-12,
		esc("every system measured in one process, one after the other; "+s[0].GoVersion))
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// logScale maps values between lo and hi (powers of base around the data)
// logarithmically onto a span of the image.
type logScale struct{ lo, hi, base float64 }

// newLogScale returns a scale whose ends are the powers of base around
// min and max, with a power on either side when they are equal.
func newLogScale(minV, maxV, base float64) logScale {
	lb := math.Log(base)
	lo := math.Pow(base, math.Floor(math.Log(minV)/lb+1e-9))
	hi := math.Pow(base, math.Ceil(math.Log(maxV)/lb-1e-9))
	if hi <= lo {
		lo, hi = lo/base, hi*base
	}
	return logScale{lo, hi, base}
}

// pos returns where v falls between a (at lo) and b (at hi).
func (s logScale) pos(v, a, b float64) float64 {
	f := math.Log(v/s.lo) / math.Log(s.hi/s.lo)
	return a + f*(b-a)
}

// ticks returns the powers of the base from lo to hi and, when they span
// at most two powers of ten, the 2 and 5 multiples between them.
func (s logScale) ticks() []float64 {
	var t []float64
	dense := s.base == 10 && s.hi/s.lo <= 100.5
	for p := s.lo; p <= s.hi*1.0001; p *= s.base {
		t = append(t, p)
		if dense && p*2 < s.hi {
			t = append(t, p*2, p*5)
		}
	}
	return t
}

// siLabel formats v as 3, 20, 500, 1k, 20k, 3M.
func siLabel(v float64) string {
	for _, u := range []struct {
		unit string
		x    float64
	}{{"G", 1e9}, {"M", 1e6}, {"k", 1e3}} {
		if v >= u.x {
			return strconv.FormatFloat(v/u.x, 'g', 3, 64) + u.unit
		}
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// durLabel formats the nanoseconds v as 1ns, 20µs, 500ms, 2s.
func durLabel(v float64) string {
	for _, u := range []struct {
		unit string
		ns   float64
	}{{"s", 1e9}, {"ms", 1e6}, {"µs", 1e3}} {
		if v >= u.ns {
			return strconv.FormatFloat(v/u.ns, 'g', 3, 64) + u.unit
		}
	}
	return strconv.FormatFloat(v, 'g', 3, 64) + "ns"
}

// esc escapes s for XML text and attribute values.
func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
