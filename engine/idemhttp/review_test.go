package idemhttp_test

// Review tests: the failing ones show bugs (see each test's comment), the
// passing ones pin behaviours that had no test.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/idemproxy"
)

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

// ---------------------------------------------------------------------
// Failing tests: bugs.
// ---------------------------------------------------------------------

// The proxy sends the upstream request on the client's context: a client
// that gives up (a timeout, the very reason it retries) cancels the
// upstream call, the proxy answers 502, which is not recorded, and the
// claim is released. The upstream may well have done the work (here it
// does, and answers 201), so the retry runs it a second time.
func TestReviewProxyClientDisconnectRunsUpstreamTwice(t *testing.T) {
	var runs atomic.Int64
	proceed := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		n := runs.Add(1)
		if n == 1 {
			<-proceed // the side effect is under way; it completes regardless
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "charged, run %d", n)
	}))
	defer up.Close()
	m, err := idemhttp.New(newEngine(t, nil), &idemhttp.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(up.URL)
	px := httptest.NewServer(idemproxy.New(target, m, &idemproxy.Options{Logger: quietLogger()}))
	defer px.Close()

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", px.URL+"/v1/charges", strings.NewReader("amount=1"))
	req.Header.Set("Idempotency-Key", "k")
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, "the upstream to start", func() bool { return runs.Load() == 1 })
	cancel() // the client times out
	<-errc
	// Let the proxy notice the disconnect, then let the upstream finish
	// its (already started) work.
	time.Sleep(100 * time.Millisecond)
	close(proceed)

	r := do(t, "POST", px.URL+"/v1/charges", "k", "amount=1")
	if n := runs.Load(); n != 1 {
		t.Fatalf("upstream ran %d times for one key; the retry got %d %q replay=%q",
			n, r.status, r.body, r.header.Get("Idempotency-Replay"))
	}
}

// A handler that flushes gives up the record, but the claim is released at
// the moment of the flush, while the handler is still running: a
// duplicate that was waiting (or arrives now) proceeds and runs the
// handler a second time, concurrently with the first.
func TestReviewFlushReleasesClaimWhileHandlerStillRuns(t *testing.T) {
	var runs, running atomic.Int64
	var maxConcurrent atomic.Int64
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		if c := running.Add(1); c > maxConcurrent.Load() {
			maxConcurrent.Store(c)
		}
		defer running.Add(-1)
		io.WriteString(w, "part 1;")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "part 2")
	})
	srv, _ := newServer(t, newEngine(t, nil), &idemhttp.Options{WaitTimeout: 300 * time.Millisecond, Logger: quietLogger()}, h)

	first := make(chan struct{})
	go func() {
		defer close(first)
		do(t, "POST", srv.URL+"/x", "k", "a")
	}()
	waitFor(t, "the first run", func() bool { return runs.Load() == 1 })
	second := make(chan struct{})
	go func() {
		defer close(second)
		do(t, "POST", srv.URL+"/x", "k", "a")
	}()
	time.Sleep(150 * time.Millisecond)
	concurrent := running.Load()
	close(release)
	<-first
	<-second
	if concurrent > 1 || maxConcurrent.Load() > 1 {
		t.Fatalf("the handler ran %d times at once for one key (claim released at Flush, before the handler returned)", maxConcurrent.Load())
	}
}

// The same for a hijacked connection (a WebSocket, say): the claim is
// released when Hijack is called, so duplicates run the handler while the
// first connection is still being served.
func TestReviewHijackReleasesClaimWhileHandlerStillRuns(t *testing.T) {
	var runs, running, maxConcurrent atomic.Int64
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		if c := running.Add(1); c > maxConcurrent.Load() {
			maxConcurrent.Store(c)
		}
		defer running.Add(-1)
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		<-release
		brw.WriteString("HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
		brw.Flush()
	})
	srv, _ := newServer(t, newEngine(t, nil), &idemhttp.Options{WaitTimeout: 300 * time.Millisecond, Logger: quietLogger()}, h)
	call := func() {
		req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader("a"))
		req.Header.Set("Idempotency-Key", "k")
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		if resp, err := (&http.Client{Transport: tr}).Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	var wg sync.WaitGroup
	wg.Go(call)
	waitFor(t, "the first run", func() bool { return runs.Load() == 1 })
	wg.Go(call)
	time.Sleep(150 * time.Millisecond)
	close(release)
	wg.Wait()
	if maxConcurrent.Load() > 1 {
		t.Fatalf("the handler ran %d times at once for one key (claim released at Hijack)", maxConcurrent.Load())
	}
}

