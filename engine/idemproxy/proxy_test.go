package idemproxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/idemproxy"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
)

// upstream is a real HTTP server in another "language": it counts the
// side effects of each key.
type upstream struct {
	mu   sync.Mutex
	runs map[string]int
	last http.Header
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.runs[r.Header.Get("Idempotency-Key")]++
	n := u.runs[r.Header.Get("Idempotency-Key")]
	u.last = r.Header.Clone()
	u.mu.Unlock()
	switch r.URL.Path {
	case "/chunked":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		for i := range 3 {
			fmt.Fprintf(w, `{"part":%d,"run":%d}`, i, n)
			w.(http.Flusher).Flush()
		}
	case "/events":
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "data: run %d\n\n", n)
		w.(http.Flusher).Flush()
	case "/fail":
		w.WriteHeader(503)
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", "/v1/things/1")
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"data":{"run":%d,"echo":%q}}`, n, b)
	}
}

func (u *upstream) Count(key string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.runs[key]
}

func setup(t *testing.T) (*upstream, *httptest.Server, *httptest.Server) {
	t.Helper()
	u := &upstream{runs: map[string]int{}}
	up := httptest.NewServer(u)
	t.Cleanup(up.Close)
	eng, err := engine.Open("data", &engine.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	m, err := idemhttp.New(eng, nil)
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(up.URL)
	px := httptest.NewServer(idemproxy.New(target, m, nil))
	t.Cleanup(px.Close)
	return u, up, px
}

func post(t *testing.T, url, key, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("Authorization", "Bearer tenant-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestProxyReplayAndConflict(t *testing.T) {
	u, _, px := setup(t)
	r1, b1 := post(t, px.URL+"/v1/charges", "k", `{"amount":1}`)
	r2, b2 := post(t, px.URL+"/v1/charges", "k", `{"amount":1}`)
	if r1.StatusCode != 201 || r2.StatusCode != 201 || b1 != b2 || r2.Header.Get("Idempotency-Replay") != "true" {
		t.Fatalf("replay through the proxy: %d %q, then %d %q replay=%q", r1.StatusCode, b1, r2.StatusCode, b2, r2.Header.Get("Idempotency-Replay"))
	}
	if r2.Header.Get("Location") != "/v1/things/1" {
		t.Errorf("Location not replayed: %q", r2.Header.Get("Location"))
	}
	if r3, _ := post(t, px.URL+"/v1/charges", "k", `{"amount":2}`); r3.StatusCode != 409 {
		t.Fatalf("conflict through the proxy: %d", r3.StatusCode)
	}
	if n := u.Count("k"); n != 1 {
		t.Fatalf("upstream ran %d times; want 1", n)
	}
	if u.last.Get("Authorization") != "Bearer tenant-1" || u.last.Get("X-Forwarded-For") == "" {
		t.Fatalf("upstream saw headers %v", u.last)
	}
}

func TestProxyRecordsChunkedResponses(t *testing.T) {
	u, _, px := setup(t)
	_, b1 := post(t, px.URL+"/chunked", "c", "")
	r2, b2 := post(t, px.URL+"/chunked", "c", "")
	if b1 != b2 || r2.Header.Get("Idempotency-Replay") != "true" || u.Count("c") != 1 {
		t.Fatalf("chunked response not recorded: %q then %q (replay=%q), upstream ran %d", b1, b2, r2.Header.Get("Idempotency-Replay"), u.Count("c"))
	}
}

func TestProxyStreamsEventStreams(t *testing.T) {
	u, _, px := setup(t)
	post(t, px.URL+"/events", "e", "")
	r2, b2 := post(t, px.URL+"/events", "e", "")
	if r2.Header.Get("Idempotency-Replay") == "true" || u.Count("e") != 2 || b2 != "data: run 2\n\n" {
		t.Fatalf("an event stream was recorded: %q replay=%q runs=%d", b2, r2.Header.Get("Idempotency-Replay"), u.Count("e"))
	}
}

func TestProxyUpstreamDown(t *testing.T) {
	u := &upstream{runs: map[string]int{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	eng, err := engine.Open("data", &engine.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	m, _ := idemhttp.New(eng, nil)
	target, _ := url.Parse("http://" + addr)
	px := httptest.NewServer(idemproxy.New(target, m, nil))
	defer px.Close()
	r, body := post(t, px.URL+"/v1/charges", "k", "x")
	if r.StatusCode != 502 || r.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("upstream down: %d %q", r.StatusCode, body)
	}
	// The upstream comes up: the retry reaches it (a 502 is not recorded).
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	srv := &http.Server{Handler: u}
	go srv.Serve(l)
	defer srv.Close()
	if r, _ := post(t, px.URL+"/v1/charges", "k", "x"); r.StatusCode != 201 || u.Count("k") != 1 {
		t.Fatalf("retry after the upstream came up: %d, upstream ran %d", r.StatusCode, u.Count("k"))
	}
}

func TestProxyNotRecorded5xx(t *testing.T) {
	u, _, px := setup(t)
	post(t, px.URL+"/fail", "f", "")
	post(t, px.URL+"/fail", "f", "")
	if u.Count("f") != 2 {
		t.Fatalf("a 503 from the upstream was replayed: upstream ran %d", u.Count("f"))
	}
}

func TestProxyConcurrentDuplicates(t *testing.T) {
	u, _, px := setup(t)
	const n = 200
	var wg sync.WaitGroup
	var bodies sync.Map
	var failed, busy atomic.Int64
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", px.URL+"/v1/charges", strings.NewReader("same"))
			req.Header.Set("Idempotency-Key", "dup")
			req.Header.Set("Authorization", "Bearer tenant-1")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				failed.Add(1)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusConflict && strings.Contains(string(b), idemhttp.CodeInProgress) && resp.Header.Get("Retry-After") != "" {
				busy.Add(1) // over the waiter limit (MaxWaitersPerKey): told to retry
				return
			}
			bodies.Store(fmt.Sprint(resp.StatusCode, string(b)), true)
		})
	}
	wg.Wait()
	distinct := 0
	bodies.Range(func(k, v any) bool { distinct++; return true })
	if failed.Load() != 0 || distinct != 1 || u.Count("dup") != 1 {
		t.Fatalf("%d failed, %d distinct responses, upstream ran %d; want 0, 1, 1", failed.Load(), distinct, u.Count("dup"))
	}
	t.Logf("%d duplicates told to retry (409 in progress, over the waiter limit)", busy.Load())
}

// A client that gives up while its request is at the upstream (a timeout,
// the very reason it retries) does not cancel the upstream call: the
// upstream finishes the work it had started (here it answers 201), and the
// retry with the same key does not run it a second time.
func TestProxyClientDisconnectDoesNotRunUpstreamTwice(t *testing.T) {
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
	m, err := idemhttp.New(idemtest.NewEngine(t, nil), &idemhttp.Options{Logger: idemtest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(up.URL)
	px := httptest.NewServer(idemproxy.New(target, m, &idemproxy.Options{Logger: idemtest.QuietLogger()}))
	defer px.Close()

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", px.URL+"/v1/charges", strings.NewReader("amount=1"))
	req.Header.Set("Idempotency-Key", "k")
	req.Header.Set("Authorization", idemtest.DefaultCredential)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	idemtest.WaitFor(t, "the upstream to start", func() bool { return runs.Load() == 1 })
	cancel() // the client times out
	<-errc
	// Let the proxy notice the disconnect, then let the upstream finish
	// its (already started) work.
	time.Sleep(100 * time.Millisecond)
	close(proceed)

	r := idemtest.Do(t, "POST", px.URL+"/v1/charges", "k", "amount=1")
	if n := runs.Load(); n != 1 {
		t.Fatalf("upstream ran %d times for one key; the retry got %d %q replay=%q",
			n, r.Status, r.Body, r.Header.Get("Idempotency-Replay"))
	}
}

// httputil.ReverseProxy forwards an upstream 1xx (103 Early Hints) and then
// clears the header map, which is the middleware's own: the X-Request-Id
// and Idempotency-Replay: false it set before running the handler are
// still on the first response.
func TestProxyEarlyHintsKeepRequestID(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":1}`)
	}))
	defer up.Close()
	m, _ := idemhttp.New(idemtest.NewEngine(t, nil), nil)
	target, _ := url.Parse(up.URL)
	px := httptest.NewServer(idemproxy.New(target, m, nil))
	defer px.Close()
	first := idemtest.Do(t, "POST", px.URL+"/v1/x", "k", "a")
	if first.Status != 201 {
		t.Fatalf("first: %d %s", first.Status, first.Body)
	}
	if first.Header.Get("X-Request-Id") == "" || first.Header.Get("Idempotency-Replay") != "false" {
		t.Fatalf("first response after an upstream 103: X-Request-Id %q, Idempotency-Replay %q; want an id and false",
			first.Header.Get("X-Request-Id"), first.Header.Get("Idempotency-Replay"))
	}
}

