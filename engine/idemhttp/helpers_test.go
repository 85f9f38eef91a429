package idemhttp_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func quietHTTPLog() *log.Logger { return log.New(io.Discard, "", 0) }

// newEngine opens an engine on an in-memory filesystem (these tests are
// not about durability; the restart test uses a real directory).
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

// noRedirects shows redirects to the test instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// reply is what a client got: status, headers and body.
type reply struct {
	status int
	header http.Header
	body   string
}

// do sends a request with an idempotency key (none if key is "") and
// the header pairs hdr, and returns the reply.
func do(t testing.TB, method, url, key, body string, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func problemOf(t testing.TB, r reply) idemhttp.Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q; want application/problem+json (status %d, body %s)", ct, r.status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q; want no-store", cc)
	}
	var p idemhttp.Problem
	if err := json.Unmarshal([]byte(r.body), &p); err != nil {
		t.Fatalf("problem body %q: %v", r.body, err)
	}
	if p.Status != r.status {
		t.Errorf("problem status %d; response status %d", p.Status, r.status)
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

// waitFor polls cond for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// openDiskEngine opens an engine on a real directory. Close is idempotent,
// so a test may close it early to inspect or reopen the directory.
func openDiskEngine(t testing.TB, dir string, o *engine.Options) *engine.Engine {
	t.Helper()
	e, err := engine.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}
