// Package idemtest holds the helpers shared by the tests of several
// packages (engine, idemhttp, idemclient, idemproxy): an engine in memory
// or on a directory, a handler that counts its runs, a client call that
// returns what came back, and a poll for a condition.
package idemtest

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
)

// NewEngine opens an engine in memory (tests that are not about
// durability), closed when t ends. o may be nil.
func NewEngine(t testing.TB, o *engine.Options) *engine.Engine {
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

// NewUpgradedEngine opens, on a copy of the golden data directory that
// a version before keyed scope digests wrote (engine/testdata/datadir-v1),
// an engine as it runs just after the upgrade: its upgrade window is open,
// so records stored under version-1 digests are still found. Closed when
// t ends.
func NewUpgradedEngine(t testing.TB) *engine.Engine {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "..", "..", "testdata", "datadir-v1")
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	// The golden directory was written with a one-hour TTL.
	e, err := engine.Open(dir, &engine.Options{TTL: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if !e.Scoper().Upgrading() {
		t.Fatal("the upgraded directory has no upgrade window")
	}
	return e
}

// Counter is a handler that creates a resource: 201 with a JSON body
// naming how many times it ran and echoing the request body, and a few
// headers, some of which must not be replayed (Set-Cookie, X-Not-Stored).
type Counter struct {
	Total atomic.Int64 // runs, all keys

	mu   sync.Mutex
	runs map[string]int // by Idempotency-Key or X-Idempotency-Key
}

// NewCounter returns a Counter that has not run.
func NewCounter() *Counter { return &Counter{runs: make(map[string]int)} }

// Count returns how many times the handler ran for key.
func (c *Counter) Count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs[key]
}

func (c *Counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	n := c.Total.Add(1)
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

// DefaultCredential is the Authorization that Do sends unless told
// otherwise.
const DefaultCredential = "Bearer sk_test"

// Reply is what a client got: status, headers and body.
type Reply struct {
	Status int
	Header http.Header
	Body   string
}

// NoRedirects shows redirects to the test instead of following them.
var NoRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// Do sends a request with an idempotency key (none if key is "") and the
// header pairs hdr, and returns the reply. Like most API clients it
// authenticates, as DefaultCredential, unless hdr sets Authorization
// (to "" for an anonymous request).
func Do(t testing.TB, method, url, key, body string, hdr ...string) Reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", DefaultCredential)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := NoRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return Reply{resp.StatusCode, resp.Header, string(b)}
}

// WaitFor polls cond every millisecond for up to 5 s, and fails t if it
// never holds.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// QuietLogger discards what it is given.
func QuietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// QuietHTTPLog is an http.Server.ErrorLog that discards what it is given.
func QuietHTTPLog() *log.Logger { return log.New(io.Discard, "", 0) }

// OpenDiskEngine opens an engine on the directory dir, closed when t ends.
// Close is idempotent, so a test may close it early to inspect or reopen
// the directory.
func OpenDiskEngine(t testing.TB, dir string, o *engine.Options) *engine.Engine {
	t.Helper()
	e, err := engine.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}
