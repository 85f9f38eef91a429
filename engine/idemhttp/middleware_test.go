package idemhttp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
	"github.com/idemkv/idemkv/expiry"
	"github.com/idemkv/idemkv/record"
)

func TestFirstRequestAndReplay(t *testing.T) {
	c := idemtest.NewCounter()
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, c)

	first := idemtest.Do(t, "POST", srv.URL+"/v1/calls", "k1", `{"to":"+1555"}`, "Authorization", "Bearer sk_1")
	if first.Status != 201 {
		t.Fatalf("first: status %d: %s", first.Status, first.Body)
	}
	if got := first.Header.Get("Idempotency-Replay"); got != "false" {
		t.Errorf("first: Idempotency-Replay = %q; want false", got)
	}
	id := first.Header.Get("X-Request-Id")
	if !strings.HasPrefix(id, "req_") || len(id) != 28 {
		t.Errorf("first: X-Request-Id = %q; want req_ and 24 hex digits", id)
	}
	if first.Header.Get("Set-Cookie") == "" {
		t.Error("first response lost the handler's Set-Cookie")
	}

	for i := range 3 {
		again := idemtest.Do(t, "POST", srv.URL+"/v1/calls", "k1", `{"to":"+1555"}`, "Authorization", "Bearer sk_1")
		if again.Status != first.Status || again.Body != first.Body {
			t.Fatalf("replay %d: %d %q; want %d %q", i, again.Status, again.Body, first.Status, first.Body)
		}
		for _, h := range []string{"Content-Type", "Location", "Etag", "X-Request-Id"} {
			if got, want := again.Header.Get(h), first.Header.Get(h); got != want {
				t.Errorf("replay %s = %q; want %q", h, got, want)
			}
		}
		for _, h := range []string{"Set-Cookie", "X-Not-Stored"} {
			if got := again.Header.Get(h); got != "" {
				t.Errorf("replay carries %s: %q", h, got)
			}
		}
		if again.Header.Get("Idempotency-Replay") != "true" || again.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("replay headers: Idempotency-Replay %q, Idempotent-Replayed %q",
				again.Header.Get("Idempotency-Replay"), again.Header.Get("Idempotent-Replayed"))
		}
	}
	if n := c.Count("k1"); n != 1 {
		t.Errorf("handler ran %d times; want 1", n)
	}
}

func TestHandlerRequestIDIsKept(t *testing.T) {
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "mine-42")
		w.WriteHeader(201)
	}))
	first := idemtest.Do(t, "POST", srv.URL+"/x", "k", "a")
	if got := first.Header.Get("X-Request-Id"); got != "mine-42" {
		t.Fatalf("X-Request-Id = %q; want the handler's mine-42", got)
	}
	p := problemOf(t, idemtest.Do(t, "POST", srv.URL+"/x", "k", "b"))
	if p.Code != idemhttp.CodeConflict || p.Fields["conflicts_with"] != "mine-42" {
		t.Fatalf("conflict = %+v; want conflicts_with mine-42", p)
	}
}

func TestConflict(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
	}{{"default 409", 0}, {"422", 422}} {
		t.Run(tc.name, func(t *testing.T) {
			c := idemtest.NewCounter()
			srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{ConflictStatus: tc.status}, c)
			first := idemtest.Do(t, "POST", srv.URL+"/v1/calls", "k", `{"a":1}`)
			r := idemtest.Do(t, "POST", srv.URL+"/v1/calls", "k", `{"a":2}`)
			want := tc.status
			if want == 0 {
				want = 409
			}
			if r.Status != want {
				t.Fatalf("status %d; want %d", r.Status, want)
			}
			p := problemOf(t, r)
			if p.Code != "idempotency_conflict" || p.Fields["conflicts_with"] != first.Header.Get("X-Request-Id") {
				t.Fatalf("problem %+v; want idempotency_conflict with conflicts_with %q", p, first.Header.Get("X-Request-Id"))
			}
			if c.Count("k") != 1 {
				t.Fatalf("handler ran %d times", c.Count("k"))
			}
		})
	}
}

