// Command chi serves an API on the chi router with idemkv's middleware on
// its create endpoints.
//
//	go run ./examples/chi [-listen 127.0.0.1:8091] [-data DIR] [-once]
//
// With -once it sends a first request, a retry and a conflicting request to
// itself, then eight identical requests at once under a new key, prints
// what came back, and exits; it fails unless the handler ran exactly twice.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync/atomic"

	"github.com/go-chi/chi/v5"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/examples/internal/selftest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8091", "address to serve on")
	data := flag.String("data", "", "data directory (default: a new temporary directory)")
	once := flag.Bool("once", false, "send requests to itself, print the answers and exit")
	flag.Parse()

	dir := *data
	if dir == "" {
		d, err := os.MkdirTemp("", "idemkv-chi-")
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
	idem, err := idemhttp.New(eng, &idemhttp.Options{
		// chi knows the matched route once it has routed the request:
		// with the middleware added through r.With on the route, the
		// pattern is complete ("/v1/teams/{team}/invites").
		RoutePattern: func(r *http.Request) string {
			return chi.RouteContext(r.Context()).RoutePattern()
		},
		ScopeHeader: "X-Api-Key",
	})
	if err != nil {
		log.Fatal(err)
	}

	var invites atomic.Int64
	r := chi.NewRouter()
	r.With(idem.Handler).Post("/v1/teams/{team}/invites", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := invites.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"data":{"id":"inv_%d","team":%q,"request":%s}}`, n, chi.URLParam(r, "team"), body)
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	if !*once {
		fmt.Printf("listening on %s; try:\n  curl -i %s/v1/teams/t1/invites -H 'X-Api-Key: key_1' -H 'Idempotency-Key: i-1' -d '{\"email\":\"a@example.com\"}'\n", base, base)
		log.Fatal(http.Serve(ln, r))
	}
	go http.Serve(ln, r)
	if err := selftest.Run(base+"/v1/teams/t1/invites", invites.Load); err != nil {
		log.Fatal(err)
	}
}
