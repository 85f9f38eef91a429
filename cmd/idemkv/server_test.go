package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine/redistest"
	"github.com/redis/go-redis/v9"
)

func TestProxyCommandSurvivesRestart(t *testing.T) {
	var mu sync.Mutex
	runs := 0
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		runs++
		n := runs
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"charge":%d}`, n)
	}))
	defer up.Close()
	data := t.TempDir()
	args := []string{"proxy", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-upstream", up.URL, "-data", data}

	p := start(t, args...)
	s1, _, b1 := send(t, "POST", p.addr+"/v1/charges", "c1", `{"amount":5}`)
	if s1 != 201 {
		t.Fatalf("first: %d %s", s1, b1)
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v; stderr:\n%s", err, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "stopped") {
		t.Errorf("no graceful stop logged:\n%s", p.stderr)
	}

	p = start(t, args...)
	s2, h2, b2 := send(t, "POST", p.addr+"/v1/charges", "c1", `{"amount":5}`)
	if s2 != 201 || b2 != b1 || h2.Get("Idempotency-Replay") != "true" {
		t.Fatalf("after a restart: %d %q replay=%q; want the replay of %q", s2, b2, h2.Get("Idempotency-Replay"), b1)
	}
	if s, _, _ := send(t, "POST", p.addr+"/v1/charges", "c1", `{"amount":6}`); s != 409 {
		t.Fatalf("conflict: %d", s)
	}
	// The admin listener reports the replay and the conflict.
	resp, err := http.Get(p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"idemkv_http_replayed_total 1\n", "idemkv_http_conflicts_total 1\n", "idemkv_store_disk_bytes"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if resp, err := http.Get(p.admin + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz: %v %v", resp, err)
	}
	mu.Lock()
	if runs != 1 {
		t.Errorf("upstream ran %d times; want 1", runs)
	}
	mu.Unlock()
	p.stop(t)
}

func TestServeCommand(t *testing.T) {
	p := start(t, "serve", "-listen", "127.0.0.1:0", "-data", t.TempDir())
	s1, _, b1 := send(t, "POST", p.addr+"/v1/calls", "k", `{"to":"+15550100"}`)
	s2, h2, b2 := send(t, "POST", p.addr+"/v1/calls", "k", `{"to":"+15550100"}`)
	s3, _, b3 := send(t, "POST", p.addr+"/v1/calls", "k", `{"to":"+15550199"}`)
	if s1 != 201 || s2 != 201 || b1 != b2 || h2.Get("Idempotency-Replay") != "true" || s3 != 409 || !strings.Contains(b3, "idempotency_conflict") {
		t.Fatalf("tour: %d %s / %d %s / %d %s", s1, b1, s2, b2, s3, b3)
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.stderr)
	}
}

func TestProxyCommandUsage(t *testing.T) {
	if code := run([]string{"proxy", "-upstream", "not a url"}); code != 2 {
		t.Fatalf("bad -upstream: exit %d; want 2", code)
	}
	if code := run([]string{"proxy", "-route", "POST"}); code != 2 {
		t.Fatalf("bad -route: exit %d; want 2", code)
	}
}

// TestServeHeaderLimits checks the limits on request headers: a header
// block over -max-header-bytes, or over-long idempotency keys, get clear
// 4xx answers and the server keeps serving.
func TestServeHeaderLimits(t *testing.T) {
	p := start(t, "serve", "-listen", "127.0.0.1:0", "-data", t.TempDir(), "-max-header-bytes", "4096")
	req, _ := http.NewRequest("POST", p.addr+"/v1/calls", strings.NewReader(`{}`))
	req.Header.Set("Idempotency-Key", "big-headers")
	for i := range 200 {
		req.Header.Set(fmt.Sprintf("X-Junk-%d", i), strings.Repeat("j", 64))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 13 KB header block: %d; want 431", resp.StatusCode)
	}
	status, _, body := send(t, "POST", p.addr+"/v1/calls", strings.Repeat("k", 256), `{}`)
	if status != http.StatusBadRequest || !strings.Contains(body, "idempotency_key_invalid") {
		t.Fatalf("a 256-byte key: %d %s", status, body)
	}
	if status, _, _ := send(t, "POST", p.addr+"/v1/calls", "fine", `{}`); status != http.StatusCreated {
		t.Fatalf("a normal request after the refusals: %d", status)
	}
}

// TestServeRedisReplicas runs two `idemkv serve -redis` processes on one
// Redis: a retry sent to the other replica is replayed, a conflicting body
// is refused there too, and the records outlive both processes.
func TestServeRedisReplicas(t *testing.T) {
	url := redistest.Start(t, nil)
	secretFile := filepath.Join(t.TempDir(), "scope-secret")
	if err := os.WriteFile(secretFile, []byte("a secret every replica shares\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := start(t, "serve", "-listen", "127.0.0.1:0", "-redis", url, "-scope-secret-file", secretFile)
	t.Setenv("IDEMKV_SCOPE_SECRET", "a secret every replica shares") // the same, from the environment
	b := start(t, "serve", "-listen", "127.0.0.1:0", "-redis", url)
	key := fmt.Sprint("replicas-", time.Now().UnixNano())
	s1, _, b1 := send(t, "POST", a.addr+"/v1/calls", key, `{"to":"+15550100"}`)
	s2, h2, b2 := send(t, "POST", b.addr+"/v1/calls", key, `{"to":"+15550100"}`)
	s3, _, b3 := send(t, "POST", b.addr+"/v1/calls", key, `{"to":"+15550199"}`)
	if s1 != 201 || s2 != 201 || b1 != b2 || h2.Get("Idempotency-Replay") != "true" || s3 != 409 || !strings.Contains(b3, "idempotency_conflict") {
		t.Fatalf("across replicas: %d %s / %d %s / %d %s", s1, b1, s2, b2, s3, b3)
	}
	for _, p := range []*process{a, b} {
		if err := p.stop(t); err != nil {
			t.Fatalf("exit: %v\n%s", err, p.stderr)
		}
	}
	c := start(t, "serve", "-listen", "127.0.0.1:0", "-redis", url)
	s4, h4, b4 := send(t, "POST", c.addr+"/v1/calls", key, `{"to":"+15550100"}`)
	if s4 != 201 || b4 != b1 || h4.Get("Idempotency-Replay") != "true" {
		t.Fatalf("after both replicas restarted: %d %s", s4, b4)
	}

	// A replica given another secret would find none of the records: it
	// is refused at start, as is one given none.
	t.Setenv("IDEMKV_SCOPE_SECRET", "another secret, of another team")
	if code, _, errOut := runCmd(t, "serve", "-listen", "127.0.0.1:0", "-redis", url); code != 1 || !strings.Contains(errOut, "scope secret differs") {
		t.Fatalf("a replica with another secret: exit %d, stderr:\n%s", code, errOut)
	}
	t.Setenv("IDEMKV_SCOPE_SECRET", "")
	if code, _, errOut := runCmd(t, "serve", "-listen", "127.0.0.1:0", "-redis", url); code != 1 || !strings.Contains(errOut, "-redis needs a scope secret") {
		t.Fatalf("a replica without a secret: exit %d, stderr:\n%s", code, errOut)
	}
	t.Setenv("IDEMKV_SCOPE_SECRET", "short")
	if code, _, errOut := runCmd(t, "serve", "-listen", "127.0.0.1:0", "-redis", url); code != 1 || !strings.Contains(errOut, "at least 16") {
		t.Fatalf("a replica with a short secret: exit %d, stderr:\n%s", code, errOut)
	}
}

// TestServeTimeoutsFreeSlowClients: a client that trickles its body, or
// keeps an idle connection, does not hold a connection (and the buffered
// body, and a goroutine) for ever: the listener closes it after its
// timeouts (-read-timeout, -idle-timeout).
func TestServeTimeoutsFreeSlowClients(t *testing.T) {
	p := start(t, "serve", "-listen", "127.0.0.1:0", "-data", t.TempDir(),
		"-read-timeout", "300ms", "-idle-timeout", "300ms", "-read-header-timeout", "300ms")
	addr := strings.TrimPrefix(p.addr, "http://")
	closedWithin := func(name string, c net.Conn, feed func() bool) {
		t.Helper()
		got := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, c) // until the server closes it
			got <- err
		}()
		deadline := time.After(10 * time.Second)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-got:
				return
			case <-tick.C:
				if feed != nil && !feed() {
					return // the server closed it: writes fail
				}
			case <-deadline:
				t.Fatalf("%s: the connection is still open after 10 s", name)
			}
		}
	}

	// trickle sends start, then chunk every 100 ms (never, if chunk is
	// empty) until the server closes the connection.
	trickle := func(name, start, chunk string) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, start)
		var feed func() bool
		if chunk != "" {
			feed = func() bool {
				_, err := io.WriteString(c, chunk)
				return err == nil
			}
		}
		closedWithin(name, c, feed)
	}
	trickle("trickled body", "POST /v1/calls HTTP/1.1\r\nHost: x\r\nIdempotency-Key: trickle\r\nContent-Length: 100000\r\n\r\n", "x")
	trickle("trickled headers", "POST /v1/calls HTTP/1.1\r\n", "X-A: b\r\n")
	trickle("idle connection", "POST /v1/calls HTTP/1.1\r\nHost: x\r\nIdempotency-Key: idle\r\nContent-Length: 2\r\n\r\n{}", "")

	if status, _, _ := send(t, "POST", p.addr+"/v1/calls", "after", `{}`); status != http.StatusCreated {
		t.Fatalf("a normal request after the slow clients: %d", status)
	}
}

// TestServeRefusesRedisWithoutPersistence: serve -redis refuses a server
// that persists nothing, saying how to fix or accept it; with
// -redis-no-persistence it starts and warns.
func TestServeRefusesRedisWithoutPersistence(t *testing.T) {
	t.Setenv("IDEMKV_SCOPE_SECRET", "the scope secret of this test")
	url := redistest.Start(t, &redistest.Options{Config: []string{"--appendonly", "no", "--save", ""}})
	code, _, errOut := runCmd(t, "serve", "-listen", "127.0.0.1:0", "-redis", url)
	if code != 1 || !strings.Contains(errOut, "persists nothing") || !strings.Contains(errOut, "-redis-no-persistence") {
		t.Fatalf("serve on a Redis without persistence: exit %d, stderr:\n%s", code, errOut)
	}
	p := start(t, "serve", "-listen", "127.0.0.1:0", "-redis", url, "-redis-no-persistence")
	if status, _, _ := send(t, "POST", p.addr+"/v1/calls", "volatile", `{}`); status != http.StatusCreated {
		t.Fatalf("with -redis-no-persistence: %d", status)
	}
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.stderr.String(), "Redis persists nothing") {
		t.Fatalf("no warning at start; stderr:\n%s", p.stderr)
	}
}

// TestServeRedisLayout: -redis-layout 1 writes records as the hashes of
// versions before layout 2 (for a rolling upgrade from them), the default
// as strings, and each replays the other's; another layout is refused.
func TestServeRedisLayout(t *testing.T) {
	t.Setenv("IDEMKV_SCOPE_SECRET", "the scope secret of this test")
	url := redistest.Start(t, nil)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opt)
	defer rc.Close()
	if code, _, errOut := runCmd(t, "serve", "-listen", "127.0.0.1:0", "-redis", url, "-redis-layout", "3"); code != 1 || !strings.Contains(errOut, "Layout 3") {
		t.Fatalf("-redis-layout 3: exit %d, stderr:\n%s", code, errOut)
	}
	v1 := start(t, "serve", "-listen", "127.0.0.1:0", "-redis", url, "-redis-layout", "1")
	v2 := start(t, "serve", "-listen", "127.0.0.1:0", "-redis", url)
	for _, c := range []struct {
		writer, reader *process
		key, typ       string
	}{{v1, v2, "by-v1", "hash"}, {v2, v1, "by-v2", "string"}} {
		status, _, body := send(t, "POST", c.writer.addr+"/v1/calls", c.key, `{}`)
		if status != http.StatusCreated {
			t.Fatalf("%s: %d", c.key, status)
		}
		keys, err := rc.Keys(context.Background(), "idemkv:{*").Result()
		if err != nil {
			t.Fatal(err)
		}
		types := map[string]int{}
		for _, k := range keys {
			types[rc.Type(context.Background(), k).Val()]++
		}
		if types[c.typ] != 1 {
			t.Fatalf("after %s: records by type %v; want one %s", c.key, types, c.typ)
		}
		s2, h2, body2 := send(t, "POST", c.reader.addr+"/v1/calls", c.key, `{}`)
		if s2 != status || body2 != body || h2.Get("Idempotency-Replay") != "true" {
			t.Fatalf("%s replayed by the other layout: %d %q %v; want %d %q", c.key, s2, body2, h2, status, body)
		}
	}
}

// TestProxyAnonymousPolicy: behind the proxy, a keyed request with no
// tenant credential is refused by default (the upstream never runs),
// -scope-cookie scopes cookie sessions apart, -anonymous pass runs such
// requests without idempotency, and -anonymous shared (the old behaviour)
// warns at start.
func TestProxyAnonymousPolicy(t *testing.T) {
	up, runs := runCountingUpstream(t)
	post := func(addr string, hdr ...string) (int, http.Header, string) {
		t.Helper() // an anonymous client, unless hdr says otherwise
		return send(t, "POST", addr+"/v1/charges", "k", `{"amount":5}`, append([]string{"Authorization", ""}, hdr...)...)
	}
	proxy := func(extra ...string) *process {
		return start(t, append([]string{"proxy", "-listen", "127.0.0.1:0", "-upstream", up.URL, "-data", t.TempDir()}, extra...)...)
	}

	p := proxy()
	if s, _, b := post(p.addr, "Cookie", "sid=alice"); s != 400 || !strings.Contains(b, "idempotency_scope_missing") {
		t.Fatalf("anonymous keyed request, default policy: %d %s; want 400 idempotency_scope_missing", s, b)
	}
	if n := runs.Load(); n != 0 {
		t.Fatalf("the upstream ran %d times for a refused request", n)
	}
	p.stop(t)

	p = proxy("-scope-cookie", "sid")
	_, _, alice := post(p.addr, "Cookie", "sid=alice")
	s, h, bob := post(p.addr, "Cookie", "sid=bob")
	if s != 201 || h.Get("Idempotency-Replay") == "true" || bob == alice {
		t.Fatalf("bob with alice's key: %d %q replay=%q; want his own first run", s, bob, h.Get("Idempotency-Replay"))
	}
	if _, h, again := post(p.addr, "Cookie", "sid=alice"); again != alice || h.Get("Idempotency-Replay") != "true" {
		t.Fatalf("alice's retry: %q; want her replay %q", again, alice)
	}
	if s, _, _ := post(p.addr); s != 400 {
		t.Fatalf("no session cookie: %d; want 400", s)
	}
	p.stop(t)

	runs.Store(0)
	p = proxy("-anonymous", "pass")
	post(p.addr)
	if _, h, _ := post(p.addr); h.Get("Idempotency-Replay") == "true" || runs.Load() != 2 {
		t.Fatalf("-anonymous pass: upstream ran %d times, replay=%q; want 2 runs, no replay", runs.Load(), h.Get("Idempotency-Replay"))
	}
	p.stop(t)

	p = proxy("-anonymous", "shared")
	if !strings.Contains(p.stderr.String(), "share one anonymous scope") {
		t.Fatalf("-anonymous shared printed no warning:\n%s", p.stderr)
	}
	p.stop(t)
	if code := run([]string{"proxy", "-anonymous", "sometimes"}); code != 2 {
		t.Fatalf("-anonymous sometimes: exit %d; want 2", code)
	}
}

// TestProxyFingerprintExclude: with -fingerprint-exclude, a retry that
// differs only in the listed JSON fields replays through the proxy; any
// other change is a conflict; the upstream runs once.
func TestProxyFingerprintExclude(t *testing.T) {
	up, runs := runCountingUpstream(t)
	p := start(t, "proxy", "-listen", "127.0.0.1:0", "-upstream", up.URL, "-data", t.TempDir(),
		"-fingerprint-exclude", "sent_at", "-fingerprint-exclude", "meta.trace_id,meta.span_id")
	post := func(body string) (int, http.Header, string) {
		t.Helper()
		return send(t, "POST", p.addr+"/v1/charges", "k", body, "Content-Type", "application/json")
	}
	_, _, first := post(`{"amount":5,"sent_at":1,"meta":{"trace_id":"t1","span_id":"s1"}}`)
	if s, h, b := post(`{"amount":5,"sent_at":2,"meta":{"trace_id":"t2","span_id":"s2"}}`); s != 201 || b != first || h.Get("Idempotency-Replay") != "true" {
		t.Fatalf("retry with other excluded fields: %d %q; want the replay of %q", s, b, first)
	}
	if s, _, b := post(`{"amount":6,"sent_at":1,"meta":{"trace_id":"t1","span_id":"s1"}}`); s != 409 {
		t.Fatalf("another amount: %d %q; want 409", s, b)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("upstream ran %d times; want 1", n)
	}
}

// TestProxyRouteTTL: -route-ttl keeps one route's responses for less than
// -ttl: past it a retry runs the upstream again; another route still
// replays.
func TestProxyRouteTTL(t *testing.T) {
	up, runs := runCountingUpstream(t)
	p := start(t, "proxy", "-listen", "127.0.0.1:0", "-upstream", up.URL, "-data", t.TempDir(),
		"-route", "POST /v1/sessions/{id}", "-route", "POST /v1/charges", "-route-ttl", "POST /v1/sessions/{id}=1s")
	_, _, s1 := send(t, "POST", p.addr+"/v1/sessions/7", "k", `{}`)
	_, _, c1 := send(t, "POST", p.addr+"/v1/charges", "k", `{}`)
	time.Sleep(1300 * time.Millisecond)
	if _, h, s2 := send(t, "POST", p.addr+"/v1/sessions/7", "k", `{}`); s2 == s1 || h.Get("Idempotency-Replay") == "true" {
		t.Fatalf("past the route's TTL: %q; want a new run", s2)
	}
	if _, h, c2 := send(t, "POST", p.addr+"/v1/charges", "k", `{}`); c2 != c1 || h.Get("Idempotency-Replay") != "true" {
		t.Fatalf("another route: %q; want the replay of %q", c2, c1)
	}
	if n := runs.Load(); n != 3 {
		t.Fatalf("upstream ran %d times; want 3 (the session twice, the charge once)", n)
	}
	if code := run([]string{"proxy", "-route-ttl", "POST /v1/x"}); code != 2 {
		t.Fatalf("-route-ttl without a duration: exit %d; want 2", code)
	}
}

// runCountingUpstream is an upstream that answers 201 "run N", counting its
// runs; closed when t ends.
func runCountingUpstream(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	runs := new(atomic.Int64)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(201)
		fmt.Fprintf(w, "run %d", runs.Add(1))
	}))
	t.Cleanup(up.Close)
	return up, runs
}

// TestReadyzFollowsRedis: with -redis, /readyz turns 503 while
// redis-server is down and 200 again once it is back; /healthz (liveness)
// stays 200 throughout, since restarting the process would not bring
// Redis back.
func TestReadyzFollowsRedis(t *testing.T) {
	rs := redistest.Launch(t, nil)
	t.Setenv("IDEMKV_SCOPE_SECRET", "a secret every replica shares")
	p := start(t, "serve", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-redis", rs.URL())
	status := func(path string) int {
		resp, err := http.Get(p.admin + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if r, h := status("/readyz"), status("/healthz"); r != 200 || h != 200 {
		t.Fatalf("with Redis up: /readyz %d, /healthz %d", r, h)
	}
	rs.Stop()
	waitFor(t, "/readyz to turn 503", func() bool { return status("/readyz") == 503 })
	if h := status("/healthz"); h != 200 {
		t.Errorf("/healthz %d while Redis is down, want 200 (liveness)", h)
	}
	rs.Start()
	waitFor(t, "/readyz to turn 200", func() bool { return status("/readyz") == 200 })
}

// TestMetricsAreAPrometheusRegistry: the admin listener's /metrics holds
// the Go runtime's and the process's metrics beside idemkv's, outcomes by
// endpoint included.
func TestMetricsAreAPrometheusRegistry(t *testing.T) {
	p := start(t, "serve", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-data", t.TempDir())
	if s, _, b := send(t, "POST", p.addr+"/v1/calls", "m-1", `{"amount":1}`); s != 201 {
		t.Fatalf("%d %s", s, b)
	}
	resp, err := http.Get(p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"go_goroutines ", "process_resident_memory_bytes ", `idemkv_http_outcomes_total{endpoint="POST /v1/calls",outcome="proceed"} 1`, "idemkv_store_completes_total 1"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestAccessLog: with -access-log -log-format json, each request the
// middleware handles is one JSON line on standard error naming its
// outcome, endpoint, key, request ids and status; -log-level warn
// silences it.
func TestAccessLog(t *testing.T) {
	p := start(t, "serve", "-listen", "127.0.0.1:0", "-data", t.TempDir(), "-access-log", "-log-format", "json")
	send(t, "POST", p.addr+"/v1/calls", "log-1", `{"to":"+1"}`)
	send(t, "POST", p.addr+"/v1/calls", "log-1", `{"to":"+1"}`)
	type line struct {
		Msg    string `json:"msg"`
		Access struct {
			Outcome, Endpoint, Key string
			RequestID              string `json:"request_id"`
			OriginalRequestID      string `json:"original_request_id"`
			Status                 int
			Recorded               bool
		} `json:"access"`
	}
	var lines []line
	waitFor(t, "two access log lines", func() bool {
		lines = lines[:0]
		for _, l := range strings.Split(p.stderr.String(), "\n") {
			var v line
			if json.Unmarshal([]byte(l), &v) == nil && v.Msg == "request" {
				lines = append(lines, v)
			}
		}
		return len(lines) >= 2
	})
	// A request's line is written once its response is sent: the two
	// lines may come in either order.
	first, replay := lines[0].Access, lines[1].Access
	if first.Outcome == "replay" {
		first, replay = replay, first
	}
	if first.Outcome != "proceed" || first.Endpoint != "POST /v1/calls" || first.Key != "log-1" || first.Status != 201 || !first.Recorded {
		t.Errorf("first: %+v", first)
	}
	if replay.Outcome != "replay" || replay.OriginalRequestID != first.RequestID || first.RequestID == "" {
		t.Errorf("replay: %+v", replay)
	}

	quiet := start(t, "serve", "-listen", "127.0.0.1:0", "-data", t.TempDir(), "-access-log", "-log-level", "warn")
	send(t, "POST", quiet.addr+"/v1/calls", "log-2", `{"to":"+1"}`)
	if err := quiet.stop(t); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(quiet.stderr.String(), "msg=request") {
		t.Errorf("-log-level warn logged the access log:\n%s", quiet.stderr)
	}
}

// TestLockedDirectoryNamesItsHolder: a second server on a running one's
// data directory is refused with the holder's process id and what to do,
// and the offline tools read the running directory (read-only).
func TestLockedDirectoryNamesItsHolder(t *testing.T) {
	data := t.TempDir()
	p := start(t, "serve", "-listen", "127.0.0.1:0", "-data", data)
	send(t, "POST", p.addr+"/v1/calls", "lock-1", `{"to":"+1"}`)
	code, _, errOut := runCmd(t, "serve", "-listen", "127.0.0.1:0", "-data", data)
	if code != 1 || !strings.Contains(errOut, fmt.Sprintf("process %d has the directory open", p.cmd.Process.Pid)) {
		t.Errorf("exit %d: %s", code, errOut)
	}
	if code, out, errOut := runCmd(t, "stats", "-data", data); code != 0 || !strings.Contains(out, "disk bytes") {
		t.Errorf("stats on a running directory: exit %d: %s%s", code, out, errOut)
	}
}
