// Package adaptertest checks that an adapter of a router or framework
// (idemgin, idemecho) keeps idemhttp's contract end to end: a real server
// on a loopback port, a real engine, real requests. Each adapter's tests
// call RunHTTP with a function that builds its framework's server.
package adaptertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
	"github.com/idemkv/idemkv/record"
)

// Server builds the application under test and returns its base URL
// ("http://127.0.0.1:port"), serving until t ends: the framework, with its
// own panic recovery, the middleware m plugged in as the adapter documents,
// and one route, POST /v1/items/{id} in the framework's syntax, whose
// handler is h (wrapped as the framework wraps a net/http handler).
type Server func(t *testing.T, m *idemhttp.Middleware, h http.Handler) string

// Headers the suite's handler obeys.
const (
	// HeaderFail makes the handler answer with the status it names.
	HeaderFail = "X-Test-Status"
	// HeaderPanic makes the handler panic.
	HeaderPanic = "X-Test-Panic"
	// HeaderSleep makes the handler sleep this long first.
	HeaderSleep = "X-Test-Sleep"
)

// Handler is the route's handler: 201 with a JSON body that numbers its
// run and echoes the request, unless the request's X-Test headers say
// otherwise.
type Handler struct {
	Runs atomic.Int64
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	n := h.Runs.Add(1)
	if d, err := time.ParseDuration(r.Header.Get(HeaderSleep)); err == nil {
		time.Sleep(d)
	}
	if r.Header.Get(HeaderPanic) != "" {
		panic("adaptertest: the handler panics")
	}
	status := http.StatusCreated
	if s := r.Header.Get(HeaderFail); s != "" {
		fmt.Sscan(s, &status)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", fmt.Sprintf("/v1/items/%d", n))
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"run":%d,"path":%q,"echo":%q}`, n, r.URL.Path, body)
}

// RunHTTP runs the contract table against the servers serve builds.
// endpoint is what the route's keys must be stored under: the method and
// the framework's route template ("POST /v1/items/:id").
func RunHTTP(t *testing.T, endpoint string, serve Server) {
	setup := func(t *testing.T) (*engine.Engine, *Handler, string) {
		e := idemtest.NewEngine(t, nil)
		m, err := idemhttp.New(e, &idemhttp.Options{MaxWaitersPerKey: -1, Logger: idemtest.QuietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		h := &Handler{}
		return e, h, serve(t, m, h)
	}

	t.Run("FirstRunsThenRetryReplaysVerbatim", func(t *testing.T) {
		_, h, url := setup(t)
		first := idemtest.Do(t, "POST", url+"/v1/items/1", "k1", `{"a":1}`)
		if first.Status != http.StatusCreated || first.Header.Get("Idempotency-Replay") != "false" {
			t.Fatalf("first: %d %q %s", first.Status, first.Header.Get("Idempotency-Replay"), first.Body)
		}
		again := idemtest.Do(t, "POST", url+"/v1/items/1", "k1", `{"a":1}`)
		if again.Status != first.Status || again.Body != first.Body ||
			again.Header.Get("Location") != first.Header.Get("Location") ||
			again.Header.Get("Content-Type") != first.Header.Get("Content-Type") {
			t.Fatalf("replay differs:\nfirst %d %v %s\nretry %d %v %s", first.Status, first.Header, first.Body, again.Status, again.Header, again.Body)
		}
		if again.Header.Get("Idempotency-Replay") != "true" {
			t.Fatalf("replay marker: %q", again.Header.Get("Idempotency-Replay"))
		}
		if n := h.Runs.Load(); n != 1 {
			t.Fatalf("the handler ran %d times", n)
		}
	})

	t.Run("KeysAreStoredUnderTheRouteTemplate", func(t *testing.T) {
		e, _, url := setup(t)
		idemtest.Do(t, "POST", url+"/v1/items/7", "k-route", `{}`)
		scope := e.Scoper().Scope(idemtest.DefaultCredential)
		rec, err := e.Get(t.Context(), record.Key{Scope: scope, Endpoint: endpoint, Key: "k-route"})
		if err != nil {
			t.Fatalf("no record under endpoint %q: %v", endpoint, err)
		}
		if rec.Status != http.StatusCreated {
			t.Fatalf("stored status %d", rec.Status)
		}
	})

	t.Run("SameKeyOtherBodyConflictsNamingTheOriginal", func(t *testing.T) {
		_, h, url := setup(t)
		first := idemtest.Do(t, "POST", url+"/v1/items/1", "k2", `{"a":1}`)
		other := idemtest.Do(t, "POST", url+"/v1/items/1", "k2", `{"a":2}`)
		var p struct {
			Code   string
			Fields struct {
				ConflictsWith string `json:"conflicts_with"`
			}
		}
		if err := json.Unmarshal([]byte(other.Body), &p); err != nil {
			t.Fatalf("conflict body %q: %v", other.Body, err)
		}
		if other.Status != http.StatusConflict || p.Code != idemhttp.CodeConflict ||
			p.Fields.ConflictsWith == "" || p.Fields.ConflictsWith != first.Header.Get("X-Request-Id") {
			t.Fatalf("conflict: %d %s (first's id %q)", other.Status, other.Body, first.Header.Get("X-Request-Id"))
		}
		// The same key on another resource of the route is another request.
		if r := idemtest.Do(t, "POST", url+"/v1/items/2", "k2", `{"a":1}`); r.Status != http.StatusConflict {
			t.Fatalf("same key, other resource: %d %s", r.Status, r.Body)
		}
		if n := h.Runs.Load(); n != 1 {
			t.Fatalf("the handler ran %d times", n)
		}
	})

	t.Run("ConcurrentDuplicatesRunTheHandlerOnce", func(t *testing.T) {
		_, h, url := setup(t)
		const n = 64
		replies := make([]idemtest.Reply, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				replies[i] = idemtest.Do(t, "POST", url+"/v1/items/1", "k3", `{"same":true}`, HeaderSleep, "100ms")
			})
		}
		wg.Wait()
		for i, r := range replies {
			if r.Status != http.StatusCreated || r.Body != replies[0].Body {
				t.Fatalf("reply %d: %d %s (first %s)", i, r.Status, r.Body, replies[0].Body)
			}
		}
		if runs := h.Runs.Load(); runs != 1 {
			t.Fatalf("the handler ran %d times for %d identical requests", runs, n)
		}
	})

	t.Run("ServerErrorIsReleasedAndRunsAgain", func(t *testing.T) {
		_, h, url := setup(t)
		if r := idemtest.Do(t, "POST", url+"/v1/items/1", "k4", `{}`, HeaderFail, "503"); r.Status != 503 {
			t.Fatalf("first: %d %s", r.Status, r.Body)
		}
		if r := idemtest.Do(t, "POST", url+"/v1/items/1", "k4", `{}`); r.Status != http.StatusCreated || r.Header.Get("Idempotency-Replay") != "false" {
			t.Fatalf("retry after a 503: %d %s", r.Status, r.Body)
		}
		if n := h.Runs.Load(); n != 2 {
			t.Fatalf("the handler ran %d times, want 2", n)
		}
	})

	t.Run("ClientErrorIsStored", func(t *testing.T) {
		_, h, url := setup(t)
		first := idemtest.Do(t, "POST", url+"/v1/items/1", "k5", `{}`, HeaderFail, "422")
		again := idemtest.Do(t, "POST", url+"/v1/items/1", "k5", `{}`)
		if first.Status != 422 || again.Status != 422 || again.Body != first.Body || again.Header.Get("Idempotency-Replay") != "true" {
			t.Fatalf("a 422 is replayed: first %d %s, retry %d %s", first.Status, first.Body, again.Status, again.Body)
		}
		if n := h.Runs.Load(); n != 1 {
			t.Fatalf("the handler ran %d times", n)
		}
	})

	t.Run("PanicReleasesTheKey", func(t *testing.T) {
		_, h, url := setup(t)
		if r := idemtest.Do(t, "POST", url+"/v1/items/1", "k6", `{}`, HeaderPanic, "1"); r.Status != http.StatusInternalServerError {
			t.Fatalf("a panic: %d %s", r.Status, r.Body)
		}
		if r := idemtest.Do(t, "POST", url+"/v1/items/1", "k6", `{}`); r.Status != http.StatusCreated || r.Header.Get("Idempotency-Replay") != "false" {
			t.Fatalf("retry after a panic: %d %s", r.Status, r.Body)
		}
		if n := h.Runs.Load(); n != 2 {
			t.Fatalf("the handler ran %d times, want 2", n)
		}
	})

	t.Run("FailingStoreAnswers503WithoutRunning", func(t *testing.T) {
		e, h, url := setup(t)
		e.Close()
		r := idemtest.Do(t, "POST", url+"/v1/items/1", "k7", `{}`)
		if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, idemhttp.CodeUnavailable) || r.Header.Get("Retry-After") == "" {
			t.Fatalf("closed store: %d %v %s", r.Status, r.Header, r.Body)
		}
		if n := h.Runs.Load(); n != 0 {
			t.Fatalf("the handler ran %d times", n)
		}
	})

	t.Run("MalformedKeyIsRefused", func(t *testing.T) {
		_, h, url := setup(t)
		r := idemtest.Do(t, "POST", url+"/v1/items/1", strings.Repeat("x", 300), `{}`)
		if r.Status != http.StatusBadRequest || !strings.Contains(r.Body, idemhttp.CodeKeyInvalid) {
			t.Fatalf("oversized key: %d %s", r.Status, r.Body)
		}
		if n := h.Runs.Load(); n != 0 {
			t.Fatalf("the handler ran %d times", n)
		}
	})

	t.Run("RequestsWithoutKeyPassThrough", func(t *testing.T) {
		_, h, url := setup(t)
		for range 2 {
			if r := idemtest.Do(t, "POST", url+"/v1/items/1", "", `{}`); r.Status != http.StatusCreated {
				t.Fatalf("no key: %d %s", r.Status, r.Body)
			}
		}
		if n := h.Runs.Load(); n != 2 {
			t.Fatalf("the handler ran %d times, want 2", n)
		}
	})
}
