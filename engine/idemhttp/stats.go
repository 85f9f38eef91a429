package idemhttp

import (
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/idemkv/idemkv/engine"
)

// Stats are the middleware's counters since New. Counters only grow.
type Stats struct {
	Requests      uint64 // requests with a valid key that reached the store
	PassedThrough uint64 // selected requests without a key, run unprotected
	// Requests with a key but no scope (see Options.Anonymous): refused,
	// or run unprotected under PassAnonymous.
	AnonymousRefused, AnonymousPassed uint64
	Proceeded                         uint64 // first requests: the handler ran
	Recovered                         uint64 // of Proceeded, after an interrupted attempt
	Replayed                          uint64 // stored responses replayed
	Conflicts                         uint64 // keys reused with a different request
	InProgress                        uint64 // 409 idempotency_request_in_progress answers
	Recorded                          uint64 // responses recorded
	Released                          uint64 // claims released: not recorded (status, stream, panic...)
	BadRequests                       uint64 // 400 and 413 answers
	StoreErrors                       uint64 // 503 and 500 answers caused by the store
	CompleteErrors                    uint64 // responses sent but not recorded, the store failed
	Canceled                          uint64 // requests whose client left while waiting

	// The memory limits (see Options.MaxBufferedBytes, MaxWaiters):
	// requests refused because their body did not fit the budget (503),
	// duplicates refused a wait (409, counted in InProgress too), and,
	// now, the bytes of request bodies held and the duplicates waiting.
	OverBudget, WaitersRefused uint64
	BufferedBytes, Waiting     int64

	// Latency is a histogram of the time requests spent in the middleware
	// (handler included), by outcome.
	Latency map[Outcome]Histogram

	// Endpoints counts the requests selected by endpoint and outcome (at
	// most Options.MaxEndpoints endpoints, then OtherEndpoints); outcomes
	// that did not happen are left out.
	Endpoints map[string]map[Outcome]uint64
}

// Histogram counts observations by upper bound.
type Histogram struct {
	Bounds []time.Duration // upper bounds of the buckets but the last (+Inf)
	Counts []uint64        // len(Bounds)+1, not cumulative
	Sum    time.Duration
}

var latencyBounds = []time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

type histogram struct {
	counts [18]atomic.Uint64 // len(latencyBounds)+1
	sum    atomic.Int64
}

type stats struct {
	requests, passedThrough, proceeded, recovered, replayed, conflicts, inProgress,
	recorded, released, badRequests, storeErrors, completeErrors, canceled,
	anonymousRefused, anonymousPassed, overBudget, waitersRefused atomic.Uint64
	latency [len(outcomes)]histogram
}

func (s *stats) observe(outcome int, d time.Duration) {
	h := &s.latency[outcome]
	b := 0
	for b < len(latencyBounds) && d > latencyBounds[b] {
		b++
	}
	h.counts[b].Add(1)
	h.sum.Add(int64(d))
}

// Stats returns the middleware's counters.
func (m *Middleware) Stats() Stats {
	s := &m.st
	out := Stats{
		Requests: s.requests.Load(), PassedThrough: s.passedThrough.Load(),
		AnonymousRefused: s.anonymousRefused.Load(), AnonymousPassed: s.anonymousPassed.Load(),
		Proceeded: s.proceeded.Load(), Recovered: s.recovered.Load(), Replayed: s.replayed.Load(),
		Conflicts: s.conflicts.Load(), InProgress: s.inProgress.Load(), Recorded: s.recorded.Load(),
		Released: s.released.Load(), BadRequests: s.badRequests.Load(), StoreErrors: s.storeErrors.Load(),
		CompleteErrors: s.completeErrors.Load(), Canceled: s.canceled.Load(),
		OverBudget: s.overBudget.Load(), WaitersRefused: s.waitersRefused.Load(),
		BufferedBytes: m.budget.used.Load(), Waiting: m.waiters.total.Load(),
		Latency:   make(map[Outcome]Histogram, len(outcomes)),
		Endpoints: m.eps.snapshot(),
	}
	for i, o := range outcomes {
		h := Histogram{Bounds: latencyBounds, Counts: make([]uint64, len(latencyBounds)+1), Sum: time.Duration(s.latency[i].sum.Load())}
		for b := range h.Counts {
			h.Counts[b] = s.latency[i].counts[b].Load()
		}
		out.Latency[o] = h
	}
	return out
}

// MetricsHandler serves the middleware's Stats and its store's, in the
// Prometheus text exposition format (version 0.0.4), with no dependency on
// a metrics library.
func MetricsHandler(m *Middleware) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		WriteMetrics(w, m.Stats(), m.store.Stats())
	})
}

// WriteMetrics writes s and the store's stats e in the Prometheus text
// exposition format.
func WriteMetrics(w io.Writer, s Stats, e engine.Stats) {
	counter := func(name, help string, v uint64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	gauge := func(name, help string, v float64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n", name, help, name, name, v)
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

	const lat = "idemkv_http_request_duration_seconds"
	fmt.Fprintf(w, "# HELP %s Time spent in the middleware, handler included.\n# TYPE %s histogram\n", lat, lat)
	for _, o := range outcomes {
		h := s.Latency[o]
		var cum uint64
		for i, c := range h.Counts {
			cum += c
			le := "+Inf"
			if i < len(h.Bounds) {
				le = fmt.Sprint(h.Bounds[i].Seconds())
			}
			fmt.Fprintf(w, "%s_bucket{outcome=%q,le=%q} %d\n", lat, string(o), le, cum)
		}
		fmt.Fprintf(w, "%s_sum{outcome=%q} %g\n%s_count{outcome=%q} %d\n", lat, string(o), h.Sum.Seconds(), lat, string(o), cum)
	}
	counter("idemkv_engine_begins_total", "Calls of Begin.", e.Begins)
	counter("idemkv_engine_lookups_total", "Begins answered by reading storage.", e.Lookups)
	counter("idemkv_engine_cache_hits_total", "Begins answered from recently completed records.", e.CacheHits)
	counter("idemkv_engine_waits_total", "Begins that waited for a running request.", e.Waits)
	counter("idemkv_engine_completes_total", "Records stored.", e.Completes)
	counter("idemkv_engine_releases_total", "Claims released.", e.Releases)
	counter("idemkv_engine_leases_expired_total", "Claims taken over after their lease ran out.", e.LeasesExpired)
	counter("idemkv_engine_leases_lost_total", "Complete or Release refused for a lost lease.", e.LeasesLost)
	counter("idemkv_engine_corrupt_total", "Damaged records found.", e.Corrupt)
	counter("idemkv_engine_errors_total", "Storage errors.", e.Errors)
	counter("idemkv_engine_fsyncs_total", "Fsyncs of the write-ahead log.", e.Fsyncs)
	counter("idemkv_engine_generations_dropped_total", "Expired generations dropped.", e.GenerationsDropped)
	gauge("idemkv_engine_claims", "Claims in flight.", float64(e.Claims))
	gauge("idemkv_engine_disk_bytes", "Bytes used by the data directory.", float64(e.DiskBytes))
}
