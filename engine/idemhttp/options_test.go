package idemhttp_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine/idemhttp"
)

func TestInvalidOptions(t *testing.T) {
	eng := newEngine(t, nil)
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
	c := newCounter()
	srv, _ := newServer(t, newEngine(t, nil), &idemhttp.Options{
		Scope: func(r *http.Request) string { return r.Header.Get("X-Tenant") },
	}, c)
	a := do(t, "POST", srv.URL+"/x", "k", "same", "X-Tenant", "acme")
	b := do(t, "POST", srv.URL+"/x", "k", "same", "X-Tenant", "globex")
	a2 := do(t, "POST", srv.URL+"/x", "k", "same", "X-Tenant", "acme")
	if a.body == b.body || b.header.Get("Idempotency-Replay") != "false" {
		t.Fatalf("tenants shared a record: %q %q", a.body, b.body)
	}
	if a2.body != a.body || a2.header.Get("Idempotency-Replay") != "true" {
		t.Fatalf("same tenant not replayed: %q then %q", a.body, a2.body)
	}
}

// StoredHeaders and RequestIDHeader options: the extra header is replayed,
// the id travels in the configured header.
func TestStoredHeadersReplayedAndRequestIDHeaderUsed(t *testing.T) {
	srv, _ := newServer(t, newEngine(t, nil), &idemhttp.Options{
		StoredHeaders:   []string{"x-resource-version"},
		RequestIDHeader: "request-id",
	}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Resource-Version", "42")
		w.Header().Set("X-Other", "no")
		w.WriteHeader(201)
	}))
	first := do(t, "POST", srv.URL+"/x", "k", "")
	again := do(t, "POST", srv.URL+"/x", "k", "")
	if id := first.header.Get("Request-Id"); id == "" || again.header.Get("Request-Id") != id || first.header.Get("X-Request-Id") != "" {
		t.Fatalf("Request-Id %q then %q (X-Request-Id %q)", id, again.header.Get("Request-Id"), first.header.Get("X-Request-Id"))
	}
	if again.header.Get("X-Resource-Version") != "42" || again.header.Get("X-Other") != "" {
		t.Fatalf("replayed X-Resource-Version %q, X-Other %q", again.header.Get("X-Resource-Version"), again.header.Get("X-Other"))
	}
}

// Options that cannot work, and a nil store, are refused.
func TestNewRefusesUnworkableOptions(t *testing.T) {
	eng := newEngine(t, nil)
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