func TestScopesAndEndpoints(t *testing.T) {
	c := idemtest.NewCounter()
	mux := http.NewServeMux()
	eng := idemtest.NewEngine(t, nil)
	m, err := idemhttp.New(eng, nil)
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("POST /v1/calls", m.Handler(c))
	mux.Handle("POST /v1/agents", m.Handler(c))
	mux.Handle("POST /v1/calls/{id}/hangup", m.Handler(c))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	a := idemtest.Do(t, "POST", srv.URL+"/v1/calls", "k", "x", "Authorization", "Bearer A")
	b := idemtest.Do(t, "POST", srv.URL+"/v1/calls", "k", "x", "Authorization", "Bearer B")
	anon := idemtest.Do(t, "POST", srv.URL+"/v1/calls", "k", "x")
	other := idemtest.Do(t, "POST", srv.URL+"/v1/agents", "k", "x", "Authorization", "Bearer A")
	ids := map[string]bool{}
	for _, r := range []idemtest.Reply{a, b, anon, other} {
		if r.Status != 201 || r.Header.Get("Idempotency-Replay") != "false" {
			t.Fatalf("want four first requests; got %d replay=%s", r.Status, r.Header.Get("Idempotency-Replay"))
		}
		ids[r.Body] = true
	}
	if len(ids) != 4 || c.Count("k") != 4 {
		t.Fatalf("tenants or endpoints shared a record: %d distinct bodies, %d runs", len(ids), c.Count("k"))
	}
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/calls", "k", "x"); r.Body != anon.Body {
		t.Fatal("anonymous retry did not replay the anonymous record")
	}
	// One route, two resources: the same key is a conflict, never the
	// other resource's response.
	h1 := idemtest.Do(t, "POST", srv.URL+"/v1/calls/1/hangup", "h", "")
	h2 := idemtest.Do(t, "POST", srv.URL+"/v1/calls/2/hangup", "h", "")
	if h1.Status != 201 || h2.Status != 409 {
		t.Fatalf("same key on two resources of one route: %d then %d; want 201, 409", h1.Status, h2.Status)
	}
}

