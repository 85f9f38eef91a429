package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// TestKilledProxyKeepsCompletedRecordsAndRecoversClaims is the
// crash-under-load campaign: `idemkv proxy` in front of a counting
// upstream, concurrent clients with new keys, retries, duplicates and
// conflicting bodies, and a kill -9 of the proxy at a random moment of
// every cycle. After each kill the data directory must open, and
// then:
//
//   - no upstream run of a key started after a completed record of the key
//     existed (the side effect never ran twice once it had completed);
//   - every completed response a client received is the stored record;
//   - after the restart every completed record replays byte for byte,
//     without the upstream running;
//   - every claim the kill interrupted is recovered by its retry (the
//     upstream runs again, and the middleware counts it as recovered).
//
// IDEMKV_CRASH_CAMPAIGN_CYCLES sets the number of cycles (default 3, the
// CI's short mode; the README quotes a long run).
func TestKilledProxyKeepsCompletedRecordsAndRecoversClaims(t *testing.T) {
	if testing.Short() {
		t.Skip("crash campaign: not in -short mode")
	}
	cycles := 3
	if v := os.Getenv("IDEMKV_CRASH_CAMPAIGN_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("IDEMKV_CRASH_CAMPAIGN_CYCLES=%q", v)
		}
		cycles = n
	}
	up := newCountingUpstream()
	upstream := httptest.NewServer(up)
	defer upstream.Close()
	dir := t.TempDir()
	args := []string{"proxy", "-upstream", upstream.URL, "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-data", dir}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	seen := newObservations()
	var totals campaignTotals
	p := start(t, args...)
	for cycle := range cycles {
		// Load, then kill -9 at a random moment of it.
		loadFor := time.Duration(150+rng.IntN(450)) * time.Millisecond
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				drive(ctx, p.addr, cycle, w, seen, &totals)
			}()
		}
		time.Sleep(loadFor)
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-p.done
		cancel()
		wg.Wait()

		// The directory must open; check the stored records against the
		// upstream's runs and the clients' observations.
		completed, interrupted := checkStore(t, dir, cycle, up, seen)
		totals.kills++
		totals.interrupted += len(interrupted)

		// Restart: completed records replay without the upstream;
		// interrupted claims are recovered.
		p = start(t, args...)
		for k, rec := range completed {
			runs := up.runs(k)
			status, hdr, body := sendCampaign(t, p.addr, k)
			if status != rec.Status || hdr.Get("Idempotency-Replay") != "true" || body != string(rec.Body) {
				t.Fatalf("cycle %d: key %s after restart: %d replay=%q %q; want the stored %d %q",
					cycle, k, status, hdr.Get("Idempotency-Replay"), body, rec.Status, rec.Body)
			}
			if up.runs(k) != runs {
				t.Fatalf("cycle %d: key %s: the upstream ran again for a replay", cycle, k)
			}
			totals.replayChecks++
		}
		for _, k := range interrupted {
			runs := up.runs(k)
			status, hdr, body := sendCampaign(t, p.addr, k)
			if status != http.StatusCreated || hdr.Get("Idempotency-Replay") != "false" || up.runs(k) != runs+1 {
				t.Fatalf("cycle %d: interrupted key %s: %d replay=%q %q, upstream runs %d -> %d; want a new run",
					cycle, k, status, hdr.Get("Idempotency-Replay"), body, runs, up.runs(k))
			}
			seen.complete(k, status, body)
		}
		if got := recoveredCount(t, p.admin); got != len(interrupted) {
			t.Fatalf("cycle %d: %d requests counted as recovered; want %d (one per interrupted claim)", cycle, got, len(interrupted))
		}
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("final SIGTERM: %v\n%s", err, p.stderr)
	}
	t.Logf("%d cycles, %d kills: %d requests (%d completed answers, %d conflicts, %d cut by a kill), %d upstream runs, "+
		"%d replays checked after restarts, %d interrupted claims recovered, 0 violations",
		cycles, totals.kills, totals.requests.Load(), totals.completed.Load(), totals.conflicts.Load(), totals.cut.Load(),
		up.total(), totals.replayChecks, totals.interrupted)
}

type campaignTotals struct {
	requests, completed, conflicts, cut atomic.Int64
	kills, replayChecks, interrupted    int
}

// requestBody is the body of every request for key k; conflicting
// requests send another one.
func requestBody(k string, conflicting bool) string {
	if conflicting {
		return fmt.Sprintf(`{"key":%q,"amount":2}`, k)
	}
	return fmt.Sprintf(`{"key":%q,"amount":1}`, k)
}

// drive sends requests until ctx is done: mostly new keys, some retries
// of keys this worker used before (in this cycle or earlier ones), some
// duplicates sent at once, and some conflicting bodies for keys already
// answered.
func drive(ctx context.Context, addr string, cycle, w int, seen *observations, totals *campaignTotals) {
	rng := rand.New(rand.NewPCG(uint64(cycle), uint64(w)))
	client := &http.Client{Timeout: 10 * time.Second}
	var mine []string
	for n := 0; ctx.Err() == nil; n++ {
		k := fmt.Sprintf("c%d-w%d-%d", cycle, w, n)
		conflicting := false
		switch r := rng.IntN(10); {
		case r < 3 && len(mine) > 0:
			k = mine[rng.IntN(len(mine))]
		case r == 3 && len(mine) > 0:
			k = mine[rng.IntN(len(mine))]
			conflicting = seen.completed(k)
		default:
			mine = append(mine, k)
		}
		dups := 1
		if rng.IntN(8) == 0 {
			dups = 3
		}
		var wg sync.WaitGroup
		for range dups {
			wg.Add(1)
			go func() {
				defer wg.Done()
				one(ctx, client, addr, k, conflicting, seen, totals)
			}()
		}
		wg.Wait()
	}
}