// A handler that ends its goroutine with runtime.Goexit (t.FailNow in a
// test handler, a library calling it) is neither recovered nor finished:
// the claim is never completed or released, and the key is locked for the
// whole lease (5 minutes by default). net/http itself survives a Goexit
// (it closes the connection).
func TestReviewGoexitLeaksClaim(t *testing.T) {
	var runs atomic.Int64
	eng := newEngine(t, nil)
	srv, _ := newServer(t, eng, &idemhttp.Options{WhenInProgress: idemhttp.RejectInProgress, Logger: quietLogger()},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if runs.Add(1) == 1 {
				runtime.Goexit()
			}
			w.WriteHeader(201)
		}))
	srv.Config.ErrorLog = quietHTTPLog()
	req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader("a"))
	req.Header.Set("Idempotency-Key", "k")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	r := do(t, "POST", srv.URL+"/x", "k", "a")
	if c := eng.Stats().Claims; r.status != 201 || runs.Load() != 2 {
		t.Fatalf("after a handler's Goexit the retry got %d %s (handler runs %d, engine claims in flight %d); the claim leaked",
			r.status, r.body, runs.Load(), c)
	}
}

// finish sets rw.done before calling ShouldStore and Complete; if either
// panics (a user-supplied ShouldStore), the deferred release in run sees
// done and does nothing: the claim leaks until its lease expires.
func TestReviewPanicInShouldStoreLeaksClaim(t *testing.T) {
	var runs atomic.Int64
	eng := newEngine(t, nil)
	srv, _ := newServer(t, eng, &idemhttp.Options{
		WhenInProgress: idemhttp.RejectInProgress,
		Logger:         quietLogger(),
		ShouldStore: func(status int) bool {
			if status == http.StatusTeapot {
				panic("unexpected status")
			}
			return idemhttp.DefaultShouldStore(status)
		},
	}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if runs.Add(1) == 1 {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		w.WriteHeader(201)
	}))
	srv.Config.ErrorLog = quietHTTPLog()
	req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader("a"))
	req.Header.Set("Idempotency-Key", "k")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	r := do(t, "POST", srv.URL+"/x", "k", "a")
	if r.status != 201 || runs.Load() != 2 {
		t.Fatalf("after a panic in ShouldStore the retry got %d (runs %d, engine claims in flight %d); the claim leaked",
			r.status, runs.Load(), eng.Stats().Claims)
	}
}

// A handler may turn off sniffing with Header()["Content-Type"] = nil:
// the first response then has no Content-Type. Nothing is recorded for
// it, so the replay has none either and net/http sniffs one: the replay
// carries a Content-Type the original did not.
func TestReviewSuppressedContentTypeIsSniffedOnReplay(t *testing.T) {
	srv, _ := newServer(t, newEngine(t, nil), nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil
		w.WriteHeader(201)
		io.WriteString(w, "plain bytes")
	}))
	first := do(t, "POST", srv.URL+"/x", "k", "")
	again := do(t, "POST", srv.URL+"/x", "k", "")
	if again.header.Get("Idempotency-Replay") != "true" {
		t.Fatalf("not replayed: %+v", again)
	}
	if f, a := first.header.Values("Content-Type"), again.header.Values("Content-Type"); len(f) != len(a) {
		t.Fatalf("Content-Type: first response %q, replay %q", f, a)
	}
}