func TestConcurrentDuplicatesRunOnce(t *testing.T) {
	const n = 1000
	var runs atomic.Int64
	gate := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-gate
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"run":%d}`, runs.Add(1))
	})
	// Every duplicate may wait (TestWaiterLimits tests the limits).
	srv, m := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{MaxWaiters: -1, MaxWaitersPerKey: -1}, h)
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	var wg sync.WaitGroup
	replies := make([]idemtest.Reply, n)
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", srv.URL+"/v1/calls", strings.NewReader(`{"same":true}`))
			req.Header.Set("Idempotency-Key", "dup")
			req.Header.Set("Authorization", idemtest.DefaultCredential)
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			replies[i] = idemtest.Reply{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
		})
	}
	// Let the requests pile up on the claim, then let the handler go.
	for m.Stats().Requests < n/2 {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if runs.Load() != 1 {
		t.Fatalf("handler ran %d times; want 1", runs.Load())
	}
	first := replies[0]
	replayed := 0
	for i, r := range replies {
		if r.Status != 201 || r.Body != first.Body || r.Header.Get("X-Request-Id") != first.Header.Get("X-Request-Id") {
			t.Fatalf("idemtest.Reply %d: %d %q id %q; want %d %q id %q", i, r.Status, r.Body, r.Header.Get("X-Request-Id"),
				first.Status, first.Body, first.Header.Get("X-Request-Id"))
		}
		if r.Header.Get("Idempotency-Replay") == "true" {
			replayed++
		}
	}
	if replayed != n-1 {
		t.Fatalf("%d replays; want %d", replayed, n-1)
	}
}

func TestInProgressPolicies(t *testing.T) {
	t.Run("reject", func(t *testing.T) {
		h, started, release := blocked()
		srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{WhenInProgress: idemhttp.RejectInProgress, RetryAfter: 2 * time.Second}, h)
		done := make(chan idemtest.Reply)
		go func() { done <- idemtest.Do(t, "POST", srv.URL+"/x", "k", "a") }()
		<-started
		r := idemtest.Do(t, "POST", srv.URL+"/x", "k", "a")
		p := problemOf(t, r)
		if r.Status != 409 || p.Code != "idempotency_request_in_progress" || r.Header.Get("Retry-After") != "2" {
			t.Fatalf("got %d %+v Retry-After %q; want 409 in progress, Retry-After 2", r.Status, p, r.Header.Get("Retry-After"))
		}
		if p.Fields["request_in_progress"] == "" {
			t.Error("in-progress answer does not name the running request")
		}
		close(release)
		if first := <-done; first.Status != 201 {
			t.Fatalf("first: %d", first.Status)
		}
	})
	t.Run("wait timeout", func(t *testing.T) {
		h, started, release := blocked()
		srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{WaitTimeout: 50 * time.Millisecond}, h)
		done := make(chan idemtest.Reply)
		go func() { done <- idemtest.Do(t, "POST", srv.URL+"/x", "k", "a") }()
		<-started
		r := idemtest.Do(t, "POST", srv.URL+"/x", "k", "a")
		if p := problemOf(t, r); r.Status != 409 || p.Code != "idempotency_request_in_progress" || r.Header.Get("Retry-After") != "1" {
			t.Fatalf("got %d %+v; want 409 in progress with Retry-After 1", r.Status, p)
		}
		close(release)
		<-done
		if r := idemtest.Do(t, "POST", srv.URL+"/x", "k", "a"); r.Status != 201 || r.Header.Get("Idempotency-Replay") != "true" {
			t.Fatalf("after the first finished: %d replay=%q", r.Status, r.Header.Get("Idempotency-Replay"))
		}
	})
	t.Run("conflict while in flight", func(t *testing.T) {
		h, started, release := blocked()
		srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, h)
		done := make(chan idemtest.Reply)
		go func() { done <- idemtest.Do(t, "POST", srv.URL+"/x", "k", "a") }()
		<-started
		if r := idemtest.Do(t, "POST", srv.URL+"/x", "k", "DIFFERENT"); r.Status != 409 || problemOf(t, r).Code != "idempotency_conflict" {
			t.Fatalf("different body while in flight: %d %s", r.Status, r.Body)
		}
		close(release)
		<-done
	})
}

func TestWhatIsStored(t *testing.T) {
	for _, tc := range []struct {
		status int
		stored bool
	}{
		{200, true}, {201, true}, {204, true}, {400, true}, {404, true}, {422, true},
		{302, false}, {408, false}, {409, false}, {425, false}, {429, false},
		{500, false}, {502, false}, {503, false},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			var runs atomic.Int64
			srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", "/somewhere")
				w.WriteHeader(tc.status)
				if tc.status != 204 {
					fmt.Fprintf(w, "run %d", runs.Add(1))
				} else {
					runs.Add(1)
				}
			}))
			first := idemtest.Do(t, "POST", srv.URL+"/x", "k", "a")
			again := idemtest.Do(t, "POST", srv.URL+"/x", "k", "a")
			if first.Status != tc.status || again.Status != tc.status {
				t.Fatalf("statuses %d, %d; want %d", first.Status, again.Status, tc.status)
			}
			wantRuns := int64(2)
			if tc.stored {
				wantRuns = 1
				if again.Body != first.Body || again.Header.Get("Idempotency-Replay") != "true" {
					t.Fatalf("not replayed: %q then %q", first.Body, again.Body)
				}
			} else if again.Header.Get("Idempotency-Replay") != "false" {
				t.Fatalf("a %d was replayed", tc.status)
			}
			if runs.Load() != wantRuns {
				t.Fatalf("handler ran %d times; want %d", runs.Load(), wantRuns)
			}
		})
	}
}

func TestShouldStoreOption(t *testing.T) {
	var runs atomic.Int64
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{ShouldStore: func(s int) bool { return s < 600 }},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			runs.Add(1)
			w.WriteHeader(500)
		}))
	idemtest.Do(t, "POST", srv.URL+"/x", "k", "")
	if r := idemtest.Do(t, "POST", srv.URL+"/x", "k", ""); r.Status != 500 || r.Header.Get("Idempotency-Replay") != "true" || runs.Load() != 1 {
		t.Fatalf("a 500 with ShouldStore accepting it: replay=%q runs=%d", r.Header.Get("Idempotency-Replay"), runs.Load())
	}
}

func TestReleasedResponses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request, run int64)
	}{
		{"panic", func(w http.ResponseWriter, r *http.Request, run int64) {
			if run == 1 {
				panic("boom")
			}
			w.WriteHeader(201)
		}},
		{"abort handler", func(w http.ResponseWriter, r *http.Request, run int64) {
			if run == 1 {
				panic(http.ErrAbortHandler)
			}
			w.WriteHeader(201)
		}},
		{"flush", func(w http.ResponseWriter, r *http.Request, run int64) {
			w.WriteHeader(201)
			io.WriteString(w, "part 1;")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part 2")
		}},
		{"response controller flush", func(w http.ResponseWriter, r *http.Request, run int64) {
			io.WriteString(w, "streamed")
			if err := http.NewResponseController(w).Flush(); err != nil {
				panic(err)
			}
		}},
		{"hijack", func(w http.ResponseWriter, r *http.Request, run int64) {
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(err)
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
			brw.Flush()
		}},
		{"too large", func(w http.ResponseWriter, r *http.Request, run int64) {
			w.Write(bytes.Repeat([]byte("x"), 1000))
			w.Write(bytes.Repeat([]byte("y"), 1000))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var runs atomic.Int64
			srv, m := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{MaxResponseBody: 1500, Logger: idemtest.QuietLogger()},
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tc.handler(w, r, runs.Add(1)) }))
			srv.Config.ErrorLog = idemtest.QuietHTTPLog()
			call := func() (int, string) {
				req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader("a"))
				req.Header.Set("Idempotency-Key", "k")
				req.Header.Set("Authorization", idemtest.DefaultCredential)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return 0, err.Error()
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			call()
			status, body := call()
			if runs.Load() != 2 {
				t.Fatalf("handler ran %d times; want 2 (the claim must be released); second idemtest.Reply %d %q", runs.Load(), status, body)
			}
			if tc.name == "too large" && len(body) != 2000 {
				t.Fatalf("oversized response was cut: %d bytes", len(body))
			}
			if tc.name == "panic" || tc.name == "abort handler" {
				return
			}
			// A hijacked connection's client may read its idemtest.Reply before the
			// handler has returned and the claim is released: wait a little.
			for deadline := time.Now().Add(5 * time.Second); m.Stats().Released != 2; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("Released = %d; want 2", m.Stats().Released)
				}
			}
		})
	}
}

func TestRequestBodyLimit(t *testing.T) {
	c := idemtest.NewCounter()
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{MaxRequestBody: 100}, c)
	r := idemtest.Do(t, "POST", srv.URL+"/x", "k", strings.Repeat("a", 101))
	if p := problemOf(t, r); r.Status != 413 || p.Code != "request_body_too_large" {
		t.Fatalf("got %d %+v; want 413 request_body_too_large", r.Status, p)
	}
	// Nothing was recorded: the key is still fresh.
	if r := idemtest.Do(t, "POST", srv.URL+"/x", "k", strings.Repeat("a", 100)); r.Status != 201 || c.Count("k") != 1 {
		t.Fatalf("after a 413 the key was not fresh: %d, %d runs", r.Status, c.Count("k"))
	}
	// A chunked body (no Content-Length) is limited too.
	req, _ := http.NewRequest("POST", srv.URL+"/x", io.MultiReader(strings.NewReader(strings.Repeat("b", 300))))
	req.ContentLength = -1
	req.Header.Set("Idempotency-Key", "k2")
	req.Header.Set("Authorization", idemtest.DefaultCredential)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("chunked oversized body: %d; want 413", resp.StatusCode)
	}
}

func TestKeyErrors(t *testing.T) {
	c := idemtest.NewCounter()
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, c)
	for _, tc := range []struct {
		name  string
		hdr   []string
		code  string
		runs0 bool
	}{
		{"too long", []string{"Idempotency-Key", strings.Repeat("k", 256)}, "idempotency_key_invalid", true},
		{"not ascii", []string{"Idempotency-Key", "clé"}, "idempotency_key_invalid", true},
		{"bad quoting", []string{"Idempotency-Key", `"abc`}, "idempotency_key_invalid", true},
		{"aliases differ", []string{"Idempotency-Key", "a", "X-Idempotency-Key", "b"}, "idempotency_key_invalid", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := idemtest.Do(t, "POST", srv.URL+"/x", "", "", tc.hdr...)
			if p := problemOf(t, r); r.Status != 400 || p.Code != tc.code || p.Detail == "" {
				t.Fatalf("got %d %+v; want 400 %s with a detail", r.Status, p, tc.code)
			}
		})
	}
	if c.Total.Load() != 0 {
		t.Fatalf("handler ran %d times for malformed keys", c.Total.Load())
	}
	// The alias and the quoted form name the same key.
	first := idemtest.Do(t, "POST", srv.URL+"/x", "", "b", "X-Idempotency-Key", "same")
	again := idemtest.Do(t, "POST", srv.URL+"/x", "", "b", "Idempotency-Key", `"same"`)
	if again.Header.Get("Idempotency-Replay") != "true" || again.Body != first.Body {
		t.Fatal("X-Idempotency-Key: same and Idempotency-Key: \"same\" are not one key")
	}
}

