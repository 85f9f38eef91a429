package idemhttp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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
	"github.com/idemkv/idemkv/expiry"
)

func TestFirstRequestAndReplay(t *testing.T) {
	c := newCounter()
	srv, _ := newServer(t, newEngine(t, nil), nil, c)

	first := do(t, "POST", srv.URL+"/v1/calls", "k1", `{"to":"+1555"}`, "Authorization", "Bearer sk_1")
	if first.status != 201 {
		t.Fatalf("first: status %d: %s", first.status, first.body)
	}
	if got := first.header.Get("Idempotency-Replay"); got != "false" {
		t.Errorf("first: Idempotency-Replay = %q; want false", got)
	}
	id := first.header.Get("X-Request-Id")
	if !strings.HasPrefix(id, "req_") || len(id) != 28 {
		t.Errorf("first: X-Request-Id = %q; want req_ and 24 hex digits", id)
	}
	if first.header.Get("Set-Cookie") == "" {
		t.Error("first response lost the handler's Set-Cookie")
	}

	for i := range 3 {
		again := do(t, "POST", srv.URL+"/v1/calls", "k1", `{"to":"+1555"}`, "Authorization", "Bearer sk_1")
		if again.status != first.status || again.body != first.body {
			t.Fatalf("replay %d: %d %q; want %d %q", i, again.status, again.body, first.status, first.body)
		}
		for _, h := range []string{"Content-Type", "Location", "Etag", "X-Request-Id"} {
			if got, want := again.header.Get(h), first.header.Get(h); got != want {
				t.Errorf("replay %s = %q; want %q", h, got, want)
			}
		}
		for _, h := range []string{"Set-Cookie", "X-Not-Stored"} {
			if got := again.header.Get(h); got != "" {
				t.Errorf("replay carries %s: %q", h, got)
			}
		}
		if again.header.Get("Idempotency-Replay") != "true" || again.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("replay headers: Idempotency-Replay %q, Idempotent-Replayed %q",
				again.header.Get("Idempotency-Replay"), again.header.Get("Idempotent-Replayed"))
		}
	}
	if n := c.count("k1"); n != 1 {
		t.Errorf("handler ran %d times; want 1", n)
	}
}

func TestHandlerRequestIDIsKept(t *testing.T) {
	srv, _ := newServer(t, newEngine(t, nil), nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "mine-42")
		w.WriteHeader(201)
	}))
	first := do(t, "POST", srv.URL+"/x", "k", "a")
	if got := first.header.Get("X-Request-Id"); got != "mine-42" {
		t.Fatalf("X-Request-Id = %q; want the handler's mine-42", got)
	}
	p := problemOf(t, do(t, "POST", srv.URL+"/x", "k", "b"))
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
			c := newCounter()
			srv, _ := newServer(t, newEngine(t, nil), &idemhttp.Options{ConflictStatus: tc.status}, c)
			first := do(t, "POST", srv.URL+"/v1/calls", "k", `{"a":1}`)
			r := do(t, "POST", srv.URL+"/v1/calls", "k", `{"a":2}`)
			want := tc.status
			if want == 0 {
				want = 409
			}
			if r.status != want {
				t.Fatalf("status %d; want %d", r.status, want)
			}
			p := problemOf(t, r)
			if p.Code != "idempotency_conflict" || p.Fields["conflicts_with"] != first.header.Get("X-Request-Id") {
				t.Fatalf("problem %+v; want idempotency_conflict with conflicts_with %q", p, first.header.Get("X-Request-Id"))
			}
			if c.count("k") != 1 {
				t.Fatalf("handler ran %d times", c.count("k"))
			}
		})
	}
}

