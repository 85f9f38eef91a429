package idemprom_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/idemprom"
)

// The collector joins the application's own registry; a scrape then shows
// the middleware's outcomes by endpoint.
func ExampleNewCollector() {
	eng, err := engine.Open("data", &engine.Options{InMemory: true})
	if err != nil {
		log.Fatal(err)
	}
	defer eng.Close()
	idem, err := idemhttp.New(eng, nil)
	if err != nil {
		log.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(idemprom.NewCollector(idem, eng))

	mux := http.NewServeMux()
	mux.Handle("POST /v1/payments", idem.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})))
	for range 2 {
		req := httptest.NewRequest("POST", "/v1/payments", strings.NewReader(`{"amount":5}`))
		req.Header.Set("Authorization", "Bearer sk_example")
		req.Header.Set("Idempotency-Key", "pay-1")
		mux.ServeHTTP(httptest.NewRecorder(), req)
	}

	fams, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "idemkv_http_outcomes_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			fmt.Printf("%s %s: %v\n", labels["endpoint"], labels["outcome"], m.GetCounter().GetValue())
		}
	}
	// Output:
	// POST /v1/payments proceed: 1
	// POST /v1/payments replay: 1
}
