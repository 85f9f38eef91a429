package idemhttp

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Outcome is what the middleware did with a request it selected.
type Outcome string

// The outcomes, in Event.Outcome, Stats.Endpoints and the metrics' outcome
// label.
const (
	// OutcomeProceed: a first request (or one whose earlier attempt was
	// released or interrupted); the handler ran.
	OutcomeProceed Outcome = "proceed"
	// OutcomeReplay: the stored response was sent; the handler did not
	// run.
	OutcomeReplay Outcome = "replay"
	// OutcomeConflict: the key was used with another request (409).
	OutcomeConflict Outcome = "conflict"
	// OutcomeInProgress: a request with the key was still running (409
	// idempotency_request_in_progress).
	OutcomeInProgress Outcome = "in_progress"
	// OutcomeError: the store failed, or a record was damaged (503, 500).
	OutcomeError Outcome = "error"
	// OutcomeRefused: refused before the store was asked: a malformed or
	// missing key, no or two scopes, a body too large or over the memory
	// budget (400, 413, 503).
	OutcomeRefused Outcome = "refused"
	// OutcomePassed: no key (or no scope under PassAnonymous): the
	// handler ran unprotected.
	OutcomePassed Outcome = "passed"
)

// outcomes indexes the per-outcome counters and histograms.
var outcomes = [...]Outcome{OutcomeProceed, OutcomeReplay, OutcomeConflict, OutcomeInProgress, OutcomeError, OutcomeRefused, OutcomePassed}

const (
	outcomeProceed = iota
	outcomeReplay
	outcomeConflict
	outcomeInProgress
	outcomeError
	outcomeRefused
	outcomePassed
)

// Event is one request the middleware handled, for Options.OnOutcome.
type Event struct {
	Outcome Outcome
	// Endpoint is the method and route pattern ("POST /v1/charges/{id}"):
	// what the key is stored under.
	Endpoint string
	// Key is the idempotency key ("" without one).
	Key string
	// RequestID is the id this request was given (sent in
	// X-Request-Id); OriginalRequestID the id of the request whose record
	// it met: the stored response of a replay, the original of a
	// conflict, the running request of an in-progress answer.
	RequestID, OriginalRequestID string
	// Status is the status sent (for a handler that hijacked the
	// connection or wrote nothing, what net/http would have sent: 200).
	Status int
	// Recorded is set when the handler's response was stored (Proceed);
	// false when it was released (a status not stored, a stream, a
	// failed write).
	Recorded bool
	// Attempt numbers the attempts at the key (1 for the first) and
	// Recovered is set when an earlier one was interrupted (Proceed).
	Attempt   uint32
	Recovered bool
	// Duration is the time spent in the middleware, handler included.
	Duration time.Duration
	// Err is the store's error (OutcomeError).
	Err error
}

// endpoints counts outcomes by endpoint, for at most max endpoints; the
// rest are counted under "other".
type endpoints struct {
	max   int
	n     atomic.Int64
	m     sync.Map // endpoint -> *[len(outcomes)]atomic.Uint64
	other [len(outcomes)]atomic.Uint64
}

// OtherEndpoints is the endpoint that requests of endpoints beyond
// Options.MaxEndpoints are counted under.
const OtherEndpoints = "other"

func (e *endpoints) add(endpoint string, outcome int) {
	if c, ok := e.m.Load(endpoint); ok {
		c.(*[len(outcomes)]atomic.Uint64)[outcome].Add(1)
		return
	}
	if e.n.Add(1) > int64(e.max) {
		e.n.Add(-1)
		e.other[outcome].Add(1)
		return
	}
	c, loaded := e.m.LoadOrStore(endpoint, new([len(outcomes)]atomic.Uint64))
	if loaded {
		e.n.Add(-1)
	}
	c.(*[len(outcomes)]atomic.Uint64)[outcome].Add(1)
}

func (e *endpoints) snapshot() map[string]map[Outcome]uint64 {
	out := make(map[string]map[Outcome]uint64)
	put := func(name string, c *[len(outcomes)]atomic.Uint64) {
		m := make(map[Outcome]uint64, len(outcomes))
		for i, o := range outcomes {
			if v := c[i].Load(); v > 0 {
				m[o] = v
			}
		}
		if len(m) > 0 {
			out[name] = m
		}
	}
	e.m.Range(func(k, v any) bool {
		put(k.(string), v.(*[len(outcomes)]atomic.Uint64))
		return true
	})
	put(OtherEndpoints, &e.other)
	return out
}

// done ends the handling of a request: its latency, its endpoint's
// counter and Options.OnOutcome.
func (m *Middleware) done(ctx context.Context, ev *Event, outcome int, start time.Time) {
	d := time.Since(start)
	m.st.observe(outcome, d)
	m.eps.add(ev.Endpoint, outcome)
	if m.c.OnOutcome != nil {
		ev.Outcome, ev.Duration = outcomes[outcome], d
		m.c.OnOutcome(ctx, *ev)
	}
}
