package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// keyedUpstream counts the runs of each idempotency key; /slow paths take
// 400 ms.
type keyedUpstream struct {
	mu        sync.Mutex
	runs      map[string]int
	recovered map[string]bool // a run was marked Idempotency-Recovered
}

func (u *keyedUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	u.mu.Lock()
	u.runs[key]++
	n := u.runs[key]
	if r.Header.Get("Idempotency-Recovered") == "true" {
		u.recovered[key] = true
	}
	u.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/slow") {
		time.Sleep(400 * time.Millisecond)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(201)
	fmt.Fprintf(w, `{"key":%q,"run":%d}`, key, n)
}

func (u *keyedUpstream) count(key string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.runs[key]
}

// TestProxyPostgresContract is the black-box HTTP contract against
// `idemkv proxy -postgres URL` (configured from the environment): first
// request, replay, conflict naming the original, concurrent duplicates
// running the upstream once, a second replica on the same database, a
// graceful restart, and a kill -9 — completed records replay after it,
// and the request it interrupted runs again once its lease is over.
func TestProxyPostgresContract(t *testing.T) {
	url := pgtest.Start(t)
	// Short, so that the key a kill interrupts is recovered soon.
	const lease = time.Second
	up := &keyedUpstream{runs: map[string]int{}, recovered: map[string]bool{}}
	upstream := httptest.NewServer(up)
	defer upstream.Close()
	t.Setenv("IDEMKV_POSTGRES", url)
	t.Setenv("IDEMKV_SCOPE_SECRET", "a secret every replica shares")
	args := []string{"proxy", "-listen", "127.0.0.1:0", "-upstream", upstream.URL, "-lease", lease.String()}
	p := start(t, args...)

	s1, h1, b1 := send(t, "POST", p.addr+"/v1/charges", "first", `{"amount":5}`)
	s2, h2, b2 := send(t, "POST", p.addr+"/v1/charges", "first", `{"amount":5}`)
	if s1 != 201 || h1.Get("Idempotency-Replay") != "false" || s2 != 201 || b2 != b1 || h2.Get("Idempotency-Replay") != "true" {
		t.Fatalf("first and replay: %d %s (%s) / %d %s (%s)", s1, b1, h1.Get("Idempotency-Replay"), s2, b2, h2.Get("Idempotency-Replay"))
	}
	s3, _, b3 := send(t, "POST", p.addr+"/v1/charges", "first", `{"amount":6}`)
	var prob struct {
		Code   string
		Fields map[string]string
	}
	_ = json.Unmarshal([]byte(b3), &prob)
	if s3 != 409 || prob.Code != "idempotency_conflict" || prob.Fields["conflicts_with"] != h1.Get("X-Request-Id") {
		t.Fatalf("conflict: %d %s; want 409 naming %s", s3, b3, h1.Get("X-Request-Id"))
	}

	// Concurrent duplicates, half of them on a second replica.
	q := start(t, args...)
	var wg sync.WaitGroup
	bodies := make([]string, 12)
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := p.addr
			if i%2 == 1 {
				addr = q.addr
			}
			s, _, b := send(t, "POST", addr+"/slow/v1/charges", "dup", `{"amount":7}`)
			if s != 201 {
				t.Errorf("duplicate %d: %d %s", i, s, b)
			}
			bodies[i] = b
		}()
	}
	wg.Wait()
	if n := up.count("dup"); n != 1 {
		t.Fatalf("12 concurrent duplicates on two replicas ran the upstream %d times", n)
	}
	for i, b := range bodies {
		if b != bodies[0] {
			t.Fatalf("duplicate %d got %s, the first %s", i, b, bodies[0])
		}
	}
	if err := q.stop(t); err != nil {
		t.Fatalf("exit: %v\n%s", err, q.stderr)
	}

	// A graceful restart keeps everything.
	if err := p.stop(t); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.stderr)
	}
	p = start(t, args...)
	if s, h, b := send(t, "POST", p.addr+"/v1/charges", "first", `{"amount":5}`); s != 201 || b != b1 || h.Get("Idempotency-Replay") != "true" {
		t.Fatalf("after a restart: %d %s", s, b)
	}

	// kill -9 while a request runs in the upstream.
	go func() {
		req, _ := http.NewRequest("POST", p.addr+"/slow/v1/charges", strings.NewReader(`{"amount":8}`))
		req.Header.Set("Authorization", "Bearer sk_test")
		req.Header.Set("Content-Type", "application/json") // as send's: the same fingerprint
		req.Header.Set("Idempotency-Key", "killed")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "the upstream to get the request", func() bool { return up.count("killed") == 1 })
	p.cmd.Process.Kill()
	<-p.done
	p = start(t, args...)
	if s, h, b := send(t, "POST", p.addr+"/v1/charges", "first", `{"amount":5}`); s != 201 || b != b1 || h.Get("Idempotency-Replay") != "true" {
		t.Fatalf("after kill -9: %d %s", s, b)
	}
	// The retry of the interrupted key waits for its claim, which no one
	// renews any more, and runs it again once its lease is over, as a
	// recovery.
	s, h, b := send(t, "POST", p.addr+"/slow/v1/charges", "killed", `{"amount":8}`)
	up.mu.Lock()
	recovered := up.recovered["killed"]
	up.mu.Unlock()
	if s != 201 || h.Get("Idempotency-Replay") != "false" || up.count("killed") != 2 || !recovered {
		t.Fatalf("the interrupted key: %d %s (upstream ran %d times, recovered %v); want it run again as a recovery", s, b, up.count("killed"), recovered)
	}
	if s, _, b2 := send(t, "POST", p.addr+"/slow/v1/charges", "killed", `{"amount":8}`); s != 201 || b2 != b {
		t.Fatalf("its replay: %d %s", s, b2)
	}
	if n := up.count("first"); n != 1 {
		t.Fatalf("the upstream ran %d times for a key completed before the restarts", n)
	}

	// Without a scope secret, a replica is refused.
	t.Setenv("IDEMKV_SCOPE_SECRET", "")
	if code, _, errOut := runCmd(t, "proxy", "-listen", "127.0.0.1:0", "-upstream", upstream.URL); code != 1 || !strings.Contains(errOut, "-postgres needs a scope secret") {
		t.Fatalf("a replica without a secret: exit %d, stderr:\n%s", code, errOut)
	}
}
