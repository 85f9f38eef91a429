package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/idemkv/idemkv/engine"
)

// Result is one system's measurements in one run.
type Result struct {
	// System is "idemkv", "map" or "pebble".
	System string `json:"system"`
	// Ops is the number of measured operations.
	Ops int `json:"ops"`
	// Elapsed is the wall time of the measured phase.
	Elapsed time.Duration `json:"elapsed_ns"`
	// OpsPerSec is Ops divided by Elapsed.
	OpsPerSec float64 `json:"ops_per_sec"`
	// P50, P99 and P999 are percentiles of single operations' latency.
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	// AllocsPerOp is the heap allocations of the whole process during
	// the measured phase divided by Ops.
	AllocsPerOp float64 `json:"allocs_per_op"`
	// BytesWrittenPerOp is the bytes the system wrote to its files
	// during the measured phase (write-ahead log, tables of flushes and
	// compactions, manifest) divided by Ops; 0 for the map.
	BytesWrittenPerOp float64 `json:"bytes_written_per_op"`
	// WriteAmp is BytesWrittenPerOp divided by the mean body length
	// (Report.BodyLen): the write amplification of a fresh request.
	WriteAmp float64 `json:"write_amp"`
	// Records is the number of records the system held after the
	// measured phase: the prefill, the retry targets and the fresh
	// requests stored so far.
	Records int `json:"records"`
	// DiskBytesPerRecord is the disk space in use after the measured
	// phase divided by Records; 0 for the map.
	DiskBytesPerRecord float64 `json:"disk_bytes_per_record"`
	// Outcomes counts idemkv's answers in the measured phase; zero for
	// the baselines, which give none.
	Outcomes Outcomes `json:"outcomes,omitzero"`
}

// Outcomes counts idemkv's answers to Begin.
type Outcomes struct {
	Proceed    int `json:"proceed"`
	Replay     int `json:"replay"`
	Conflict   int `json:"conflict"`
	InProgress int `json:"in_progress"`
}

func (o *Outcomes) count(x engine.Outcome) {
	switch x {
	case engine.Proceed:
		o.Proceed++
	case engine.Replay:
		o.Replay++
	case engine.Conflict:
		o.Conflict++
	case engine.InProgress:
		o.InProgress++
	}
}

func (o *Outcomes) add(p Outcomes) {
	o.Proceed += p.Proceed
	o.Replay += p.Replay
	o.Conflict += p.Conflict
	o.InProgress += p.InProgress
}

// Of returns the count of answer x.
func (o Outcomes) Of(x engine.Outcome) int {
	switch x {
	case engine.Proceed:
		return o.Proceed
	case engine.Replay:
		return o.Replay
	case engine.Conflict:
		return o.Conflict
	case engine.InProgress:
		return o.InProgress
	}
	return 0
}

// Total returns the number of answers counted.
func (o Outcomes) Total() int { return o.Proceed + o.Replay + o.Conflict + o.InProgress }

// Report is the outcome of Run.
type Report struct {
	// Config is the run's configuration with defaults filled in.
	Config Config
	// Results holds idemkv's result, then the baselines' (map, pebble).
	Results []Result
	// BodyLen is the mean length of the bodies in bytes (payload.JSON
	// makes them a little longer than Config.BodySize).
	BodyLen int
	// GoVersion and GOMAXPROCS describe the process that measured.
	GoVersion  string
	GOMAXPROCS int
	// RedisPersistence describes the Redis baseline server's persistence
	// settings (see Config.Redis); empty without it.
	RedisPersistence string `json:",omitempty"`
	// PostgresSettings describes the PostgreSQL server's durability
	// settings (see Config.Postgres); empty without it.
	PostgresSettings string `json:",omitempty"`
}

// Result returns the named system's result.
func (r Report) Result(system string) (Result, bool) {
	for _, res := range r.Results {
		if res.System == system {
			return res, true
		}
	}
	return Result{}, false
}

// Ratio returns idemkv's throughput divided by the named system's: above
// 1 when idemkv does more operations per second. It returns 0 if either
// was not measured.
func (r Report) Ratio(system string) float64 {
	a, ok1 := r.Result("idemkv")
	b, ok2 := r.Result(system)
	if !ok1 || !ok2 || b.OpsPerSec == 0 {
		return 0
	}
	return a.OpsPerSec / b.OpsPerSec
}

