// Package idemotel reports what idemkv's HTTP middleware does through
// OpenTelemetry: on the request's span, the outcome as attributes and an
// event, and metrics through the OTel metrics API. It is its own module,
// so that programs that do not use OpenTelemetry do not get it in their
// module graph; it depends on the OTel API only (the application brings
// the SDK and exporters).
//
//	rec, err := idemotel.New(otel.GetMeterProvider(), nil)
//	idem, err := idemhttp.New(store, &idemhttp.Options{OnOutcome: rec.OnOutcome})
//
// The span is the one in the request's context: put the OTel HTTP
// instrumentation (otelhttp) outside the middleware. Attributes set on it:
//
//	idemkv.outcome              proceed, replay, conflict, in_progress, error, refused, passed
//	idemkv.endpoint             "POST /v1/charges/{id}"
//	idemkv.request_id           the id this request was given
//	idemkv.original_request_id  the id of the request whose record it met (replay, conflict)
//	idemkv.recorded             the response was stored (proceed)
//	idemkv.attempt              1, or more after interrupted attempts (proceed)
//	idemkv.recovered            an earlier attempt was interrupted (proceed)
//
// and an event "idemkv.outcome" with the same, timed at the end of the
// middleware's work; a store error is recorded on the span as an error.
// The idempotency key itself is not put on spans (keys may carry what
// clients put in them); it is in idemhttp.Event for an access log.
//
// Metrics (instrument names as OTel spells them):
//
//	idemkv.http.requests  counter, by idemkv.endpoint and idemkv.outcome
//	idemkv.http.duration  histogram in seconds, by idemkv.outcome
//
// The endpoint attribute takes at most Options.MaxEndpoints values (100),
// then "other", as the middleware's own statistics do: without route
// patterns, every path is an endpoint.
package idemotel

import (
	"context"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/idemkv/idemkv/engine/idemhttp"
)

// Options configure a Recorder.
type Options struct {
	// MaxEndpoints bounds the values of the endpoint attribute of the
	// metrics; default idemhttp.DefaultMaxEndpoints.
	MaxEndpoints int
}

// Recorder turns idemhttp.Events into span attributes, span events and
// metrics. Its OnOutcome is an idemhttp.Options.OnOutcome.
type Recorder struct {
	requests metric.Int64Counter
	duration metric.Float64Histogram
	max      int64
	n        atomic.Int64
	seen     sync.Map // endpoints counted one by one
}

// New returns a Recorder whose metrics go through mp (nil: no metrics,
// spans only).
func New(mp metric.MeterProvider, o *Options) (*Recorder, error) {
	r := &Recorder{max: idemhttp.DefaultMaxEndpoints}
	if o != nil && o.MaxEndpoints > 0 {
		r.max = int64(o.MaxEndpoints)
	}
	if mp == nil {
		return r, nil
	}
	m := mp.Meter("github.com/idemkv/idemkv/engine/idemotel")
	var err error
	if r.requests, err = m.Int64Counter("idemkv.http.requests",
		metric.WithDescription("Requests the idempotency middleware handled, by endpoint and outcome."), metric.WithUnit("{request}")); err != nil {
		return nil, err
	}
	if r.duration, err = m.Float64Histogram("idemkv.http.duration",
		metric.WithDescription("Time spent in the idempotency middleware, handler included."), metric.WithUnit("s")); err != nil {
		return nil, err
	}
	return r, nil
}

// endpoint returns e's endpoint, or "other" past MaxEndpoints.
func (r *Recorder) endpoint(e string) string {
	if _, ok := r.seen.Load(e); ok {
		return e
	}
	if r.n.Add(1) > r.max {
		r.n.Add(-1)
		return idemhttp.OtherEndpoints
	}
	if _, loaded := r.seen.LoadOrStore(e, struct{}{}); loaded {
		r.n.Add(-1)
	}
	return e
}

// OnOutcome records e on the span of ctx and in the metrics.
func (r *Recorder) OnOutcome(ctx context.Context, e idemhttp.Event) {
	span := trace.SpanFromContext(ctx)
	if span.IsRecording() {
		attrs := []attribute.KeyValue{
			attribute.String("idemkv.outcome", string(e.Outcome)),
			attribute.String("idemkv.endpoint", e.Endpoint),
		}
		if e.RequestID != "" {
			attrs = append(attrs, attribute.String("idemkv.request_id", e.RequestID))
		}
		if e.OriginalRequestID != "" {
			attrs = append(attrs, attribute.String("idemkv.original_request_id", e.OriginalRequestID))
		}
		if e.Outcome == idemhttp.OutcomeProceed {
			attrs = append(attrs, attribute.Bool("idemkv.recorded", e.Recorded), attribute.Int("idemkv.attempt", int(e.Attempt)),
				attribute.Bool("idemkv.recovered", e.Recovered))
		}
		span.SetAttributes(attrs...)
		span.AddEvent("idemkv.outcome", trace.WithAttributes(attrs...))
		if e.Err != nil {
			span.RecordError(e.Err)
			span.SetStatus(codes.Error, "idempotency store: "+e.Err.Error())
		}
	}
	if r.requests != nil {
		outcome := attribute.String("idemkv.outcome", string(e.Outcome))
		r.requests.Add(ctx, 1, metric.WithAttributes(attribute.String("idemkv.endpoint", r.endpoint(e.Endpoint)), outcome))
		r.duration.Record(ctx, e.Duration.Seconds(), metric.WithAttributes(outcome))
	}
}