func TestSelection(t *testing.T) {
	c := idemtest.NewCounter()
	mux := http.NewServeMux()
	mux.Handle("/", c)
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{
		RoutePattern: func(r *http.Request) string { return r.URL.Path },
		Routes: []idemhttp.Route{
			{Method: "POST", Pattern: "/v1/charges", RequireKey: true},
			{Method: "POST", Pattern: "/v1/refunds"},
		},
	}, mux)
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "", "x"); r.Status != 400 || problemOf(t, r).Code != "idempotency_key_missing" {
		t.Fatalf("required key missing: %d %s", r.Status, r.Body)
	}
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/refunds", "", "x"); r.Status != 201 || r.Header.Get("Idempotency-Replay") != "" {
		t.Fatalf("optional key missing: %d, Idempotency-Replay %q; want a plain pass-through", r.Status, r.Header.Get("Idempotency-Replay"))
	}
	// A route not on the list passes through even with a key.
	idemtest.Do(t, "POST", srv.URL+"/v1/other", "k", "x")
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/other", "k", "x"); r.Header.Get("Idempotency-Replay") != "" || c.Count("k") != 2 {
		t.Fatal("an unlisted route was handled")
	}
	// GET is never selected by default.
	srv2, _ := newServer(t, idemtest.NewEngine(t, nil), nil, c)
	idemtest.Do(t, "GET", srv2.URL+"/x", "g", "")
	if idemtest.Do(t, "GET", srv2.URL+"/x", "g", "").Header.Get("Idempotency-Replay") != "" || c.Count("g") != 2 {
		t.Fatal("a GET with a key was handled")
	}
}