func TestScopesAndEndpoints(t *testing.T) {
	c := newCounter()
	mux := http.NewServeMux()
	eng := newEngine(t, nil)
	m, err := idemhttp.New(eng, nil)
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("POST /v1/calls", m.Handler(c))
	mux.Handle("POST /v1/agents", m.Handler(c))
	mux.Handle("POST /v1/calls/{id}/hangup", m.Handler(c))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	a := do(t, "POST", srv.URL+"/v1/calls", "k", "x", "Authorization", "Bearer A")
	b := do(t, "POST", srv.URL+"/v1/calls", "k", "x", "Authorization", "Bearer B")
	anon := do(t, "POST", srv.URL+"/v1/calls", "k", "x")
	other := do(t, "POST", srv.URL+"/v1/agents", "k", "x", "Authorization", "Bearer A")
	ids := map[string]bool{}
	for _, r := range []reply{a, b, anon, other} {
		if r.status != 201 || r.header.Get("Idempotency-Replay") != "false" {
			t.Fatalf("want four first requests; got %d replay=%s", r.status, r.header.Get("Idempotency-Replay"))
		}
		ids[r.body] = true
	}
	if len(ids) != 4 || c.count("k") != 4 {
		t.Fatalf("tenants or endpoints shared a record: %d distinct bodies, %d runs", len(ids), c.count("k"))
	}
	if r := do(t, "POST", srv.URL+"/v1/calls", "k", "x"); r.body != anon.body {
		t.Fatal("anonymous retry did not replay the anonymous record")
	}
	// One route, two resources: the same key is a conflict, never the
	// other resource's response.
	h1 := do(t, "POST", srv.URL+"/v1/calls/1/hangup", "h", "")
	h2 := do(t, "POST", srv.URL+"/v1/calls/2/hangup", "h", "")
	if h1.status != 201 || h2.status != 409 {
		t.Fatalf("same key on two resources of one route: %d then %d; want 201, 409", h1.status, h2.status)
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
	srv, m := newServer(t, newEngine(t, nil), nil, h)
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	var wg sync.WaitGroup
	replies := make([]reply, n)
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", srv.URL+"/v1/calls", strings.NewReader(`{"same":true}`))
			req.Header.Set("Idempotency-Key", "dup")
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			replies[i] = reply{resp.StatusCode, resp.Header, string(b)}
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
		if r.status != 201 || r.body != first.body || r.header.Get("X-Request-Id") != first.header.Get("X-Request-Id") {
			t.Fatalf("reply %d: %d %q id %q; want %d %q id %q", i, r.status, r.body, r.header.Get("X-Request-Id"),
				first.status, first.body, first.header.Get("X-Request-Id"))
		}
		if r.header.Get("Idempotency-Replay") == "true" {
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
		srv, _ := newServer(t, newEngine(t, nil), &idemhttp.Options{WhenInProgress: idemhttp.RejectInProgress, RetryAfter: 2 * time.Second}, h)
		done := make(chan reply)
		go func() { done <- do(t, "POST", srv.URL+"/x", "k", "a") }()
		<-started
		r := do(t, "POST", srv.URL+"/x", "k", "a")
		p := problemOf(t, r)
		if r.status != 409 || p.Code != "idempotency_request_in_progress" || r.header.Get("Retry-After") != "2" {
			t.Fatalf("got %d %+v Retry-After %q; want 409 in progress, Retry-After 2", r.status, p, r.header.Get("Retry-After"))
		}
		if p.Fields["request_in_progress"] == "" {
			t.Error("in-progress answer does not name the running request")
		}
		close(release)
		if first := <-done; first.status != 201 {
			t.Fatalf("first: %d", first.status)
		}
	})
	t.Run("wait timeout", func(t *testing.T) {
		h, started, release := blocked()
		srv, _ := newServer(t, newEngine(t, nil), &idemhttp.Options{WaitTimeout: 50 * time.Millisecond}, h)
		done := make(chan reply)
		go func() { done <- do(t, "POST", srv.URL+"/x", "k", "a") }()
		<-started
		r := do(t, "POST", srv.URL+"/x", "k", "a")
		if p := problemOf(t, r); r.status != 409 || p.Code != "idempotency_request_in_progress" || r.header.Get("Retry-After") != "1" {
			t.Fatalf("got %d %+v; want 409 in progress with Retry-After 1", r.status, p)
		}
		close(release)
		<-done
		if r := do(t, "POST", srv.URL+"/x", "k", "a"); r.status != 201 || r.header.Get("Idempotency-Replay") != "true" {
			t.Fatalf("after the first finished: %d replay=%q", r.status, r.header.Get("Idempotency-Replay"))
		}
	})
	t.Run("conflict while in flight", func(t *testing.T) {
		h, started, release := blocked()
		srv, _ := newServer(t, newEngine(t, nil), nil, h)
		done := make(chan reply)
		go func() { done <- do(t, "POST", srv.URL+"/x", "k", "a") }()
		<-started
		if r := do(t, "POST", srv.URL+"/x", "k", "DIFFERENT"); r.status != 409 || problemOf(t, r).Code != "idempotency_conflict" {
			t.Fatalf("different body while in flight: %d %s", r.status, r.body)
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
			srv, _ := newServer(t, newEngine(t, nil), nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", "/somewhere")
				w.WriteHeader(tc.status)
				if tc.status != 204 {
					fmt.Fprintf(w, "run %d", runs.Add(1))
				} else {
					runs.Add(1)
				}
			}))
			first := do(t, "POST", srv.URL+"/x", "k", "a")
			again := do(t, "POST", srv.URL+"/x", "k", "a")
			if first.status != tc.status || again.status != tc.status {
				t.Fatalf("statuses %d, %d; want %d", first.status, again.status, tc.status)
			}
			wantRuns := int64(2)
			if tc.stored {
				wantRuns = 1
				if again.body != first.body || again.header.Get("Idempotency-Replay") != "true" {
					t.Fatalf("not replayed: %q then %q", first.body, again.body)
				}
			} else if again.header.Get("Idempotency-Replay") != "false" {
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
	srv, _ := newServer(t, newEngine(t, nil), &idemhttp.Options{ShouldStore: func(s int) bool { return s < 600 }},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			runs.Add(1)
			w.WriteHeader(500)
		}))
	do(t, "POST", srv.URL+"/x", "k", "")
	if r := do(t, "POST", srv.URL+"/x", "k", ""); r.status != 500 || r.header.Get("Idempotency-Replay") != "true" || runs.Load() != 1 {
		t.Fatalf("a 500 with ShouldStore accepting it: replay=%q runs=%d", r.header.Get("Idempotency-Replay"), runs.Load())
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
			srv, m := newServer(t, newEngine(t, nil), &idemhttp.Options{MaxResponseBody: 1500, Logger: quietLogger()},
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tc.handler(w, r, runs.Add(1)) }))
			srv.Config.ErrorLog = quietHTTPLog()
			call := func() (int, string) {
				req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader("a"))
				req.Header.Set("Idempotency-Key", "k")
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
				t.Fatalf("handler ran %d times; want 2 (the claim must be released); second reply %d %q", runs.Load(), status, body)
			}
			if tc.name == "too large" && len(body) != 2000 {
				t.Fatalf("oversized response was cut: %d bytes", len(body))
			}
			if tc.name == "panic" || tc.name == "abort handler" {
				return
			}
			// A hijacked connection's client may read its reply before the
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
	c := newCounter()
	srv, _ := newServer(t, newEngine(t, nil), &idemhttp.Options{MaxRequestBody: 100}, c)
	r := do(t, "POST", srv.URL+"/x", "k", strings.Repeat("a", 101))
	if p := problemOf(t, r); r.status != 413 || p.Code != "request_body_too_large" {
		t.Fatalf("got %d %+v; want 413 request_body_too_large", r.status, p)
	}
	// Nothing was recorded: the key is still fresh.
	if r := do(t, "POST", srv.URL+"/x", "k", strings.Repeat("a", 100)); r.status != 201 || c.count("k") != 1 {
		t.Fatalf("after a 413 the key was not fresh: %d, %d runs", r.status, c.count("k"))
	}
	// A chunked body (no Content-Length) is limited too.
	req, _ := http.NewRequest("POST", srv.URL+"/x", io.MultiReader(strings.NewReader(strings.Repeat("b", 300))))
	req.ContentLength = -1
	req.Header.Set("Idempotency-Key", "k2")
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
	c := newCounter()
	srv, _ := newServer(t, newEngine(t, nil), nil, c)
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
			r := do(t, "POST", srv.URL+"/x", "", "", tc.hdr...)
			if p := problemOf(t, r); r.status != 400 || p.Code != tc.code || p.Detail == "" {
				t.Fatalf("got %d %+v; want 400 %s with a detail", r.status, p, tc.code)
			}
		})
	}
	if c.total.Load() != 0 {
		t.Fatalf("handler ran %d times for malformed keys", c.total.Load())
	}
	// The alias and the quoted form name the same key.
	first := do(t, "POST", srv.URL+"/x", "", "b", "X-Idempotency-Key", "same")
	again := do(t, "POST", srv.URL+"/x", "", "b", "Idempotency-Key", `"same"`)
	if again.header.Get("Idempotency-Replay") != "true" || again.body != first.body {
		t.Fatal("X-Idempotency-Key: same and Idempotency-Key: \"same\" are not one key")
	}
}

