// Command stdlib serves an API on the standard library's http.ServeMux with
// idemkv's middleware on its create endpoint.
//
//	go run ./examples/stdlib [-listen 127.0.0.1:8090] [-data DIR] [-once]
//
// With -once it sends a first request, a retry and a conflicting request to
// itself, prints what came back, and exits.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "address to serve on")
	data := flag.String("data", "", "data directory (default: a new temporary directory)")
	once := flag.Bool("once", false, "send three requests to itself, print the answers and exit")
	flag.Parse()

	dir := *data
	if dir == "" {
		d, err := os.MkdirTemp("", "idemkv-stdlib-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	eng, err := engine.Open(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer eng.Close()
	idem, err := idemhttp.New(eng, nil) // Idempotency-Key, scoped by Authorization
	if err != nil {
		log.Fatal(err)
	}

	var orders atomic.Int64
	mux := http.NewServeMux()
	// Wrap each handler: the middleware then sees the route pattern
	// ("POST /v1/orders") and uses it as the endpoint of the keys.
	mux.Handle("POST /v1/orders", idem.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := orders.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", fmt.Sprintf("/v1/orders/%d", n))
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"data":{"id":%d,"request":%s}}`, n, body)
	})))
	mux.HandleFunc("GET /v1/orders/count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d\n", orders.Load())
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	if !*once {
		fmt.Printf("listening on %s; try:\n  curl -i %s/v1/orders -H 'Authorization: Bearer sk_test_1' -H 'Idempotency-Key: o-1' -d '{\"sku\":\"A1\"}'\n", base, base)
		log.Fatal(http.Serve(ln, mux))
	}
	go http.Serve(ln, mux)
	for _, body := range []string{`{"sku":"A1"}`, `{"sku":"A1"}`, `{"sku":"B2"}`} {
		req, _ := http.NewRequest("POST", base+"/v1/orders", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sk_test_1") // the tenant
		req.Header.Set("Idempotency-Key", "o-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%d replay=%s %s\n", resp.StatusCode, resp.Header.Get("Idempotency-Replay"), strings.TrimSpace(string(b)))
	}
	fmt.Println("orders created:", orders.Load())
	if orders.Load() != 1 {
		log.Fatal("the handler ran more than once")
	}
}