func TestRequireKeyByMethod(t *testing.T) {
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{RequireKey: true}, idemtest.NewCounter())
	if r := idemtest.Do(t, "PUT", srv.URL+"/x", "", ""); r.Status != 400 {
		t.Fatalf("PUT without a key: %d; want 400", r.Status)
	}
}

func TestCanonicalJSON(t *testing.T) {
	for _, canon := range []bool{false, true} {
		t.Run(fmt.Sprint("canonical=", canon), func(t *testing.T) {
			c := idemtest.NewCounter()
			srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{CanonicalJSON: canon}, c)
			idemtest.Do(t, "POST", srv.URL+"/x", "k", `{"a":1,"b":[1,2]}`)
			r := idemtest.Do(t, "POST", srv.URL+"/x", "k", "{ \"b\": [1, 2],\n \"a\": 1 }")
			want := 409
			if canon {
				want = 201
			}
			if r.Status != want {
				t.Fatalf("reordered JSON: %d; want %d", r.Status, want)
			}
			if r := idemtest.Do(t, "POST", srv.URL+"/x", "k", `{"a":1,"b":[2,1]}`); r.Status != 409 {
				t.Fatalf("different JSON: %d; want 409", r.Status)
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	clock := expiry.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := idemtest.NewCounter()
	srv, _ := newServer(t, idemtest.NewEngine(t, &engine.Options{Clock: clock, TTL: time.Hour}), nil, c)
	idemtest.Do(t, "POST", srv.URL+"/x", "k", "a")
	clock.Advance(59 * time.Minute)
	if r := idemtest.Do(t, "POST", srv.URL+"/x", "k", "a"); r.Header.Get("Idempotency-Replay") != "true" {
		t.Fatal("not replayed within the TTL")
	}
	clock.Advance(2 * time.Minute)
	if r := idemtest.Do(t, "POST", srv.URL+"/x", "k", "DIFFERENT"); r.Status != 201 || r.Header.Get("Idempotency-Replay") != "false" {
		t.Fatalf("after the TTL the key is not fresh: %d", r.Status)
	}
	if c.Count("k") != 2 {
		t.Fatalf("handler ran %d times; want 2", c.Count("k"))
	}
}

func TestStoreFailure(t *testing.T) {
	c := idemtest.NewCounter()
	eng := idemtest.NewEngine(t, nil)
	srv, m := newServer(t, eng, &idemhttp.Options{Logger: idemtest.QuietLogger()}, c)
	eng.Close()
	r := idemtest.Do(t, "POST", srv.URL+"/x", "k", "a")
	if p := problemOf(t, r); r.Status != 503 || p.Code != "idempotency_store_unavailable" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("closed store: %d %+v Retry-After %q; want 503 with Retry-After", r.Status, p, r.Header.Get("Retry-After"))
	}
	if c.Total.Load() != 0 {
		t.Fatal("the handler ran without protection")
	}
	if m.Stats().StoreErrors != 1 {
		t.Fatalf("StoreErrors = %d", m.Stats().StoreErrors)
	}
}

func TestRestartBetweenRequestAndRetry(t *testing.T) {
	dir := t.TempDir()
	c := idemtest.NewCounter()
	eng, err := engine.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := newServer(t, eng, nil, c)
	first := idemtest.Do(t, "POST", srv.URL+"/v1/calls", "k", "body", "Authorization", "Bearer secret-credential-123")
	srv.Close()
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}

	eng2, err := engine.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer eng2.Close()
	srv2, _ := newServer(t, eng2, nil, c)
	again := idemtest.Do(t, "POST", srv2.URL+"/v1/calls", "k", "body", "Authorization", "Bearer secret-credential-123")
	if again.Status != first.Status || again.Body != first.Body || again.Header.Get("Idempotency-Replay") != "true" {
		t.Fatalf("after a restart: %d %q; want the replay of %d %q", again.Status, again.Body, first.Status, first.Body)
	}
	if c.Count("k") != 1 {
		t.Fatalf("handler ran %d times", c.Count("k"))
	}
	// The raw credential is stored nowhere in the data directory.
	srv2.Close()
	eng2.Close()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("secret-credential-123")) {
			t.Errorf("%s contains the raw credential", filepath.Base(p))
		}
		return nil
	})
}