// net/http does not sniff a body that has a Content-Encoding (issue
// 31753); the recorder sniffs it anyway and sends (and records) a
// Content-Type the handler never had: application/x-gzip for a gzipped
// body.
func TestReviewContentEncodedBodyIsNotSniffed(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"ok":true}`))
	zw.Close()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(201)
		w.Write(gz.Bytes())
	})
	plain := httptest.NewServer(handler)
	defer plain.Close()
	srv, _ := newServer(t, newEngine(t, nil), nil, handler)
	get := func(u string) http.Header {
		req, _ := http.NewRequest("POST", u, nil)
		req.Header.Set("Idempotency-Key", "k")
		req.Header.Set("Accept-Encoding", "gzip") // keep the transport from decoding
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header
	}
	want := get(plain.URL + "/x").Values("Content-Type")
	got := get(srv.URL + "/x").Values("Content-Type")
	if len(want) != len(got) {
		t.Fatalf("Content-Type without the middleware %q, with it %q", want, got)
	}
}

// finish always sets Content-Length, which makes net/http send the body
// with identity framing: trailers the handler declared are then dropped
// from the first response.
func TestReviewTrailersAreDropped(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.WriteHeader(201)
		io.WriteString(w, "payload")
		w.Header().Set("X-Checksum", "abc")
	})
	srv, _ := newServer(t, newEngine(t, nil), nil, handler)
	req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader("a"))
	req.Header.Set("Idempotency-Key", "k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := resp.Trailer.Get("X-Checksum"); got != "abc" {
		t.Fatalf("trailer X-Checksum = %q; want abc (Content-Length %d)", got, resp.ContentLength)
	}
}

// When Hijack fails (HTTP/2, here), the recorder switches to pass-through
// without sending what it held back: the status and body written before
// the attempt are lost, and the client gets an empty 200.
func TestReviewFailedHijackDropsBufferedResponse(t *testing.T) {
	m, err := idemhttp.New(newEngine(t, nil), &idemhttp.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "accepted;")
		if _, _, err := http.NewResponseController(w).Hijack(); err == nil {
			t.Error("Hijack succeeded on HTTP/2")
		}
	})))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader("a"))
	req.Header.Set("Idempotency-Key", "k")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("not HTTP/2: %s", resp.Proto)
	}
	if resp.StatusCode != http.StatusAccepted || string(b) != "accepted;" {
		t.Fatalf("after a failed Hijack the client got %d %q; want 202 %q", resp.StatusCode, b, "accepted;")
	}
}

// httputil.ReverseProxy forwards an upstream 1xx (103 Early Hints) and
// then clears the header map, which is the middleware's own: the
// X-Request-Id and Idempotency-Replay: false it set before running the
// handler are lost from the first response and from the record.
func TestReviewProxyEarlyHintsLoseRequestID(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":1}`)
	}))
	defer up.Close()
	m, _ := idemhttp.New(newEngine(t, nil), nil)
	target, _ := url.Parse(up.URL)
	px := httptest.NewServer(idemproxy.New(target, m, nil))
	defer px.Close()
	first := do(t, "POST", px.URL+"/v1/x", "k", "a")
	if first.status != 201 {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	if first.header.Get("X-Request-Id") == "" || first.header.Get("Idempotency-Replay") != "false" {
		t.Fatalf("first response after an upstream 103: X-Request-Id %q, Idempotency-Replay %q; want an id and false",
			first.header.Get("X-Request-Id"), first.header.Get("Idempotency-Replay"))
	}
}

// The same loss, from the most ordinary of clients: a request with
// "Expect: 100-continue" (curl sends it for larger bodies) is forwarded
// with that header; a Go upstream answers 100 Continue when it reads the
// body, the reverse proxy forwards that 1xx and clears the header map.
func TestReviewProxyExpectContinueLosesRequestID(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":1}`)
	}))
	defer up.Close()
	m, _ := idemhttp.New(newEngine(t, nil), nil)
	target, _ := url.Parse(up.URL)
	px := httptest.NewServer(idemproxy.New(target, m, nil))
	defer px.Close()
	first := do(t, "POST", px.URL+"/v1/x", "k", strings.Repeat("a", 2000), "Expect", "100-continue")
	if first.status != 201 {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	again := do(t, "POST", px.URL+"/v1/x", "k", strings.Repeat("a", 2000), "Expect", "100-continue")
	if first.header.Get("X-Request-Id") == "" || first.header.Get("Idempotency-Replay") != "false" || again.header.Get("X-Request-Id") == "" {
		t.Fatalf("with Expect: 100-continue: first X-Request-Id %q, Idempotency-Replay %q; replay X-Request-Id %q",
			first.header.Get("X-Request-Id"), first.header.Get("Idempotency-Replay"), again.header.Get("X-Request-Id"))
	}
}