// The same from the most ordinary of clients: a request with
// "Expect: 100-continue" (curl sends it for larger bodies) is forwarded
// with that header; a Go upstream answers 100 Continue when it reads the
// body, and the reverse proxy forwards that 1xx and clears the header map.
// The first response still has its X-Request-Id and Idempotency-Replay:
// false, and the replay its X-Request-Id.
func TestProxyExpectContinueKeepsRequestID(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":1}`)
	}))
	defer up.Close()
	m, _ := idemhttp.New(idemtest.NewEngine(t, nil), nil)
	target, _ := url.Parse(up.URL)
	px := httptest.NewServer(idemproxy.New(target, m, nil))
	defer px.Close()
	first := idemtest.Do(t, "POST", px.URL+"/v1/x", "k", strings.Repeat("a", 2000), "Expect", "100-continue")
	if first.Status != 201 {
		t.Fatalf("first: %d %s", first.Status, first.Body)
	}
	again := idemtest.Do(t, "POST", px.URL+"/v1/x", "k", strings.Repeat("a", 2000), "Expect", "100-continue")
	if first.Header.Get("X-Request-Id") == "" || first.Header.Get("Idempotency-Replay") != "false" || again.Header.Get("X-Request-Id") == "" {
		t.Fatalf("with Expect: 100-continue: first X-Request-Id %q, Idempotency-Replay %q; replay X-Request-Id %q",
			first.Header.Get("X-Request-Id"), first.Header.Get("Idempotency-Replay"), again.Header.Get("X-Request-Id"))
	}
}