func TestClientDisconnectStillRecords(t *testing.T) {
	var runs atomic.Int64
	release := make(chan struct{})
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		<-release
		w.WriteHeader(201)
		io.WriteString(w, "created")
	}))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/x", strings.NewReader("a"))
	req.Header.Set("Idempotency-Key", "k")
	req.Header.Set("Authorization", idemtest.DefaultCredential)
	errc := make(chan error)
	go func() {
		_, err := http.DefaultClient.Do(req)
		errc <- err
	}()
	for runs.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v", err)
	}
	close(release)
	// The retry waits for the abandoned request, then replays it.
	r := idemtest.Do(t, "POST", srv.URL+"/x", "k", "a")
	if r.Status != 201 || r.Body != "created" || r.Header.Get("Idempotency-Replay") != "true" || runs.Load() != 1 {
		t.Fatalf("retry after a disconnect: %d %q replay=%q runs=%d", r.Status, r.Body, r.Header.Get("Idempotency-Replay"), runs.Load())
	}
}

func TestSniffedContentTypeIsRecorded(t *testing.T) {
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html><body>hi</body></html>")
	}))
	first := idemtest.Do(t, "POST", srv.URL+"/x", "k", "")
	again := idemtest.Do(t, "POST", srv.URL+"/x", "k", "")
	if ct := again.Header.Get("Content-Type"); ct != first.Header.Get("Content-Type") || !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("Content-Type %q then %q", first.Header.Get("Content-Type"), ct)
	}
}

func TestOmitIdempotentReplayed(t *testing.T) {
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{OmitIdempotentReplayed: true}, idemtest.NewCounter())
	idemtest.Do(t, "POST", srv.URL+"/x", "k", "")
	r := idemtest.Do(t, "POST", srv.URL+"/x", "k", "")
	if r.Header.Get("Idempotency-Replay") != "true" || r.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("Idempotency-Replay %q, Idempotent-Replayed %q", r.Header.Get("Idempotency-Replay"), r.Header.Get("Idempotent-Replayed"))
	}
}

func TestMuxPattern(t *testing.T) {
	c := idemtest.NewCounter()
	mux := http.NewServeMux()
	mux.Handle("POST /v1/calls/{id}", c)
	eng := idemtest.NewEngine(t, nil)
	srv, _ := newServer(t, eng, &idemhttp.Options{RoutePattern: idemhttp.MuxPattern(mux)}, mux)
	idemtest.Do(t, "POST", srv.URL+"/v1/calls/7", "k", "")
	var endpoints []string
	eng.Scan(context.Background(), engine.ScanOptions{}, func(e engine.Entry) error {
		endpoints = append(endpoints, e.Key.Endpoint)
		return nil
	})
	if len(endpoints) != 1 || endpoints[0] != "POST /v1/calls/{id}" {
		t.Fatalf("endpoints %q; want [POST /v1/calls/{id}]", endpoints)
	}
}

