package idemhttp

import (
	"sync/atomic"
	"time"
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
