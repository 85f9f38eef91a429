package idemhttp_test

// Helpers of this package's tests; those shared with idemclient's and
// idemproxy's tests are in package idemtest.

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
)

// newServer serves h behind the middleware on a real loopback listener.
func newServer(t testing.TB, store engine.Store, o *idemhttp.Options, h http.Handler) (*httptest.Server, *idemhttp.Middleware) {
	t.Helper()
	m, err := idemhttp.New(store, o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler(h))
	t.Cleanup(srv.Close)
	return srv, m
}

func problemOf(t testing.TB, r idemtest.Reply) idemhttp.Problem {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q; want application/problem+json (status %d, body %s)", ct, r.Status, r.Body)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q; want no-store", cc)
	}
	var p idemhttp.Problem
	if err := json.Unmarshal([]byte(r.Body), &p); err != nil {
		t.Fatalf("problem body %q: %v", r.Body, err)
	}
	if p.Status != r.Status {
		t.Errorf("problem status %d; response status %d", p.Status, r.Status)
	}
	return p
}

// blocked returns a handler that blocks until release is closed, and a
// channel that receives once it has started.
func blocked() (http.Handler, chan struct{}, chan struct{}) {
	started, release := make(chan struct{}, 16), make(chan struct{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		w.WriteHeader(201)
		io.WriteString(w, "done")
	}), started, release
}