// Ratios returns Ratio for every baseline in the report, by name.
func (r Report) Ratios() map[string]float64 {
	m := make(map[string]float64)
	for _, res := range r.Results {
		if res.System != "idemkv" {
			m[res.System] = r.Ratio(res.System)
		}
	}
	return m
}

// WriteTable writes the report as an aligned text table: a line with the
// configuration, then one row per system. The last column is idemkv's
// throughput divided by the row's system's.
func (r Report) WriteTable(w io.Writer) error {
	return Sweep{r}.WriteTable(w)
}

// describe returns the configuration line of a table, without the
// concurrency if sweep is set.
func (r Report) describe(sweep bool) string {
	c := r.Config
	wo := "pebble.Sync"
	if c.Durability == engine.Relaxed {
		wo = "pebble.NoSync"
	}
	wl := c.Workload.String()
	if c.Workload == Mixed {
		wl += fmt.Sprintf(" (replay %.2f, conflict %.2f)", c.ReplayRatio, c.ConflictRatio)
	}
	conc := fmt.Sprintf(" concurrency=%d", c.Concurrency)
	if sweep {
		conc = ""
	}
	if c.Rate > 0 {
		conc += fmt.Sprintf(" rate=%g/s (open loop: latency from each operation's due time)", c.Rate)
	}
	line := fmt.Sprintf("workload=%s durability=%s (raw Pebble: %s)%s body=%dB (mean %dB) ops=%d records=%d warmup=%d %s GOMAXPROCS=%d",
		wl, c.Durability, wo, conc, c.BodySize, r.BodyLen, c.Ops, c.Records, c.Warmup, r.GoVersion, r.GOMAXPROCS)
	if r.RedisPersistence != "" {
		line += " redis: " + r.RedisPersistence
	}
	if r.PostgresSettings != "" {
		line += " postgres: " + r.PostgresSettings
	}
	return line
}

var tableHeader = []string{"system", "ops/s", "p50", "p99", "p99.9", "allocs/op", "written B/op", "write amp", "disk B/record", "idemkv ÷ system"}

// tableRows returns the report's rows of a table.
func (r Report) tableRows() [][]string {
	var rows [][]string
	for _, res := range r.Results {
		written, amp, disk, ratio := "-", "-", "-", "-"
		if res.System == "idemkv" || res.System == "pebble" { // the systems with files
			written = group(res.BytesWrittenPerOp)
			amp = strconv.FormatFloat(res.WriteAmp, 'f', 2, 64)
		}
		if res.DiskBytesPerRecord > 0 {
			disk = group(res.DiskBytesPerRecord)
		}
		if res.System != "idemkv" {
			if x := r.Ratio(res.System); x > 0 {
				ratio = strconv.FormatFloat(x, 'f', 2, 64) + "x"
			}
		}
		rows = append(rows, []string{res.System, group(res.OpsPerSec), short(res.P50), short(res.P99),
			short(res.P999), strconv.FormatFloat(res.AllocsPerOp, 'f', 1, 64), written, amp, disk, ratio})
	}
	return rows
}

// Sweep is the outcome of RunSweep: one report per concurrency, which
// differ in nothing else.
type Sweep []Report

// WriteTable writes the sweep as one aligned text table: a line with the
// configuration, then one row per concurrency and system (the first
// column is the concurrency, unless the sweep has one report). The last
// column is idemkv's throughput divided by the row's system's.
func (s Sweep) WriteTable(w io.Writer) error {
	if len(s) == 0 {
		return nil
	}
	one := len(s) == 1
	if _, err := fmt.Fprintln(w, s[0].describe(!one)); err != nil {
		return err
	}
	rows := [][]string{tableHeader}
	if !one {
		rows[0] = append([]string{"c"}, tableHeader...)
	}
	for _, r := range s {
		for _, row := range r.tableRows() {
			if !one {
				row = append([]string{strconv.Itoa(r.Config.Concurrency)}, row...)
			}
			rows = append(rows, row)
		}
	}
	_, err := io.WriteString(w, formatTable(rows))
	return err
}

