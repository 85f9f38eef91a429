package idemhttp_test

import (
	"errors"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
	"net/http"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine/idemhttp"
)

func TestInvalidOptions(t *testing.T) {
	eng := idemtest.NewEngine(t, nil)
	for _, o := range []idemhttp.Options{
		{ConflictStatus: 400},
		{StoredHeaders: []string{"set-cookie"}},
		{StoredHeaders: []string{"Transfer-Encoding"}},
		{KeyHeaders: []string{" "}},
		{MaxRequestBody: -1},
		{Routes: []idemhttp.Route{{Method: "POST"}}},
		{WhenInProgress: 7},
	} {
		if _, err := idemhttp.New(eng, &o); !errors.Is(err, idemhttp.ErrInvalidOptions) {
			t.Errorf("New(%+v) = %v; want ErrInvalidOptions", o, err)
		}
	}
}

// A custom Scope separates tenants; one tenant's key never replays to
// another, even with the same request.
func TestCustomScopeSeparatesTenants(t *testing.T) {
	c := idemtest.NewCounter()
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{
		Scope: func(r *http.Request) string { return r.Header.Get("X-Tenant") },
	}, c)
	a := idemtest.Do(t, "POST", srv.URL+"/x", "k", "same", "X-Tenant", "acme")
	b := idemtest.Do(t, "POST", srv.URL+"/x", "k", "same", "X-Tenant", "globex")
	a2 := idemtest.Do(t, "POST", srv.URL+"/x", "k", "same", "X-Tenant", "acme")
	if a.Body == b.Body || b.Header.Get("Idempotency-Replay") != "false" {
		t.Fatalf("tenants shared a record: %q %q", a.Body, b.Body)
	}
	if a2.Body != a.Body || a2.Header.Get("Idempotency-Replay") != "true" {
		t.Fatalf("same tenant not replayed: %q then %q", a.Body, a2.Body)
	}
}

// StoredHeaders and RequestIDHeader options: the extra header is replayed,
// the id travels in the configured header.
func TestStoredHeadersReplayedAndRequestIDHeaderUsed(t *testing.T) {
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{
		StoredHeaders:   []string{"x-resource-version"},
		RequestIDHeader: "request-id",
	}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Resource-Version", "42")
		w.Header().Set("X-Other", "no")
		w.WriteHeader(201)
	}))
	first := idemtest.Do(t, "POST", srv.URL+"/x", "k", "")
	again := idemtest.Do(t, "POST", srv.URL+"/x", "k", "")
	if id := first.Header.Get("Request-Id"); id == "" || again.Header.Get("Request-Id") != id || first.Header.Get("X-Request-Id") != "" {
		t.Fatalf("Request-Id %q then %q (X-Request-Id %q)", id, again.Header.Get("Request-Id"), first.Header.Get("X-Request-Id"))
	}
	if again.Header.Get("X-Resource-Version") != "42" || again.Header.Get("X-Other") != "" {
		t.Fatalf("replayed X-Resource-Version %q, X-Other %q", again.Header.Get("X-Resource-Version"), again.Header.Get("X-Other"))
	}
}

// Options that cannot work, and a nil store, are refused.
func TestNewRefusesUnworkableOptions(t *testing.T) {
	eng := idemtest.NewEngine(t, nil)
	for _, o := range []idemhttp.Options{
		{WaitTimeout: -time.Second},
		{RetryAfter: -time.Second},
		{MaxResponseBody: -1},
		{ConflictStatus: 500},
		{StoredHeaders: []string{"date"}},
		{StoredHeaders: []string{"Content-Length"}},
		{StoredHeaders: []string{"idempotency-replay"}},
		{RequestIDHeader: "Set-Cookie"},
		{KeyHeaders: []string{}},
		{Routes: []idemhttp.Route{{Pattern: "/x"}}},
	} {
		if _, err := idemhttp.New(eng, &o); !errors.Is(err, idemhttp.ErrInvalidOptions) {
			t.Errorf("New(%+v) = %v; want ErrInvalidOptions", o, err)
		}
	}
	if _, err := idemhttp.New(nil, nil); err == nil {
		t.Error("New(nil store) succeeded")
	}
}