// The proxy hides the reverse proxy's flushes for every request, not only
// for those it records: a GET (never selected), or any request without a
// key, that streams a response of unknown length other than an event
// stream (NDJSON watch, long poll, chunked download) is held in net/http's
// buffers until the upstream ends it. Nothing is gained, since such a
// response is not recorded anyway.
func TestReviewProxyHidesFlushesOfUnrecordedRequests(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		io.WriteString(w, `{"event":1}`+"\n")
		w.(http.Flusher).Flush()
		select {
		case <-done:
		case <-r.Context().Done():
		}
	}))
	defer up.Close()
	m, _ := idemhttp.New(newEngine(t, nil), nil)
	target, _ := url.Parse(up.URL)
	px := httptest.NewServer(idemproxy.New(target, m, &idemproxy.Options{Logger: quietLogger()}))
	defer px.Close()
	px.Config.ErrorLog = quietHTTPLog()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", px.URL+"/v1/watch", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("the streamed GET's headers did not arrive within 2s: %v", err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		t.Fatalf("the streamed GET's first event did not arrive: %v", err)
	}
	if line != `{"event":1}`+"\n" {
		t.Fatalf("first event %q", line)
	}
}

// ---------------------------------------------------------------------
// Passing tests: behaviours that had no test.
// ---------------------------------------------------------------------

// A protocol upgrade with a key through the proxy: the 101 and the
// upgraded connection go through, the claim is released (not leaked), and
// the same key can upgrade again.
func TestReviewProxyUpgradeWithKey(t *testing.T) {
	var runs atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		runs.Add(1)
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, err := brw.ReadString('\n')
		if err != nil {
			return
		}
		brw.WriteString("echo " + line)
		brw.Flush()
	}))
	defer up.Close()
	eng := newEngine(t, nil)
	m, _ := idemhttp.New(eng, &idemhttp.Options{Logger: quietLogger()})
	target, _ := url.Parse(up.URL)
	px := httptest.NewServer(idemproxy.New(target, m, &idemproxy.Options{Logger: quietLogger()}))
	defer px.Close()

	upgrade := func() {
		t.Helper()
		c, err := (&net.Dialer{Timeout: 2 * time.Second}).Dial("tcp", px.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "POST /v1/stream HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\nIdempotency-Key: up\r\nContent-Length: 0\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade through the proxy: %d", resp.StatusCode)
		}
		io.WriteString(c, "ping\n")
		if line, err := br.ReadString('\n'); err != nil || line != "echo ping\n" {
			t.Fatalf("upgraded connection: %q %v", line, err)
		}
	}
	upgrade()
	waitFor(t, "the claim to be released", func() bool { return eng.Stats().Claims == 0 })
	upgrade()
	// The claim is released when the proxied handler returns, after the
	// upgraded connection ends.
	waitFor(t, "the claim to be released", func() bool { return eng.Stats().Claims == 0 })
	if runs.Load() != 2 {
		t.Fatalf("upstream upgraded %d times; want 2 (an upgrade is never replayed)", runs.Load())
	}
	if s := m.Stats(); s.Released != 2 || s.Recorded != 0 {
		t.Fatalf("Released %d, Recorded %d; want 2, 0", s.Released, s.Recorded)
	}
}

// An informational response (103 Early Hints) is sent at once, before the
// final response, and is not part of the record: the replay has the
// final status, headers and body only.
func TestReviewEarlyHintsSentNotRecorded(t *testing.T) {
	var runs atomic.Int64
	srv, _ := newServer(t, newEngine(t, nil), nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":7}`)
	}))
	call := func() (codes []int, r reply) {
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
			codes = append(codes, code)
			return nil
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", srv.URL+"/x", strings.NewReader("a"))
		req.Header.Set("Idempotency-Key", "k")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return codes, reply{resp.StatusCode, resp.Header, string(b)}
	}
	c1, first := call()
	c2, again := call()
	if len(c1) != 1 || c1[0] != 103 || first.status != 201 || first.body != `{"id":7}` {
		t.Fatalf("first: 1xx %v, %d %q", c1, first.status, first.body)
	}
	if len(c2) != 0 || again.status != 201 || again.body != first.body || again.header.Get("Idempotency-Replay") != "true" {
		t.Fatalf("replay: 1xx %v, %d %q replay=%q", c2, again.status, again.body, again.header.Get("Idempotency-Replay"))
	}
	if again.header.Get("Link") != "" || runs.Load() != 1 {
		t.Fatalf("replay Link %q, runs %d", again.header.Get("Link"), runs.Load())
	}
}

// WriteHeader called twice: the first status is the one sent and
// recorded, as net/http does.
func TestReviewWriteHeaderTwice(t *testing.T) {
	srv, _ := newServer(t, newEngine(t, nil), nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "queued")
	}))
	srv.Config.ErrorLog = quietHTTPLog()
	first := do(t, "POST", srv.URL+"/x", "k", "")
	again := do(t, "POST", srv.URL+"/x", "k", "")
	if first.status != 202 || again.status != 202 || again.body != "queued" || again.header.Get("Idempotency-Replay") != "true" {
		t.Fatalf("first %d %q, replay %d %q (replay=%q)", first.status, first.body, again.status, again.body, again.header.Get("Idempotency-Replay"))
	}
}