// The proxy hides the reverse proxy's flushes only for the requests it
// records: a GET (never selected), or any request without a key, that
// streams a response of unknown length other than an event stream (NDJSON
// watch, long poll, chunked download) reaches the client as the upstream
// flushes it, not when the upstream ends it.
func TestProxyFlushesUnrecordedStreams(t *testing.T) {
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
	m, _ := idemhttp.New(idemtest.NewEngine(t, nil), nil)
	target, _ := url.Parse(up.URL)
	px := httptest.NewServer(idemproxy.New(target, m, &idemproxy.Options{Logger: idemtest.QuietLogger()}))
	defer px.Close()
	px.Config.ErrorLog = idemtest.QuietHTTPLog()

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

// A protocol upgrade with a key through the proxy: the 101 and the
// upgraded connection go through, the claim is released (not leaked), and
// the same key can upgrade again.
func TestProxyUpgradeWithKeyReleasesClaim(t *testing.T) {
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
	eng := idemtest.NewEngine(t, nil)
	m, _ := idemhttp.New(eng, &idemhttp.Options{Logger: idemtest.QuietLogger()})
	target, _ := url.Parse(up.URL)
	px := httptest.NewServer(idemproxy.New(target, m, &idemproxy.Options{Logger: idemtest.QuietLogger()}))
	defer px.Close()

	upgrade := func() {
		t.Helper()
		c, err := (&net.Dialer{Timeout: 2 * time.Second}).Dial("tcp", px.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "POST /v1/stream HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\nIdempotency-Key: up\r\nAuthorization: Bearer tenant-1\r\nContent-Length: 0\r\n\r\n")
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
	idemtest.WaitFor(t, "the claim to be released", func() bool { return eng.Stats().Claims == 0 })
	upgrade()
	// The claim is released when the proxied handler returns, after the
	// upgraded connection ends.
	idemtest.WaitFor(t, "the claim to be released", func() bool { return eng.Stats().Claims == 0 })
	if runs.Load() != 2 {
		t.Fatalf("upstream upgraded %d times; want 2 (an upgrade is never replayed)", runs.Load())
	}
	if s := m.Stats(); s.Released != 2 || s.Recorded != 0 {
		t.Fatalf("Released %d, Recorded %d; want 2, 0", s.Released, s.Recorded)
	}
}

// TestProxyTellsUpstreamOfRecovery: a retry that takes over an interrupted
// claim (the proxy died while the upstream ran) reaches the upstream with
// Idempotency-Recovered: true and the attempt number, so a service in any
// language can reconcile; a first attempt carries neither, even if the
// client sent them.
func TestProxyTellsUpstreamOfRecovery(t *testing.T) {
	dir := t.TempDir()
	started, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var seen []http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		n := len(seen)
		mu.Unlock()
		if n == 1 {
			close(started)
			<-release
		}
		w.WriteHeader(201)
	}))
	defer up.Close()
	target, _ := url.Parse(up.URL)
	proxy := func() (*engine.Engine, *httptest.Server) {
		eng, err := engine.Open(dir, &engine.Options{Logger: idemtest.QuietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		m, err := idemhttp.New(eng, &idemhttp.Options{Logger: idemtest.QuietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		return eng, httptest.NewServer(idemproxy.New(target, m, &idemproxy.Options{Logger: idemtest.QuietLogger()}))
	}
	send := func(px *httptest.Server) {
		req, _ := http.NewRequest("POST", px.URL+"/v1/charges", strings.NewReader(`{"amount":100}`))
		req.Header.Set("Idempotency-Key", "charge-1")
		req.Header.Set("Authorization", "Bearer tenant-1")
		req.Header.Set("Idempotency-Recovered", "true") // a client's spoof
		req.Header.Set("Idempotency-Attempt", "7")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	eng, px := proxy()
	done := make(chan struct{})
	go func() { send(px); close(done) }()
	<-started
	eng.Close() // the proxy "dies" with the claim in flight
	close(release)
	<-done
	px.Close()

	eng2, px2 := proxy()
	defer eng2.Close()
	defer px2.Close()
	send(px2)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("upstream ran %d times; want 2 (the interrupted attempt and the recovery)", len(seen))
	}
	if h := seen[0]; h.Get("Idempotency-Recovered") != "" || h.Get("Idempotency-Attempt") != "1" {
		t.Fatalf("first attempt: Idempotency-Recovered %q, Idempotency-Attempt %q; want none and 1",
			h.Get("Idempotency-Recovered"), h.Get("Idempotency-Attempt"))
	}
	if h := seen[1]; h.Get("Idempotency-Recovered") != "true" || h.Get("Idempotency-Attempt") != "2" {
		t.Fatalf("recovery: Idempotency-Recovered %q, Idempotency-Attempt %q; want true and 2",
			h.Get("Idempotency-Recovered"), h.Get("Idempotency-Attempt"))
	}
}

// TestRouteGuardCannotBeOutSpelled: with routes that require a key, no
// other spelling of a guarded route that an upstream framework may take
// for it (a trailing slash, repeated slashes, dot segments, a lower-case
// method; with CaseInsensitivePaths, letter case) reaches the upstream
// without one; ServeMux wildcards guard every resource of a route; a key
// retried under another spelling of its endpoint conflicts instead of
// running the upstream again.
func TestRouteGuardCannotBeOutSpelled(t *testing.T) {
	for _, caseless := range []bool{false, true} {
		t.Run(fmt.Sprint("CaseInsensitivePaths=", caseless), func(t *testing.T) {
			u := &upstream{runs: map[string]int{}}
			up := httptest.NewServer(u)
			defer up.Close()
			m, err := idemhttp.New(idemtest.NewEngine(t, nil), &idemhttp.Options{
				Logger:               idemtest.QuietLogger(),
				CaseInsensitivePaths: caseless,
				Routes: []idemhttp.Route{
					{Method: "POST", Pattern: "/v1/charges", RequireKey: true},
					{Method: "post", Pattern: "/v1/charges/{id}/refunds", RequireKey: true},
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			target, _ := url.Parse(up.URL)
			px := httptest.NewServer(idemproxy.New(target, m, &idemproxy.Options{Logger: idemtest.QuietLogger()}))
			defer px.Close()
			send := func(method, path, key string) (int, string) {
				req, err := http.NewRequest(method, px.URL+path, strings.NewReader(`{"amount":100}`))
				if err != nil {
					t.Fatal(err)
				}
				req.URL.Opaque = path // sent exactly as written
				if key != "" {
					req.Header.Set("Idempotency-Key", key)
				}
				req.Header.Set("Authorization", "Bearer tenant-1")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			guarded := []struct{ method, path string }{
				{"POST", "/v1/charges"}, {"POST", "/v1/charges/"}, {"POST", "/v1//charges"}, {"POST", "/v1/charges//"},
				{"POST", "/v1/./charges"}, {"POST", "/v1/x/../charges"}, {"post", "/v1/charges"},
				{"Post", "/v1/charges/"}, {"POST", "/v1/charges/ch_1/refunds"}, {"POST", "/v1/charges/ch_2/refunds/"},
			}
			if caseless {
				guarded = append(guarded, struct{ method, path string }{"POST", "/V1/Charges"},
					struct{ method, path string }{"POST", "/v1/CHARGES/ch_1/Refunds"})
			}
			for _, g := range guarded {
				if status, body := send(g.method, g.path, ""); status != http.StatusBadRequest || !strings.Contains(body, idemhttp.CodeKeyMissing) {
					t.Errorf("%s %s without a key: %d %s; want 400 %s", g.method, g.path, status, body, idemhttp.CodeKeyMissing)
				}
			}
			if n := u.Count(""); n != 0 {
				t.Fatalf("the upstream ran %d unkeyed requests on guarded routes", n)
			}
			if !caseless { // case-sensitive, as net/http: another route
				if status, _ := send("POST", "/V1/charges", ""); status != http.StatusCreated {
					t.Errorf("POST /V1/charges (another route when case-sensitive): %d; want it passed through", status)
				}
			}
			if status, _ := send("POST", "/v1/charges/", "k1"); status != http.StatusCreated {
				t.Fatalf("first keyed request: %d", status)
			}
			if status, body := send("POST", "/v1/charges", "k1"); status != http.StatusConflict || !strings.Contains(body, idemhttp.CodeConflict) {
				t.Fatalf("the same key under another spelling: %d %s; want 409", status, body)
			}
			if status, _ := send("POST", "/v1/charges/", "k1"); status != http.StatusCreated {
				t.Fatalf("retry spelled as the first: %d; want the replay", status)
			}
			if n := u.Count("k1"); n != 1 {
				t.Fatalf("the upstream ran key k1 %d times; want 1", n)
			}
		})
	}
}

// TestBadRoutePatternRefused: a route that http.ServeMux cannot take is
// refused by New, not a panic.
func TestBadRoutePatternRefused(t *testing.T) {
	_, err := idemhttp.New(idemtest.NewEngine(t, nil), &idemhttp.Options{
		Routes: []idemhttp.Route{{Method: "POST", Pattern: "/v1/{id"}},
	})
	if !errors.Is(err, idemhttp.ErrInvalidOptions) {
		t.Fatalf("New with a bad pattern: %v; want ErrInvalidOptions", err)
	}
}

// TestProxyCredentialSpellingsRunUpstreamOnce: "Bearer x", "bearer x" and
// "Bearer  x" are one credential to HTTP and to most upstreams, so with one
// key and body they run the upstream once; a second Authorization header
// is refused.
func TestProxyCredentialSpellingsRunUpstreamOnce(t *testing.T) {
	u, _, px := setup(t)
	for _, cred := range []string{"Bearer x", "bearer x", "Bearer  x", "BEARER\tx"} {
		r := idemtest.Do(t, "POST", px.URL+"/v1/charges", "spell", "amount=1", "Authorization", cred)
		if r.Status != 201 {
			t.Fatalf("Authorization %q: %d %s", cred, r.Status, r.Body)
		}
	}
	if n := u.Count("spell"); n != 1 {
		t.Fatalf("upstream ran %d times for one credential spelled four ways; want 1", n)
	}
	req, _ := http.NewRequest("POST", px.URL+"/v1/charges", strings.NewReader("amount=1"))
	req.Header.Set("Idempotency-Key", "two")
	req.Header.Add("Authorization", "Bearer x")
	req.Header.Add("Authorization", "Bearer y")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || u.Count("two") != 0 {
		t.Fatalf("two Authorization headers: %d, upstream ran %d times; want 400, 0", resp.StatusCode, u.Count("two"))
	}
}
