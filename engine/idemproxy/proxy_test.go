package idemproxy_test

import (
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

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/idemproxy"
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

func (u *upstream) count(key string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.runs[key]
}

func setup(t *testing.T) (*upstream, *httptest.Server, *httptest.Server) {
	t.Helper()
	u := &upstream{runs: map[string]int{}}
	up := httptest.NewServer(u)
	t.Cleanup(up.Close)
	eng, err := engine.Open("data", &engine.Options{FS: vfs.NewMem()})
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
	if n := u.count("k"); n != 1 {
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
	if b1 != b2 || r2.Header.Get("Idempotency-Replay") != "true" || u.count("c") != 1 {
		t.Fatalf("chunked response not recorded: %q then %q (replay=%q), upstream ran %d", b1, b2, r2.Header.Get("Idempotency-Replay"), u.count("c"))
	}
}

func TestProxyStreamsEventStreams(t *testing.T) {
	u, _, px := setup(t)
	post(t, px.URL+"/events", "e", "")
	r2, b2 := post(t, px.URL+"/events", "e", "")
	if r2.Header.Get("Idempotency-Replay") == "true" || u.count("e") != 2 || b2 != "data: run 2\n\n" {
		t.Fatalf("an event stream was recorded: %q replay=%q runs=%d", b2, r2.Header.Get("Idempotency-Replay"), u.count("e"))
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
	eng, err := engine.Open("data", &engine.Options{FS: vfs.NewMem()})
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
	if r, _ := post(t, px.URL+"/v1/charges", "k", "x"); r.StatusCode != 201 || u.count("k") != 1 {
		t.Fatalf("retry after the upstream came up: %d, upstream ran %d", r.StatusCode, u.count("k"))
	}
}

func TestProxyNotRecorded5xx(t *testing.T) {
	u, _, px := setup(t)
	post(t, px.URL+"/fail", "f", "")
	post(t, px.URL+"/fail", "f", "")
	if u.count("f") != 2 {
		t.Fatalf("a 503 from the upstream was replayed: upstream ran %d", u.count("f"))
	}
}

func TestProxyConcurrentDuplicates(t *testing.T) {
	u, _, px := setup(t)
	const n = 200
	var wg sync.WaitGroup
	var bodies sync.Map
	var failed atomic.Int64
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", px.URL+"/v1/charges", strings.NewReader("same"))
			req.Header.Set("Idempotency-Key", "dup")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				failed.Add(1)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			bodies.Store(fmt.Sprint(resp.StatusCode, string(b)), true)
		})
	}
	wg.Wait()
	distinct := 0
	bodies.Range(func(k, v any) bool { distinct++; return true })
	if failed.Load() != 0 || distinct != 1 || u.count("dup") != 1 {
		t.Fatalf("%d failed, %d distinct responses, upstream ran %d; want 0, 1, 1", failed.Load(), distinct, u.count("dup"))
	}
}