// A 204 replays as a 204 with no body and no Content-Length; a binary,
// content-encoded body replays byte for byte with its encoding and the
// right length.
func TestReviewReplayFraming(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte("binary\x00\xff"), 100))
	zw.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"e1"`)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/gz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusCreated)
		w.Write(gz.Bytes()[:10])
		w.Write(gz.Bytes()[10:])
	})
	srv, _ := newServer(t, newEngine(t, nil), nil, mux)
	raw := func(path string) (*http.Response, []byte) {
		req, _ := http.NewRequest("POST", srv.URL+path, nil)
		req.Header.Set("Idempotency-Key", "k")
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	for _, path := range []string{"/nocontent", "/gz"} {
		r1, b1 := raw(path)
		r2, b2 := raw(path)
		if r2.Header.Get("Idempotency-Replay") != "true" {
			t.Fatalf("%s: not replayed", path)
		}
		if r1.StatusCode != r2.StatusCode || !bytes.Equal(b1, b2) || r1.ContentLength != r2.ContentLength {
			t.Fatalf("%s: first %d %d bytes (Content-Length %d), replay %d %d bytes (Content-Length %d)",
				path, r1.StatusCode, len(b1), r1.ContentLength, r2.StatusCode, len(b2), r2.ContentLength)
		}
		for _, h := range []string{"Content-Type", "Content-Encoding", "Etag"} {
			if r1.Header.Get(h) != r2.Header.Get(h) {
				t.Errorf("%s: %s %q then %q", path, h, r1.Header.Get(h), r2.Header.Get(h))
			}
		}
		if path == "/nocontent" && (len(b2) != 0 || r2.Header.Get("Content-Length") != "") {
			t.Errorf("204 replay: body %q, Content-Length %q", b2, r2.Header.Get("Content-Length"))
		}
		if path == "/gz" && !bytes.Equal(b2, gz.Bytes()) {
			t.Errorf("gzip body changed on replay")
		}
	}
}

// A handler that flushes and then panics: the claim is released once, no
// claim is left in the engine, and a retry runs again.
func TestReviewFlushThenPanicReleasesOnce(t *testing.T) {
	var runs atomic.Int64
	eng := newEngine(t, nil)
	srv, m := newServer(t, eng, &idemhttp.Options{Logger: quietLogger()}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if runs.Add(1) == 1 {
			io.WriteString(w, "partial")
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		}
		w.WriteHeader(201)
	}))
	srv.Config.ErrorLog = quietHTTPLog()
	req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader("a"))
	req.Header.Set("Idempotency-Key", "k")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	waitFor(t, "the claim to be released", func() bool { return eng.Stats().Claims == 0 })
	if r := do(t, "POST", srv.URL+"/x", "k", "a"); r.status != 201 || runs.Load() != 2 {
		t.Fatalf("retry: %d, runs %d", r.status, runs.Load())
	}
	if s := m.Stats(); s.Released != 1 || s.Recorded != 1 {
		t.Fatalf("Released %d, Recorded %d; want 1, 1", s.Released, s.Recorded)
	}
}

// A custom Scope separates tenants; one tenant's key never replays to
// another, even with the same request.
func TestReviewCustomScope(t *testing.T) {
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
func TestReviewStoredHeadersAndRequestIDHeader(t *testing.T) {
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

// A duplicate whose client leaves while it waits is counted as canceled;
// the original is not disturbed and is recorded.
func TestReviewWaiterDisconnect(t *testing.T) {
	h, started, release := blocked()
	eng := newEngine(t, nil)
	srv, m := newServer(t, eng, nil, h)
	done := make(chan reply)
	go func() { done <- do(t, "POST", srv.URL+"/x", "k", "a") }()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/x", strings.NewReader("a"))
	req.Header.Set("Idempotency-Key", "k")
	errc := make(chan error, 1)
	go func() {
		_, err := http.DefaultClient.Do(req)
		errc <- err
	}()
	waitFor(t, "the duplicate to wait", func() bool { return eng.Stats().Waits >= 1 })
	cancel()
	<-errc
	waitFor(t, "the cancellation to be counted", func() bool { return m.Stats().Canceled == 1 })
	close(release)
	if first := <-done; first.status != 201 {
		t.Fatalf("original: %d", first.status)
	}
	if r := do(t, "POST", srv.URL+"/x", "k", "a"); r.header.Get("Idempotency-Replay") != "true" {
		t.Fatal("original not recorded")
	}
}

// A repeated key header is refused over HTTP, and the handler does not
// run.
func TestReviewRepeatedKeyHeader(t *testing.T) {
	c := newCounter()
	srv, _ := newServer(t, newEngine(t, nil), nil, c)
	req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader("a"))
	req.Header.Add("Idempotency-Key", "a")
	req.Header.Add("Idempotency-Key", "b")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p := problemOf(t, reply{resp.StatusCode, resp.Header, string(b)})
	if resp.StatusCode != 400 || p.Code != idemhttp.CodeKeyInvalid || c.total.Load() != 0 {
		t.Fatalf("repeated key: %d %+v, handler ran %d", resp.StatusCode, p, c.total.Load())
	}
}

// Options that cannot work are refused.
func TestReviewInvalidOptions(t *testing.T) {
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

// Many keys, tenants and duplicates at once (run with -race): every key
// runs once, and no claim is left behind.
func TestReviewConcurrentKeysNoLeak(t *testing.T) {
	var runs sync.Map
	eng := newEngine(t, nil)
	srv, _ := newServer(t, eng, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("Authorization") + "|" + r.Header.Get("Idempotency-Key")
		n, _ := runs.LoadOrStore(id, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		w.WriteHeader(201)
		io.WriteString(w, id)
	}))
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			tenant := fmt.Sprint("Bearer t", i%3)
			key := fmt.Sprint("k", i%5)
			r := do(t, "POST", srv.URL+"/x", key, "body", "Authorization", tenant)
			if r.body != tenant+"|"+key {
				t.Errorf("%s %s got %q", tenant, key, r.body)
			}
		})
	}
	wg.Wait()
	runs.Range(func(k, v any) bool {
		if n := v.(*atomic.Int64).Load(); n != 1 {
			t.Errorf("%v ran %d times", k, n)
		}
		return true
	})
	if c := eng.Stats().Claims; c != 0 {
		t.Fatalf("%d claims left in flight", c)
	}
}

// A handler interrupted by the engine's shutdown (a crash, as far as the
// record is concerned): its Complete fails and is counted, its response is
// still sent, and after a restart the retry runs again with the Call
// marked Recovered, attempt 2.
func TestReviewInterruptedClaimIsRecoveredAfterRestart(t *testing.T) {
	dir := t.TempDir()
	eng, err := engine.Open(dir, &engine.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	var calls []idemhttp.Call
	var mu sync.Mutex
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		call, ok := idemhttp.FromContext(r.Context())
		if !ok {
			t.Error("no Call in the handler's context")
		}
		mu.Lock()
		calls = append(calls, *call)
		n := len(calls)
		mu.Unlock()
		if n == 1 {
			close(started)
			<-release
		}
		w.WriteHeader(201)
		fmt.Fprintf(w, "attempt %d", call.Attempt)
	})
	srv, m := newServer(t, eng, &idemhttp.Options{Logger: quietLogger()}, h)
	done := make(chan reply)
	go func() { done <- do(t, "POST", srv.URL+"/x", "k", "a") }()
	<-started
	eng.Close() // the process "dies" with the claim in flight
	close(release)
	if first := <-done; first.status != 201 || first.body != "attempt 1" {
		t.Fatalf("first: %d %q; the response must be sent even if it could not be recorded", first.status, first.body)
	}
	if s := m.Stats(); s.CompleteErrors != 1 {
		t.Fatalf("CompleteErrors = %d; want 1", s.CompleteErrors)
	}
	srv.Close()

	eng2, err := engine.Open(dir, &engine.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng2.Close()
	srv2, m2 := newServer(t, eng2, nil, h)
	again := do(t, "POST", srv2.URL+"/x", "k", "a")
	mu.Lock()
	defer mu.Unlock()
	if again.status != 201 || len(calls) != 2 || !calls[1].Recovered || calls[1].Attempt != 2 || calls[1].Interrupted == nil {
		t.Fatalf("retry after restart: %d %q, calls %+v", again.status, again.body, calls)
	}
	if m2.Stats().Recovered != 1 {
		t.Fatalf("Recovered = %d", m2.Stats().Recovered)
	}
}