// one sends one request and records what it got.
func one(ctx context.Context, client *http.Client, addr, k string, conflicting bool, seen *observations, totals *campaignTotals) {
	totals.requests.Add(1)
	req, _ := http.NewRequestWithContext(ctx, "POST", addr+"/v1/things", bytes.NewReader([]byte(requestBody(k, conflicting))))
	req.Header.Set("Authorization", "Bearer sk_campaign")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", k)
	resp, err := client.Do(req)
	if err != nil {
		totals.cut.Add(1)
		return
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		totals.cut.Add(1)
		return
	}
	switch {
	case resp.StatusCode == http.StatusConflict && conflicting:
		totals.conflicts.Add(1)
	case resp.StatusCode == http.StatusCreated && !conflicting:
		totals.completed.Add(1)
		seen.complete(k, resp.StatusCode, string(b))
	default:
		seen.fail(fmt.Errorf("key %s (conflicting %v): unexpected %d %q", k, conflicting, resp.StatusCode, b))
	}
}

// observations are the completed answers clients received.
type observations struct {
	mu   sync.Mutex
	resp map[string]observed
	errs []error
}

type observed struct {
	status int
	body   string
	at     time.Time
}

func newObservations() *observations { return &observations{resp: map[string]observed{}} }

func (o *observations) complete(k string, status int, body string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if prev, ok := o.resp[k]; ok {
		if prev.status != status || prev.body != body {
			o.errs = append(o.errs, fmt.Errorf("key %s answered %d %q, earlier %d %q", k, status, body, prev.status, prev.body))
		}
		return
	}
	o.resp[k] = observed{status, body, time.Now()}
}

func (o *observations) completed(k string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.resp[k]
	return ok
}

func (o *observations) fail(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.errs = append(o.errs, err)
}

// checkStore opens the data directory of the killed proxy and checks it
// against the upstream and the clients; it returns the completed records
// of the keys the campaign used, by key, and the keys of interrupted
// claims.
func checkStore(t *testing.T, dir string, cycle int, up *countingUpstream, seen *observations) (map[string]*record.Record, []string) {
	t.Helper()
	seen.mu.Lock()
	errs := seen.errs
	seen.errs = nil
	seen.mu.Unlock()
	for _, err := range errs {
		t.Errorf("cycle %d: %v", cycle, err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	e, err := engine.Open(dir, nil)
	if err != nil {
		t.Fatalf("cycle %d: the data directory does not open after kill -9: %v", cycle, err)
	}
	defer e.Close()
	completed := map[string]*record.Record{}
	var interrupted []string
	err = e.Scan(context.Background(), engine.ScanOptions{WithBody: true}, func(ent engine.Entry) error {
		if ent.Err != nil {
			return fmt.Errorf("key %v: %w", ent.Key, ent.Err)
		}
		k := ent.Key.Key
		switch ent.Record.State {
		case record.Completed:
			completed[k] = ent.Record
		case record.Claimed:
			interrupted = append(interrupted, k)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("cycle %d: scan: %v", cycle, err)
	}
	for k, rec := range completed {
		for i, started := range up.starts(k) {
			if started.After(rec.CompletedAt) {
				t.Fatalf("cycle %d: key %s: upstream run %d started at %v, after the record completed at %v",
					cycle, k, i+1, started, rec.CompletedAt)
			}
		}
	}
	seen.mu.Lock()
	defer seen.mu.Unlock()
	for k, o := range seen.resp {
		rec, ok := completed[k]
		if !ok {
			t.Fatalf("cycle %d: key %s: a client received a completed answer, but no completed record is stored", cycle, k)
		}
		if rec.Status != o.status || string(rec.Body) != o.body {
			t.Fatalf("cycle %d: key %s: stored %d %q, a client received %d %q", cycle, k, rec.Status, rec.Body, o.status, o.body)
		}
	}
	return completed, interrupted
}

// countingUpstream runs each request's side effect (a counter per key)
// and answers 201 with the run number.
type countingUpstream struct {
	mu  sync.Mutex
	run map[string][]time.Time
}

func newCountingUpstream() *countingUpstream { return &countingUpstream{run: map[string][]time.Time{}} }

func (u *countingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	k := r.Header.Get("Idempotency-Key")
	u.mu.Lock()
	u.run[k] = append(u.run[k], time.Now())
	n := len(u.run[k])
	u.mu.Unlock()
	time.Sleep(time.Duration(rand.IntN(5000)) * time.Microsecond) // widen the window a kill can hit
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(map[string]any{"key": k, "run": n, "request": json.RawMessage(body)})
}

func (u *countingUpstream) runs(k string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.run[k])
}

func (u *countingUpstream) starts(k string) []time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]time.Time(nil), u.run[k]...)
}

func (u *countingUpstream) total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, r := range u.run {
		n += len(r)
	}
	return n
}

var recoveredRE = regexp.MustCompile(`(?m)^idemkv_http_recovered_total (\d+)$`)

// recoveredCount reads the recovered counter from the admin listener.
func recoveredCount(t *testing.T, admin string) int {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := recoveredRE.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no idemkv_http_recovered_total in /metrics:\n%s", b)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// sendCampaign sends key k's request as the campaign's clients do.
func sendCampaign(t *testing.T, addr, k string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", addr+"/v1/things", bytes.NewReader([]byte(requestBody(k, false))))
	req.Header.Set("Authorization", "Bearer sk_campaign")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", k)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}
