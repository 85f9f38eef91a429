package idemhttp

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/idemkv/idemkv/engine"
)

// MetricKind is the Prometheus type of a Metric.
type MetricKind uint8

const (
	Counter MetricKind = iota
	Gauge
	HistogramKind
)

// Metric is one figure of the middleware or its store, as the metrics
// exporters publish it: MetricsHandler in the Prometheus text format with
// no dependency, and package idemprom as a prometheus.Collector.
type Metric struct {
	Name, Help string
	Kind       MetricKind
	// Labels are the metric's label pairs (name, value), in order.
	Labels [][2]string
	Value  float64
	// Histogram is set for a HistogramKind.
	Histogram *Histogram
}

// Metrics lists the figures of s (the middleware's) and e (its store's),
// the same list whatever exports them. Names and meanings:
//
//	idemkv_http_outcomes_total{endpoint,outcome}   requests by endpoint and Outcome
//	idemkv_http_request_duration_seconds{outcome}  time in the middleware, handler included
//	idemkv_http_*_total                            the Stats counters (requests, replayed, ...)
//	idemkv_http_buffered_bytes, _waiting           memory held and duplicates waiting now
//	idemkv_store_*                                 the store's engine.Stats (claims, cache
//	                                               hits, fsyncs, disk bytes, errors...)
func Metrics(s Stats, e engine.Stats) []Metric {
	return append(HTTPMetrics(s), StoreMetrics(e)...)
}

// HTTPMetrics lists the middleware's own figures (the idemkv_http_ part
// of Metrics).
func HTTPMetrics(s Stats) []Metric {
	var out []Metric
	counter := func(name, help string, v uint64) {
		out = append(out, Metric{Name: name, Help: help, Kind: Counter, Value: float64(v)})
	}
	gauge := func(name, help string, v float64) {
		out = append(out, Metric{Name: name, Help: help, Kind: Gauge, Value: v})
	}
	eps := make([]string, 0, len(s.Endpoints))
	for ep := range s.Endpoints {
		eps = append(eps, ep)
	}
	sort.Strings(eps)
	for _, ep := range eps {
		for _, o := range outcomes {
			if n := s.Endpoints[ep][o]; n > 0 {
				out = append(out, Metric{Name: "idemkv_http_outcomes_total",
					Help: "Requests by endpoint (at most MaxEndpoints, then \"other\") and outcome.",
					Kind: Counter, Labels: [][2]string{{"endpoint", ep}, {"outcome", string(o)}}, Value: float64(n)})
			}
		}
	}
	for _, o := range outcomes {
		h := s.Latency[o]
		out = append(out, Metric{Name: "idemkv_http_request_duration_seconds", Help: "Time spent in the middleware, handler included.",
			Kind: HistogramKind, Labels: [][2]string{{"outcome", string(o)}}, Histogram: &h})
	}
	counter("idemkv_http_requests_total", "Requests with a valid idempotency key.", s.Requests)
	counter("idemkv_http_passed_through_total", "Selected requests without a key, run unprotected.", s.PassedThrough)
	counter("idemkv_http_anonymous_refused_total", "Requests with a key but no scope credential, refused.", s.AnonymousRefused)
	counter("idemkv_http_anonymous_passed_total", "Requests with a key but no scope credential, run unprotected (PassAnonymous).", s.AnonymousPassed)
	counter("idemkv_http_proceeded_total", "First requests: the handler ran.", s.Proceeded)
	counter("idemkv_http_recovered_total", "First requests after an interrupted attempt.", s.Recovered)
	counter("idemkv_http_replayed_total", "Stored responses replayed.", s.Replayed)
	counter("idemkv_http_conflicts_total", "Keys reused with a different request.", s.Conflicts)
	counter("idemkv_http_in_progress_total", "Answers 409 idempotency_request_in_progress.", s.InProgress)
	counter("idemkv_http_recorded_total", "Responses recorded.", s.Recorded)
	counter("idemkv_http_released_total", "Claims released without recording.", s.Released)
	counter("idemkv_http_bad_requests_total", "Answers 400 and 413.", s.BadRequests)
	counter("idemkv_http_store_errors_total", "Answers 503 and 500 caused by the store.", s.StoreErrors)
	counter("idemkv_http_complete_errors_total", "Responses sent but not recorded.", s.CompleteErrors)
	counter("idemkv_http_canceled_total", "Requests whose client left while waiting.", s.Canceled)
	counter("idemkv_http_over_budget_total", "Requests refused (503) because their body did not fit MaxBufferedBytes.", s.OverBudget)
	counter("idemkv_http_waiters_refused_total", "Duplicates refused a wait (409) by MaxWaiters or MaxWaitersPerKey.", s.WaitersRefused)
	gauge("idemkv_http_buffered_bytes", "Bytes of request bodies held now.", float64(s.BufferedBytes))
	gauge("idemkv_http_waiting", "Duplicates waiting now for a running request.", float64(s.Waiting))
	return out
}

