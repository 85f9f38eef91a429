package idemprom_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/idemprom"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
)

// scrape serves reg over real HTTP, as Prometheus scrapes it, and parses
// what came back with Prometheus's own text parser.
func scrape(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %s", resp.Status)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// The collector joins an application's own registry, beside the Go
// runtime's and the process's collectors and the application's metrics,
// and a scrape shows the middleware's outcomes by endpoint and the
// store's figures.
func TestCollectorJoinsTheApplicationsRegistry(t *testing.T) {
	eng := idemtest.NewEngine(t, nil)
	idem, err := idemhttp.New(eng, nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/orders/{id}", idem.Handler(idemtest.NewCounter()))
	app := httptest.NewServer(mux)
	defer app.Close()

	reg := prometheus.NewRegistry()
	appRequests := prometheus.NewCounter(prometheus.CounterOpts{Name: "app_requests_total", Help: "The application's own."})
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		appRequests, idemprom.NewCollector(idem, eng))
	appRequests.Inc()

	idemtest.Do(t, "POST", app.URL+"/v1/orders/1", "k-1", `{"a":1}`)
	idemtest.Do(t, "POST", app.URL+"/v1/orders/1", "k-1", `{"a":1}`)
	idemtest.Do(t, "POST", app.URL+"/v1/orders/2", "k-1", `{"a":2}`) // same route: a conflict
	fams := scrape(t, reg)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"idemkv_http_outcomes_total", []string{"endpoint", "POST /v1/orders/{id}", "outcome", "proceed"}, 1},
		{"idemkv_http_outcomes_total", []string{"endpoint", "POST /v1/orders/{id}", "outcome", "replay"}, 1},
		{"idemkv_http_outcomes_total", []string{"endpoint", "POST /v1/orders/{id}", "outcome", "conflict"}, 1},
		{"idemkv_http_request_duration_seconds", []string{"outcome", "replay"}, 1},
		{"idemkv_http_replayed_total", nil, 1},
		{"idemkv_store_completes_total", nil, 1},
		{"app_requests_total", nil, 1},
	} {
		if got, ok := value(fams, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "idemkv_store_disk_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s in the scrape", name)
		}
	}
}

// However many distinct paths clients send to a middleware without route
// patterns, the endpoint label has at most MaxEndpoints values and
// "other".
func TestEndpointLabelCardinalityIsBounded(t *testing.T) {
	eng := idemtest.NewEngine(t, nil)
	idem, err := idemhttp.New(eng, nil) // default MaxEndpoints: 100
	if err != nil {
		t.Fatal(err)
	}
	h := idem.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for i := range 10000 {
		req := httptest.NewRequest("POST", fmt.Sprintf("/v1/items/%d", i), strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer sk_test")
		req.Header.Set("Idempotency-Key", "k")
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(idemprom.NewCollector(idem, eng))
	fams := scrape(t, reg)
	endpoints := map[string]bool{}
	var total float64
	for _, m := range fams["idemkv_http_outcomes_total"].GetMetric() {
		for _, l := range m.Label {
			if l.GetName() == "endpoint" {
				endpoints[l.GetValue()] = true
			}
		}
		total += m.Counter.GetValue()
	}
	if len(endpoints) != idemhttp.DefaultMaxEndpoints+1 || !endpoints[idemhttp.OtherEndpoints] || total != 10000 {
		t.Errorf("%d endpoint label values (other: %v), %v requests; want %d and 10000", len(endpoints), endpoints[idemhttp.OtherEndpoints], total, idemhttp.DefaultMaxEndpoints+1)
	}
}

// The metrics follow Prometheus's naming conventions (promlint), and a
// collector of a store alone (for the RPC adapters) works too.
func TestMetricsPassPromlint(t *testing.T) {
	eng := idemtest.NewEngine(t, nil)
	idem, _ := idemhttp.New(eng, nil)
	for name, c := range map[string]prometheus.Collector{"middleware and store": idemprom.NewCollector(idem, eng), "store alone": idemprom.NewCollector(nil, eng)} {
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s: %s", name, p.Metric, p.Text)
		}
	}
}