// formatTable aligns rows in columns two spaces apart: the first column
// to the left, the others to the right.
func formatTable(rows [][]string) string {
	var width []int
	for _, row := range rows {
		for i, cell := range row {
			if i == len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], utf8.RuneCountInString(cell))
		}
	}
	var b strings.Builder
	for _, row := range rows {
		for i, cell := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(cell))
			switch {
			case i == 0:
				b.WriteString(cell + pad)
			default:
				b.WriteString("  " + pad + cell)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// WriteCSV writes a header line and one line per system; durations are in
// nanoseconds and idemkv_ratio is idemkv's throughput divided by the
// line's system's.
func (r Report) WriteCSV(w io.Writer) error { return Sweep{r}.WriteCSV(w) }

// WriteCSV writes a header line and one line per concurrency and system,
// as Report.WriteCSV does.
func (s Sweep) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"workload", "replay_ratio", "conflict_ratio", "durability", "concurrency", "rate", "body_size",
		"body_len", "prefill_records", "warmup", "system", "ops", "elapsed_ns", "ops_per_sec", "p50_ns", "p99_ns", "p999_ns",
		"allocs_per_op", "bytes_written_per_op", "write_amp", "records", "disk_bytes_per_record", "idemkv_ratio"})
	for _, r := range s {
		c := r.Config
		for _, res := range r.Results {
			ratio := 1.0
			if res.System != "idemkv" {
				ratio = r.Ratio(res.System)
			}
			_ = cw.Write([]string{c.Workload.String(), ftoa(c.ReplayRatio, 3), ftoa(c.ConflictRatio, 3),
				c.Durability.String(), strconv.Itoa(c.Concurrency), strconv.FormatFloat(c.Rate, 'g', -1, 64), strconv.Itoa(c.BodySize), strconv.Itoa(r.BodyLen),
				strconv.Itoa(c.Records), strconv.Itoa(c.Warmup), res.System, strconv.Itoa(res.Ops),
				strconv.FormatInt(int64(res.Elapsed), 10), ftoa(res.OpsPerSec, 0),
				strconv.FormatInt(int64(res.P50), 10), strconv.FormatInt(int64(res.P99), 10),
				strconv.FormatInt(int64(res.P999), 10), ftoa(res.AllocsPerOp, 2), ftoa(res.BytesWrittenPerOp, 0),
				ftoa(res.WriteAmp, 3), strconv.Itoa(res.Records), ftoa(res.DiskBytesPerRecord, 0), ftoa(ratio, 3)})
		}
	}
	cw.Flush()
	return cw.Error()
}

func ftoa(x float64, prec int) string { return strconv.FormatFloat(x, 'f', prec, 64) }

// WriteJSON writes the report as one indented JSON object with the
// configuration, the results (durations in nanoseconds) and the ratios.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r.jsonValue())
}

// WriteJSON writes the sweep as an indented JSON array of the objects
// that Report.WriteJSON writes.
func (s Sweep) WriteJSON(w io.Writer) error {
	v := make([]any, len(s))
	for i, r := range s {
		v[i] = r.jsonValue()
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (r Report) jsonValue() any {
	type config struct {
		Workload      Workload `json:"workload"`
		ReplayRatio   float64  `json:"replay_ratio,omitempty"`
		ConflictRatio float64  `json:"conflict_ratio,omitempty"`
		Durability    string   `json:"durability"`
		Concurrency   int      `json:"concurrency"`
		BodySize      int      `json:"body_size"`
		BodyLen       int      `json:"body_len"`
		Ops           int      `json:"ops"`
		Records       int      `json:"records"`
		Warmup        int      `json:"warmup"`
		GoVersion     string   `json:"go_version"`
		GOMAXPROCS    int      `json:"gomaxprocs"`
	}
	c := r.Config
	return struct {
		Config  config             `json:"config"`
		Results []Result           `json:"results"`
		Ratios  map[string]float64 `json:"idemkv_ratios"`
	}{
		Config: config{c.Workload, c.ReplayRatio, c.ConflictRatio, c.Durability.String(), c.Concurrency,
			c.BodySize, r.BodyLen, c.Ops, c.Records, c.Warmup, r.GoVersion, r.GOMAXPROCS},
		Results: r.Results,
		Ratios:  r.Ratios(),
	}
}

// short formats d with three significant digits.
func short(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return strconv.FormatInt(int64(d), 10) + "ns"
	case d < time.Millisecond:
		return sig3(float64(d)/1e3) + "µs"
	case d < time.Second:
		return sig3(float64(d)/1e6) + "ms"
	}
	return sig3(d.Seconds()) + "s"
}

func sig3(x float64) string {
	switch {
	case x < 10:
		return strconv.FormatFloat(x, 'f', 2, 64)
	case x < 100:
		return strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strconv.FormatFloat(x, 'f', 0, 64)
}

// group formats x rounded to an integer with thousands separators.
func group(x float64) string {
	s := strconv.FormatFloat(x, 'f', 0, 64)
	out := make([]byte, 0, len(s)+len(s)/3)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
