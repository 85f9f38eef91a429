package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// peakRSS is the peak resident memory of process pid (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Skip("no VmHWM in /proc/pid/status")
	return 0
}

// TestProxyMemoryUnderDuplicateFlood (finding 5, black-box): 300
// duplicates of a 1 MiB request, sent while the upstream holds the first,
// made the proxy grow by about 1 MiB each. With -max-buffered-bytes 16
// MiB its peak resident memory stays under its resident memory at start
// plus the budget and a constant; the upstream runs once; every answer is
// the response, or 503/409 with Retry-After.
func TestProxyMemoryUnderDuplicateFlood(t *testing.T) {
	const (
		n      = 300
		budget = 16 << 20
		slack  = 48 << 20 // connections, goroutines, Pebble's first memtable
	)
	release := make(chan struct{})
	var ran atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/v1/uploads" {
			ran.Add(1)
			<-release
		}
		w.WriteHeader(201)
		io.WriteString(w, `{"id":"up_1"}`)
	}))
	defer up.Close()
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	defer open()
	p := start(t, "proxy", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-upstream", up.URL, "-data", t.TempDir(),
		"-max-buffered-bytes", strconv.Itoa(budget), "-max-waiters", "-1", "-max-waiters-per-key", "-1")
	pid := p.cmd.Process.Pid
	// Warm up (the first request opens Pebble's memtable, the pools).
	if code, _, _ := send(t, "POST", p.addr+"/v1/warm", "warm", `{}`); code != 201 {
		open()
		t.Fatalf("warm-up: %d", code)
	}
	base := peakRSS(t, pid)

	body := bytes.Repeat([]byte("z"), 1<<20)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	var wg sync.WaitGroup
	var ok, busy, other atomic.Int64
	var firstOther atomic.Value
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", p.addr+"/v1/uploads", bytes.NewReader(body))
			req.Header.Set("Idempotency-Key", "flood")
			req.Header.Set("Authorization", "Bearer sk_test")
			resp, err := client.Do(req)
			if err != nil {
				other.Add(1)
				firstOther.CompareAndSwap(nil, err.Error())
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == 201 && string(b) == `{"id":"up_1"}`:
				ok.Add(1)
			case (resp.StatusCode == 503 || resp.StatusCode == 409) && resp.Header.Get("Retry-After") != "":
				busy.Add(1)
			default:
				other.Add(1)
				firstOther.CompareAndSwap(nil, fmt.Sprint(resp.StatusCode, " ", string(b)))
			}
		})
	}
	// Let the duplicates arrive (each is refused or waits), then let the
	// upstream answer.
	waitMetric(t, p.admin, func(m map[string]float64) bool {
		return m["idemkv_http_waiting"]+m["idemkv_http_over_budget_total"] >= n-1
	})
	open()
	wg.Wait()
	peak := peakRSS(t, pid)
	t.Logf("%d duplicates of 1 MiB: %d answered, %d told to retry; peak RSS %.1f MiB over the %.1f MiB after warm-up (budget %d MiB)",
		n, ok.Load(), busy.Load(), float64(peak-base)/(1<<20), float64(base)/(1<<20), budget>>20)
	if other.Load() != 0 || ran.Load() != 1 || ok.Load() == 0 || busy.Load() == 0 {
		t.Fatalf("%d unexpected answers (first: %v), upstream ran %d times, %d answered, %d told to retry", other.Load(), firstOther.Load(), ran.Load(), ok.Load(), busy.Load())
	}
	if peak-base > budget+slack {
		t.Fatalf("peak RSS grew %d bytes; want at most the budget %d plus %d", peak-base, budget, slack)
	}
}

// waitMetric polls the admin listener's /metrics until cond holds of the
// values (by metric name, without labels).
func waitMetric(t *testing.T, admin string, cond func(map[string]float64) bool) {
	t.Helper()
	for range 5000 {
		resp, err := http.Get(admin + "/metrics")
		if err == nil {
			m := map[string]float64{}
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				name, v, ok := strings.Cut(sc.Text(), " ")
				if ok && !strings.HasPrefix(name, "#") && !strings.Contains(name, "{") {
					m[name], _ = strconv.ParseFloat(v, 64)
				}
			}
			resp.Body.Close()
			if cond(m) {
				return
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("the metrics never met the condition")
}