func TestSelection(t *testing.T) {
	c := newCounter()
	mux := http.NewServeMux()
	mux.Handle("/", c)
	srv, _ := newServer(t, newEngine(t, nil), &idemhttp.Options{
		RoutePattern: func(r *http.Request) string { return r.URL.Path },
		Routes: []idemhttp.Route{
			{Method: "POST", Pattern: "/v1/charges", RequireKey: true},
			{Method: "POST", Pattern: "/v1/refunds"},
		},
	}, mux)
	if r := do(t, "POST", srv.URL+"/v1/charges", "", "x"); r.status != 400 || problemOf(t, r).Code != "idempotency_key_missing" {
		t.Fatalf("required key missing: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", srv.URL+"/v1/refunds", "", "x"); r.status != 201 || r.header.Get("Idempotency-Replay") != "" {
		t.Fatalf("optional key missing: %d, Idempotency-Replay %q; want a plain pass-through", r.status, r.header.Get("Idempotency-Replay"))
	}
	// A route not on the list passes through even with a key.
	do(t, "POST", srv.URL+"/v1/other", "k", "x")
	if r := do(t, "POST", srv.URL+"/v1/other", "k", "x"); r.header.Get("Idempotency-Replay") != "" || c.count("k") != 2 {
		t.Fatal("an unlisted route was handled")
	}
	// GET is never selected by default.
	srv2, _ := newServer(t, newEngine(t, nil), nil, c)
	do(t, "GET", srv2.URL+"/x", "g", "")
	if do(t, "GET", srv2.URL+"/x", "g", "").header.Get("Idempotency-Replay") != "" || c.count("g") != 2 {
		t.Fatal("a GET with a key was handled")
	}
}

func TestRequireKeyByMethod(t *testing.T) {
	srv, _ := newServer(t, newEngine(t, nil), &idemhttp.Options{RequireKey: true}, newCounter())
	if r := do(t, "PUT", srv.URL+"/x", "", ""); r.status != 400 {
		t.Fatalf("PUT without a key: %d; want 400", r.status)
	}
}

func TestCanonicalJSON(t *testing.T) {
	for _, canon := range []bool{false, true} {
		t.Run(fmt.Sprint("canonical=", canon), func(t *testing.T) {
			c := newCounter()
			srv, _ := newServer(t, newEngine(t, nil), &idemhttp.Options{CanonicalJSON: canon}, c)
			do(t, "POST", srv.URL+"/x", "k", `{"a":1,"b":[1,2]}`)
			r := do(t, "POST", srv.URL+"/x", "k", "{ \"b\": [1, 2],\n \"a\": 1 }")
			want := 409
			if canon {
				want = 201
			}
			if r.status != want {
				t.Fatalf("reordered JSON: %d; want %d", r.status, want)
			}
			if r := do(t, "POST", srv.URL+"/x", "k", `{"a":1,"b":[2,1]}`); r.status != 409 {
				t.Fatalf("different JSON: %d; want 409", r.status)
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	clock := expiry.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := newCounter()
	srv, _ := newServer(t, newEngine(t, &engine.Options{Clock: clock, TTL: time.Hour}), nil, c)
	do(t, "POST", srv.URL+"/x", "k", "a")
	clock.Advance(59 * time.Minute)
	if r := do(t, "POST", srv.URL+"/x", "k", "a"); r.header.Get("Idempotency-Replay") != "true" {
		t.Fatal("not replayed within the TTL")
	}
	clock.Advance(2 * time.Minute)
	if r := do(t, "POST", srv.URL+"/x", "k", "DIFFERENT"); r.status != 201 || r.header.Get("Idempotency-Replay") != "false" {
		t.Fatalf("after the TTL the key is not fresh: %d", r.status)
	}
	if c.count("k") != 2 {
		t.Fatalf("handler ran %d times; want 2", c.count("k"))
	}
}

func TestStoreFailure(t *testing.T) {
	c := newCounter()
	eng := newEngine(t, nil)
	srv, m := newServer(t, eng, &idemhttp.Options{Logger: quietLogger()}, c)
	eng.Close()
	r := do(t, "POST", srv.URL+"/x", "k", "a")
	if p := problemOf(t, r); r.status != 503 || p.Code != "idempotency_store_unavailable" || r.header.Get("Retry-After") == "" {
		t.Fatalf("closed store: %d %+v Retry-After %q; want 503 with Retry-After", r.status, p, r.header.Get("Retry-After"))
	}
	if c.total.Load() != 0 {
		t.Fatal("the handler ran without protection")
	}
	if m.Stats().StoreErrors != 1 {
		t.Fatalf("StoreErrors = %d", m.Stats().StoreErrors)
	}
}

func TestRestartBetweenRequestAndRetry(t *testing.T) {
	dir := t.TempDir()
	c := newCounter()
	eng, err := engine.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := newServer(t, eng, nil, c)
	first := do(t, "POST", srv.URL+"/v1/calls", "k", "body", "Authorization", "Bearer secret-credential-123")
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
	again := do(t, "POST", srv2.URL+"/v1/calls", "k", "body", "Authorization", "Bearer secret-credential-123")
	if again.status != first.status || again.body != first.body || again.header.Get("Idempotency-Replay") != "true" {
		t.Fatalf("after a restart: %d %q; want the replay of %d %q", again.status, again.body, first.status, first.body)
	}
	if c.count("k") != 1 {
		t.Fatalf("handler ran %d times", c.count("k"))
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
	srv, _ := newServer(t, newEngine(t, nil), nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		<-release
		w.WriteHeader(201)
		io.WriteString(w, "created")
	}))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/x", strings.NewReader("a"))
	req.Header.Set("Idempotency-Key", "k")
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
	r := do(t, "POST", srv.URL+"/x", "k", "a")
	if r.status != 201 || r.body != "created" || r.header.Get("Idempotency-Replay") != "true" || runs.Load() != 1 {
		t.Fatalf("retry after a disconnect: %d %q replay=%q runs=%d", r.status, r.body, r.header.Get("Idempotency-Replay"), runs.Load())
	}
}

func TestSniffedContentTypeIsRecorded(t *testing.T) {
	srv, _ := newServer(t, newEngine(t, nil), nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html><body>hi</body></html>")
	}))
	first := do(t, "POST", srv.URL+"/x", "k", "")
	again := do(t, "POST", srv.URL+"/x", "k", "")
	if ct := again.header.Get("Content-Type"); ct != first.header.Get("Content-Type") || !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("Content-Type %q then %q", first.header.Get("Content-Type"), ct)
	}
}

func TestOmitIdempotentReplayed(t *testing.T) {
	srv, _ := newServer(t, newEngine(t, nil), &idemhttp.Options{OmitIdempotentReplayed: true}, newCounter())
	do(t, "POST", srv.URL+"/x", "k", "")
	r := do(t, "POST", srv.URL+"/x", "k", "")
	if r.header.Get("Idempotency-Replay") != "true" || r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("Idempotency-Replay %q, Idempotent-Replayed %q", r.header.Get("Idempotency-Replay"), r.header.Get("Idempotent-Replayed"))
	}
}

func TestMuxPattern(t *testing.T) {
	c := newCounter()
	mux := http.NewServeMux()
	mux.Handle("POST /v1/calls/{id}", c)
	eng := newEngine(t, nil)
	srv, _ := newServer(t, eng, &idemhttp.Options{RoutePattern: idemhttp.MuxPattern(mux)}, mux)
	do(t, "POST", srv.URL+"/v1/calls/7", "k", "")
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
	eng := newEngine(t, nil)
	srv, m := newServer(t, eng, nil, newCounter())
	do(t, "POST", srv.URL+"/x", "k", "")
	do(t, "POST", srv.URL+"/x", "k", "")
	rec := httptest.NewRecorder()
	idemhttp.MetricsHandler(m).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := rec.Body.String()
	for _, want := range []string{
		"idemkv_http_proceeded_total 1\n", "idemkv_http_replayed_total 1\n",
		`idemkv_http_request_duration_seconds_count{outcome="replay"} 1`, "idemkv_engine_completes_total 1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
