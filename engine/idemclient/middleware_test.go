package idemclient_test

// The transport against a server protected by the idemhttp middleware.

import (
	"github.com/idemkv/idemkv/engine/internal/idemtest"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine/idemclient"
	"github.com/idemkv/idemkv/engine/idemhttp"
)

// TestRetryAfterDroppedConnectionsGetsStoredResponse is the case idempotency
// keys exist for: the server runs the request, then the connection drops
// before the client reads the answer. The client transport retries with
// the same key and gets the stored response; the handler ran once.
func TestRetryAfterDroppedConnectionsGetsStoredResponse(t *testing.T) {
	c := idemtest.NewCounter()
	m, err := idemhttp.New(idemtest.NewEngine(t, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	protected := m.Handler(c)
	var drops atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if drops.Add(1) <= 2 {
			// Run the request for real, then lose the answer.
			protected.ServeHTTP(httptest.NewRecorder(), r)
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		protected.ServeHTTP(w, r)
	}))
	defer srv.Close()

	client := &http.Client{Transport: &idemclient.Transport{BaseDelay: time.Millisecond, MaxTries: 5}}
	req, _ := http.NewRequest("POST", srv.URL+"/v1/calls", strings.NewReader(`{"to":"+15550100"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", idemtest.DefaultCredential)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	key := resp.Request.Header.Get("Idempotency-Key")
	if resp.StatusCode != 201 || resp.Header.Get("Idempotency-Replay") != "true" {
		t.Fatalf("after two dropped connections: %d replay=%q %s", resp.StatusCode, resp.Header.Get("Idempotency-Replay"), body)
	}
	if n := c.Count(key); n != 1 {
		t.Fatalf("handler ran %d times for key %q; want 1", n, key)
	}
	if drops.Load() < 3 {
		t.Fatalf("the server saw %d tries; want at least 3", drops.Load())
	}
}
