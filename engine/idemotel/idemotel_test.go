package idemotel_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/idemotel"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
)

// app serves POST /v1/orders through idemhttp with the Recorder, inside a
// span per request started by the real OTel SDK (as otelhttp would).
func app(t *testing.T, o *idemotel.Options) (url string, spans *tracetest.SpanRecorder, reader *sdkmetric.ManualReader) {
	t.Helper()
	spans = tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader = sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	rec, err := idemotel.New(mp, o)
	if err != nil {
		t.Fatal(err)
	}
	idem, err := idemhttp.New(idemtest.NewEngine(t, nil), &idemhttp.Options{OnOutcome: rec.OnOutcome})
	if err != nil {
		t.Fatal(err)
	}
	h := idem.Handler(idemtest.NewCounter())
	tracer := tp.Tracer("test")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, span := tracer.Start(r.Context(), r.Method+" "+r.URL.Path)
		defer span.End()
		h.ServeHTTP(w, r.WithContext(ctx))
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return srv.URL, spans, reader
}

func attrs(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

// The outcome is on the request's span (attributes and an event), and in
// the OTel metrics by endpoint and outcome.
func TestOutcomeOnSpansAndMetrics(t *testing.T) {
	url, spans, reader := app(t, nil)
	first := idemtest.Do(t, "POST", url+"/v1/orders", "k-1", `{"a":1}`)
	idemtest.Do(t, "POST", url+"/v1/orders", "k-1", `{"a":1}`)
	idemtest.WaitFor(t, "two ended spans", func() bool { return len(spans.Ended()) == 2 })
	var got []map[string]string
	for _, s := range spans.Ended() {
		got = append(got, attrs(s.Attributes()))
		if len(s.Events()) != 1 || s.Events()[0].Name != "idemkv.outcome" {
			t.Errorf("span %s: events %v, want one idemkv.outcome", s.Name(), s.Events())
		}
	}
	if got[0]["idemkv.outcome"] == "replay" {
		got[0], got[1] = got[1], got[0]
	}
	if got[0]["idemkv.outcome"] != "proceed" || got[0]["idemkv.endpoint"] != "POST /v1/orders" || got[0]["idemkv.recorded"] != "true" ||
		got[0]["idemkv.request_id"] != first.Header.Get("X-Request-Id") {
		t.Errorf("first span: %v", got[0])
	}
	if got[1]["idemkv.outcome"] != "replay" || got[1]["idemkv.original_request_id"] != got[0]["idemkv.request_id"] {
		t.Errorf("replay span: %v", got[1])
	}
	if _, has := got[0]["idemkv.key"]; has {
		t.Error("the key is on the span")
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	var durations uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					a := attrs(p.Attributes.ToSlice())
					counts[a["idemkv.endpoint"]+" "+a["idemkv.outcome"]] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					durations += p.Count
				}
			}
		}
	}
	if counts["POST /v1/orders proceed"] != 1 || counts["POST /v1/orders replay"] != 1 || durations != 2 {
		t.Errorf("metrics: %v, %d durations", counts, durations)
	}
}

// The endpoint attribute of the metrics takes at most MaxEndpoints
// values, then "other".
func TestEndpointAttributeIsBounded(t *testing.T) {
	url, _, reader := app(t, &idemotel.Options{MaxEndpoints: 5})
	for i := range 40 {
		idemtest.Do(t, "POST", fmt.Sprintf("%s/v1/items/%d", url, i), "", `{}`)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	endpoints := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, p := range d.DataPoints {
					endpoints[attrs(p.Attributes.ToSlice())["idemkv.endpoint"]] = true
				}
			}
		}
	}
	if len(endpoints) != 6 || !endpoints[idemhttp.OtherEndpoints] {
		t.Errorf("%d endpoint values: %v", len(endpoints), strings.Join(keys(endpoints), ", "))
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