// StoreMetrics lists a store's figures (engine.Stats): a store leaves
// zero what it does not keep (Redis keeps no disk; the embedded engine
// makes no round trips).
func StoreMetrics(e engine.Stats) []Metric {
	var out []Metric
	counter := func(name, help string, v uint64) {
		out = append(out, Metric{Name: name, Help: help, Kind: Counter, Value: float64(v)})
	}
	gauge := func(name, help string, v float64) {
		out = append(out, Metric{Name: name, Help: help, Kind: Gauge, Value: v})
	}
	counter("idemkv_store_begins_total", "Calls of Begin.", e.Begins)
	counter("idemkv_store_lookups_total", "Begins answered by reading storage.", e.Lookups)
	counter("idemkv_store_cache_hits_total", "Begins answered from recently completed records.", e.CacheHits)
	counter("idemkv_store_waits_total", "Begins that waited for a running request.", e.Waits)
	counter("idemkv_store_completes_total", "Records stored.", e.Completes)
	counter("idemkv_store_releases_total", "Claims released.", e.Releases)
	counter("idemkv_store_deletes_total", "Records deleted.", e.Deletes)
	counter("idemkv_store_leases_expired_total", "Claims taken over after their lease ran out.", e.LeasesExpired)
	counter("idemkv_store_leases_lost_total", "Complete or Release refused for a lost lease.", e.LeasesLost)
	counter("idemkv_store_corrupt_total", "Damaged records found.", e.Corrupt)
	counter("idemkv_store_errors_total", "Storage errors returned to callers.", e.Errors)
	counter("idemkv_store_fsyncs_total", "Fsyncs of the write-ahead log.", e.Fsyncs)
	out = append(out, Metric{Name: "idemkv_store_fsync_seconds_total", Help: "Time spent in fsyncs of the write-ahead log (divided by idemkv_store_fsyncs_total: their mean latency).",
		Kind: Counter, Value: e.FsyncTime.Seconds()})
	counter("idemkv_store_bytes_written_total", "Bytes written to the data directory's files.", e.BytesWritten)
	counter("idemkv_store_generations_dropped_total", "Expired generations dropped.", e.GenerationsDropped)
	counter("idemkv_store_round_trips_total", "Requests to the store's server (Redis).", e.RoundTrips)
	counter("idemkv_store_round_trip_errors_total", "Requests to the store's server that failed.", e.RoundTripErrors)
	gauge("idemkv_store_claims", "Claims in flight now.", float64(e.Claims))
	gauge("idemkv_store_disk_bytes", "Bytes used by the data directory.", float64(e.DiskBytes))
	return out
}

// MetricsHandler serves the middleware's Stats and its store's, in the
// Prometheus text exposition format (version 0.0.4), with no dependency on
// a metrics library. To join an application's own registry, with the Go
// runtime's and the process's metrics, use package idemprom.
func MetricsHandler(m *Middleware) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		WriteMetrics(w, m.Stats(), m.store.Stats())
	})
}

// WriteMetrics writes Metrics(s, e) in the Prometheus text exposition
// format.
func WriteMetrics(w io.Writer, s Stats, e engine.Stats) {
	last := ""
	for _, m := range Metrics(s, e) {
		if m.Name != last {
			kind := [...]string{"counter", "gauge", "histogram"}[m.Kind]
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", m.Name, m.Help, m.Name, kind)
			last = m.Name
		}
		if m.Kind != HistogramKind {
			fmt.Fprintf(w, "%s%s %s\n", m.Name, labels(m.Labels, "", ""), strconv.FormatFloat(m.Value, 'g', -1, 64))
			continue
		}
		h := m.Histogram
		var cum uint64
		for i, c := range h.Counts {
			cum += c
			le := "+Inf"
			if i < len(h.Bounds) {
				le = strconv.FormatFloat(h.Bounds[i].Seconds(), 'g', -1, 64)
			}
			fmt.Fprintf(w, "%s_bucket%s %d\n", m.Name, labels(m.Labels, "le", le), cum)
		}
		fmt.Fprintf(w, "%s_sum%s %s\n%s_count%s %d\n", m.Name, labels(m.Labels, "", ""),
			strconv.FormatFloat(h.Sum.Seconds(), 'g', -1, 64), m.Name, labels(m.Labels, "", ""), cum)
	}
}

// labels renders a label set, with one more pair (name, value) if name is
// not empty; values escaped as the text format wants.
func labels(ls [][2]string, name, value string) string {
	if len(ls) == 0 && name == "" {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l[0] + `="` + escapeLabel(l[1]) + `"`)
	}
	if name != "" {
		if len(ls) > 0 {
			b.WriteByte(',')
		}
		b.WriteString(name + `="` + escapeLabel(value) + `"`)
	}
	b.WriteByte('}')
	return b.String()
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

func escapeLabel(v string) string { return labelEscaper.Replace(v) }