func TestMetricsHandler(t *testing.T) {
	eng := idemtest.NewEngine(t, nil)
	srv, m := newServer(t, eng, nil, idemtest.NewCounter())
	idemtest.Do(t, "POST", srv.URL+"/x", "k", "")
	idemtest.Do(t, "POST", srv.URL+"/x", "k", "")
	rec := httptest.NewRecorder()
	idemhttp.MetricsHandler(m).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := rec.Body.String()
	for _, want := range []string{
		"idemkv_http_proceeded_total 1\n", "idemkv_http_replayed_total 1\n",
		`idemkv_http_request_duration_seconds_count{outcome="replay"} 1`, "idemkv_store_completes_total 1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestKeyListRefusedAndHandlerNotRun: "Idempotency-Key: d1, d2" is two
// keys in HTTP's terms (a list, like the header sent twice); it is
// refused with 400 before the handler runs, never taken as one key.
func TestKeyListRefusedAndHandlerNotRun(t *testing.T) {
	c := idemtest.NewCounter()
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, c)
	for _, v := range []string{"d1, d2", "d1,d2", `"d1", "d2"`, "d1,"} {
		r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", v, `{"amount":100}`)
		if r.Status != http.StatusBadRequest {
			t.Fatalf("key %q: status %d; want 400", v, r.Status)
		}
		if p := problemOf(t, r); p.Code != idemhttp.CodeKeyInvalid || !strings.Contains(p.Detail, "list") {
			t.Fatalf("key %q: problem %+v; want %s saying it is a list", v, p, idemhttp.CodeKeyInvalid)
		}
	}
	if n := c.Total.Load(); n != 0 {
		t.Fatalf("handler ran %d times; want 0", n)
	}
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", `"d1,d2"`, `{"amount":100}`); r.Status != http.StatusCreated {
		t.Fatalf("a quoted key with a comma: status %d; want 201", r.Status)
	}
}

// TestContentTypeIsPartOfTheRequest: the same bytes sent as another media
// type are another request (409, the handler not run again); the same
// type spelled otherwise is the same request (a replay).
func TestContentTypeIsPartOfTheRequest(t *testing.T) {
	c := idemtest.NewCounter()
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, c)
	body := `{"amount":100}`
	first := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "ct", body, "Content-Type", "application/json; charset=utf-8")
	if first.Status != http.StatusCreated {
		t.Fatalf("first: %d", first.Status)
	}
	for _, ct := range []string{"application/json;charset=UTF-8", " Application/JSON; charset=\"utf-8\""} {
		r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "ct", body, "Content-Type", ct)
		if r.Status != http.StatusCreated || r.Header.Get("Idempotency-Replay") != "true" || r.Body != first.Body {
			t.Fatalf("Content-Type %q: %d replay=%q; want the replay of the first", ct, r.Status, r.Header.Get("Idempotency-Replay"))
		}
	}
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", ""} {
		r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "ct", body, "Content-Type", ct)
		if p := problemOf(t, r); r.Status != http.StatusConflict || p.Code != idemhttp.CodeConflict {
			t.Fatalf("Content-Type %q: %d %+v; want 409 %s", ct, r.Status, p, idemhttp.CodeConflict)
		}
	}
	if n := c.Total.Load(); n != 1 {
		t.Fatalf("handler ran %d times; want 1", n)
	}
}

// TestRecordsStoredBeforeContentTypeStillReplay: a record stored by a
// version whose fingerprint did not hash the media type is replayed to a
// retry of the same request (for its TTL after an upgrade), not refused as
// a conflict; a different body still conflicts.
func TestRecordsStoredBeforeContentTypeStillReplay(t *testing.T) {
	e := idemtest.NewEngine(t, nil)
	c := idemtest.NewCounter()
	srv, _ := newServer(t, e, nil, c)
	body := `{"amount":100}`
	// The record as the previous version stored it.
	h := record.NewHasher()
	h.FieldString("POST")
	h.FieldString("POST /v1/charges")
	h.FieldString("/v1/charges")
	h.FieldString("raw")
	h.Write([]byte(body))
	key := record.Key{Scope: idemhttp.CredentialScope(e.Scoper(), "Bearer old"), Endpoint: "POST /v1/charges", Key: "before"}
	res, err := e.Begin(context.Background(), engine.Request{Key: key, Fingerprint: h.Sum(), RequestID: "req-old"})
	if err != nil || res.Outcome != engine.Proceed {
		t.Fatalf("Begin: %v, %v", res.Outcome, err)
	}
	if err := res.Claim.Complete(context.Background(), engine.Response{Status: 201, Body: []byte(`{"id":"ch_old"}`)}); err != nil {
		t.Fatal(err)
	}
	r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "before", body, "Authorization", "Bearer old", "Content-Type", "application/json")
	if r.Status != 201 || r.Body != `{"id":"ch_old"}` || r.Header.Get("Idempotency-Replay") != "true" {
		t.Fatalf("retry of a request stored before the upgrade: %d %q replay=%q; want the stored response",
			r.Status, r.Body, r.Header.Get("Idempotency-Replay"))
	}
	r = idemtest.Do(t, "POST", srv.URL+"/v1/charges", "before", `{"amount":999}`, "Authorization", "Bearer old")
	if r.Status != http.StatusConflict {
		t.Fatalf("another body for that key: %d; want 409", r.Status)
	}
	if n := c.Total.Load(); n != 0 {
		t.Fatalf("handler ran %d times; want 0", n)
	}
}

