package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

// Ratio returns idemkv's throughput divided by system's, or 0 if either is
// missing.
func (r Report) Ratio(system string) float64 {
	var a, b float64
	for _, res := range r.Results {
		switch res.System {
		case "idemkv":
			a = res.OpsPerSec
		case system:
			b = res.OpsPerSec
		}
	}
	if a == 0 || b == 0 {
		return 0
	}
	return a / b
}

// WriteTable writes the report as an aligned text table.
func (r Report) WriteTable(w io.Writer) error {
	c := r.Config
	fmt.Fprintf(w, "workload=%s concurrency=%d body=%dB durability=%s ops=%d\n",
		c.Workload, c.Concurrency, c.BodySize, c.Durability, c.Ops)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tops/s\tp50\tp99\tp999\tallocs/op\tdisk B/record\tidemkv ÷ this\t")
	for _, res := range r.Results {
		disk := "-"
		if res.DiskBytesPerRecord > 0 {
			disk = strconv.FormatFloat(res.DiskBytesPerRecord, 'f', 0, 64)
		}
		ratio := "-"
		if res.System != "idemkv" {
			ratio = strconv.FormatFloat(r.Ratio(res.System), 'f', 2, 64) + "x"
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%v\t%v\t%v\t%.1f\t%s\t%s\t\n", res.System, res.OpsPerSec,
			round(res.P50), round(res.P99), round(res.P999), res.AllocsPerOp, disk, ratio)
	}
	return tw.Flush()
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d > time.Microsecond:
		return d.Round(100 * time.Nanosecond)
	}
	return d
}

// WriteCSV writes one header line and one line per system.
func (r Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	c := r.Config
	_ = cw.Write([]string{"workload", "concurrency", "body", "durability", "system", "ops", "ops_per_sec",
		"p50_ns", "p99_ns", "p999_ns", "allocs_per_op", "disk_bytes_per_record", "idemkv_ratio"})
	for _, res := range r.Results {
		_ = cw.Write([]string{c.Workload.String(), strconv.Itoa(c.Concurrency), strconv.Itoa(c.BodySize),
			c.Durability.String(), res.System, strconv.Itoa(res.Ops), fmt.Sprintf("%.0f", res.OpsPerSec),
			strconv.FormatInt(int64(res.P50), 10), strconv.FormatInt(int64(res.P99), 10),
			strconv.FormatInt(int64(res.P999), 10), fmt.Sprintf("%.2f", res.AllocsPerOp),
			fmt.Sprintf("%.0f", res.DiskBytesPerRecord), fmt.Sprintf("%.3f", r.Ratio(res.System))})
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes the report as JSON.
func (r Report) WriteJSON(w io.Writer) error {
	type cfg struct {
		Workload    string `json:"workload"`
		Concurrency int    `json:"concurrency"`
		BodySize    int    `json:"body_size"`
		Durability  string `json:"durability"`
		Ops         int    `json:"ops"`
	}
	c := r.Config
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Config  cfg      `json:"config"`
		Results []Result `json:"results"`
	}{cfg{c.Workload.String(), c.Concurrency, c.BodySize, c.Durability.String(), c.Ops}, r.Results})
}
