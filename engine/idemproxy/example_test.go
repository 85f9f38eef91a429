package idemproxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/idemproxy"
)

// The proxy stands in front of a service written in any language: here an
// upstream that creates an order. The retry of a request it answered is
// replayed by the proxy; the upstream sees the request once.
func Example() {
	orders := 0
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		orders++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"order_%d"}`, orders)
	}))
	defer upstream.Close()

	eng, err := engine.Open("data", &engine.Options{InMemory: true})
	if err != nil {
		panic(err)
	}
	defer eng.Close()
	m, err := idemhttp.New(eng, nil)
	if err != nil {
		panic(err)
	}
	target, _ := url.Parse(upstream.URL)
	proxy := httptest.NewServer(idemproxy.New(target, m, nil))
	defer proxy.Close()

	for range 2 {
		req, _ := http.NewRequest("POST", proxy.URL+"/v1/orders", strings.NewReader(`{"sku":"A1"}`))
		req.Header.Set("Authorization", "Bearer sk_test_1")
		req.Header.Set("Idempotency-Key", "order-1001")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, string(body), "replay:", resp.Header.Get("Idempotency-Replay") == "true")
	}
	fmt.Println("upstream calls:", orders)
	// Output:
	// 201 {"id":"order_1"} replay: false
	// 201 {"id":"order_1"} replay: true
	// upstream calls: 1
}