// TestAnonymousPolicies: a request with a key but no credential to scope
// it is refused by default (400 idempotency_scope_missing, handler not
// run: otherwise every such client would share one scope, and bob sending
// alice's key would get alice's response); PassAnonymous runs it
// unprotected; ShareAnonymous keeps one shared scope and warns at New.
func TestAnonymousPolicies(t *testing.T) {
	t.Run("refuse by default", func(t *testing.T) {
		c := idemtest.NewCounter()
		srv, m := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{}, c)
		r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{}`, "Authorization", "")
		if p := problemOf(t, r); r.Status != http.StatusBadRequest || p.Code != idemhttp.CodeScopeMissing {
			t.Fatalf("anonymous keyed request: %d %+v; want 400 %s", r.Status, p, idemhttp.CodeScopeMissing)
		}
		if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "", `{}`, "Authorization", ""); r.Status != http.StatusCreated {
			t.Fatalf("anonymous request without a key: %d; want it passed through", r.Status)
		}
		if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{}`, "Authorization", "Bearer a"); r.Status != http.StatusCreated {
			t.Fatalf("scoped keyed request: %d", r.Status)
		}
		if n, s := c.Count("k"), m.Stats(); n != 1 || s.AnonymousRefused != 1 {
			t.Fatalf("handler ran %d times for k, AnonymousRefused %d; want 1, 1", n, s.AnonymousRefused)
		}
	})
	t.Run("pass", func(t *testing.T) {
		c := idemtest.NewCounter()
		srv, m := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{Anonymous: idemhttp.PassAnonymous}, c)
		for range 2 {
			if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{}`, "Authorization", ""); r.Status != http.StatusCreated || r.Header.Get("Idempotency-Replay") != "" {
				t.Fatalf("anonymous keyed request under PassAnonymous: %d replay=%q", r.Status, r.Header.Get("Idempotency-Replay"))
			}
		}
		if n, s := c.Count("k"), m.Stats(); n != 2 || s.AnonymousPassed != 2 {
			t.Fatalf("handler ran %d times, AnonymousPassed %d; want 2, 2", n, s.AnonymousPassed)
		}
	})
	t.Run("shared", func(t *testing.T) {
		var log bytes.Buffer
		c := idemtest.NewCounter()
		srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{
			Anonymous: idemhttp.ShareAnonymous, Logger: slog.New(slog.NewTextHandler(&log, nil))}, c)
		if !strings.Contains(log.String(), "share one anonymous scope") {
			t.Fatalf("no warning at New: %q", log.String())
		}
		alice := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{}`, "Authorization", "")
		bob := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{}`, "Authorization", "")
		if bob.Header.Get("Idempotency-Replay") != "true" || bob.Body != alice.Body || c.Count("k") != 1 {
			t.Fatalf("ShareAnonymous: bob got %d %q; want alice's replay", bob.Status, bob.Body)
		}
	})
}

// TestCookieScope: APIs with cookie sessions scope keys by the session:
// two sessions with the same key and body are two requests; a session's
// retry replays its own response; no cookie is anonymous (refused).
func TestCookieScope(t *testing.T) {
	c := idemtest.NewCounter()
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{ScopeCookie: "sid"}, c)
	alice := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{}`, "Cookie", "sid=alice; theme=dark")
	bob := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{}`, "Cookie", "theme=dark; sid=bob")
	again := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{}`, "Cookie", "sid=alice")
	if alice.Status != 201 || bob.Status != 201 || bob.Header.Get("Idempotency-Replay") == "true" || bob.Body == alice.Body {
		t.Fatalf("two sessions, one key: alice %d %q, bob %d %q; want two first requests", alice.Status, alice.Body, bob.Status, bob.Body)
	}
	if again.Header.Get("Idempotency-Replay") != "true" || again.Body != alice.Body {
		t.Fatalf("alice's retry: %d %q; want her replay", again.Status, again.Body)
	}
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{}`, "Cookie", "theme=dark"); r.Status != http.StatusBadRequest {
		t.Fatalf("no session cookie: %d; want 400", r.Status)
	}
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{}`, "Cookie", "sid=alice; sid=bob"); r.Status != http.StatusBadRequest {
		t.Fatalf("two sessions in one request: %d; want 400", r.Status)
	}
	if n := c.Count("k"); n != 2 {
		t.Fatalf("handler ran %d times; want 2", n)
	}
}
