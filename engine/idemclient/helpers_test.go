package idemclient_test

// Helpers of the tests that run the transport against the idemhttp
// middleware.

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/idemkv/idemkv/engine"
)

// newEngine opens an engine on an in-memory filesystem (these tests are
// not about durability).
func newEngine(t testing.TB, o *engine.Options) *engine.Engine {
	t.Helper()
	if o == nil {
		o = &engine.Options{}
	}
	o.InMemory = true
	e, err := engine.Open("data", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// counter is a handler that creates a resource: 201 with a JSON body
// naming how many times it ran, and a few headers, some of which must not
// be replayed.
type counter struct {
	mu    sync.Mutex
	runs  map[string]int // by Idempotency-Key
	total atomic.Int64
}

func newCounter() *counter { return &counter{runs: make(map[string]int)} }

func (c *counter) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs[key]
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	n := c.total.Add(1)
	key := r.Header.Get("Idempotency-Key") + r.Header.Get("X-Idempotency-Key")
	c.mu.Lock()
	c.runs[key]++
	c.mu.Unlock()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Location", fmt.Sprintf("/v1/things/%d", n))
	h.Set("ETag", fmt.Sprintf(`"v%d"`, n))
	h.Set("Set-Cookie", fmt.Sprintf("session=%d", n))
	h.Set("X-Not-Stored", "x")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"data":{"id":%d,"echo":%q}}`, n, body)
}
