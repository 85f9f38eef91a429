package idemproxy_test

import (
	"io"
	"log"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

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

// noRedirects shows redirects to the test instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

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

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func quietHTTPLog() *log.Logger { return log.New(io.Discard, "", 0) }
