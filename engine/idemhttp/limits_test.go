package idemhttp_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
)

// gatedHandler blocks every run until gate is closed, and counts runs.
func gatedHandler(gate chan struct{}, runs *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-gate
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"run":%d}`, runs.Add(1))
	})
}

type answer struct {
	status     int
	code       string
	retryAfter string
	replay     bool
	err        error
}

// post sends a POST with key and body on client, and reads the answer.
func post(client *http.Client, url, key string, body []byte) answer {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("Authorization", idemtest.DefaultCredential)
	resp, err := client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), replay: resp.Header.Get("Idempotency-Replay") == "true"}
	var p struct{ Code string }
	if json.Unmarshal(b, &p) == nil {
		a.code = p.Code
	}
	return a
}

// TestWaiterLimits (finding 5): duplicates of a running request wait up
// to MaxWaitersPerKey per key and MaxWaiters in all; one more gets 409
// idempotency_request_in_progress with Retry-After at once, not a wait;
// those that waited get the replay, and the handler runs once per key.
func TestWaiterLimits(t *testing.T) {
	gate := make(chan struct{})
	var runs atomic.Int64
	srv, m := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{MaxWaiters: 5, MaxWaitersPerKey: 3}, gatedHandler(gate, &runs))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var wg sync.WaitGroup
	answers := make(chan answer, 64)
	send := func(key string) {
		wg.Go(func() { answers <- post(client, srv.URL+"/v1/charges", key, []byte(`{}`)) })
	}
	// Two keys, each running; then duplicates: 3 wait on a, 2 on b
	// (MaxWaiters 5), every other is refused at once.
	send("a")
	send("b")
	idemtest.WaitFor(t, "both first requests run", func() bool { return m.Stats().Proceeded == 2 })
	for range 6 {
		send("a")
	}
	idemtest.WaitFor(t, "three wait on a, three refused", func() bool { s := m.Stats(); return s.Waiting == 3 && s.WaitersRefused == 3 })
	for range 4 {
		send("b")
	}
	idemtest.WaitFor(t, "two wait on b (five in all), two refused", func() bool { s := m.Stats(); return s.Waiting == 5 && s.WaitersRefused == 5 })
	refused := 0
	for range 5 {
		a := <-answers
		if a.status != http.StatusConflict || a.code != idemhttp.CodeInProgress || a.retryAfter == "" {
			t.Fatalf("a duplicate over the limits: %+v; want 409 %s with Retry-After", a, idemhttp.CodeInProgress)
		}
		refused++
	}
	close(gate)
	wg.Wait()
	close(answers)
	replays := 0
	for a := range answers {
		if a.status == 201 && a.replay {
			replays++
		} else if a.status != 201 {
			t.Fatalf("after the gate: %+v", a)
		}
	}
	if runs.Load() != 2 || replays != 5 || m.Stats().Waiting != 0 {
		t.Fatalf("handler ran %d times, %d replays, %d still waiting; want 2, 5, 0", runs.Load(), replays, m.Stats().Waiting)
	}
}

// heapBytes is the memory of heap objects (live and not yet swept).
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestBodyMemoryIsBounded (finding 5): many duplicates of a 1 MiB request
// that runs long hold at most MaxBufferedBytes of bodies: peak heap stays
// under the budget plus a constant (it grew by about 1 MiB per waiter
// before), those over it get 503 idempotency_overloaded or 409 in
// progress with Retry-After, the handler runs once, and every byte of
// the budget is given back at the end.
func TestBodyMemoryIsBounded(t *testing.T) {
	const (
		n      = 120
		budget = 16 << 20
		slack  = 16 << 20 // connections, goroutines' buffers, the engine
	)
	gate := make(chan struct{})
	var runs atomic.Int64
	srv, m := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{MaxBufferedBytes: budget, MaxWaiters: -1, MaxWaitersPerKey: -1},
		gatedHandler(gate, &runs))
	body := []byte(`{"blob":"` + strings.Repeat("x", 1<<20-20) + `"}`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}

	runtime.GC()
	base := heapBytes()
	var peak, peakBudget atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if h := heapBytes(); h > peak.Load() {
				peak.Store(h)
			}
			if b := uint64(m.Stats().BufferedBytes); b > peakBudget.Load() {
				peakBudget.Store(b)
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()

	var wg sync.WaitGroup
	answers := make([]answer, n)
	for i := range n {
		wg.Go(func() { answers[i] = post(client, srv.URL+"/v1/uploads", "big", body) })
	}
	// Wait until every duplicate is waiting or has been answered.
	idemtest.WaitFor(t, "every request waiting or refused", func() bool {
		s := m.Stats()
		return s.Proceeded == 1 && uint64(s.Waiting)+s.OverBudget+s.WaitersRefused == n-1
	})
	close(gate)
	wg.Wait()
	close(stop)
	<-sampled

	var replays, overloaded int
	for _, a := range answers {
		switch {
		case a.err != nil:
			t.Fatalf("request failed: %v", a.err)
		case a.status == 201:
			if a.replay {
				replays++
			}
		case a.status == http.StatusServiceUnavailable && a.code == idemhttp.CodeOverloaded && a.retryAfter != "":
			overloaded++
		default:
			t.Fatalf("answer %+v; want 201, or 503 %s with Retry-After", a, idemhttp.CodeOverloaded)
		}
	}
	grown := int64(peak.Load()) - int64(base)
	t.Logf("%d requests of 1 MiB: %d replays, %d overloaded; heap grew %.1f MiB at most (budget %d MiB), budget used %.1f MiB at most",
		n, replays, overloaded, float64(grown)/(1<<20), budget>>20, float64(peakBudget.Load())/(1<<20))
	if runs.Load() != 1 || replays == 0 || overloaded == 0 {
		t.Fatalf("handler ran %d times, %d replays, %d overloaded; want once, some of each", runs.Load(), replays, overloaded)
	}
	if peakBudget.Load() > budget {
		t.Fatalf("the budget's gauge reached %d bytes; want at most %d", peakBudget.Load(), budget)
	}
	if grown > budget+slack {
		t.Fatalf("heap grew %d bytes; want at most the budget %d plus %d", grown, budget, slack)
	}
	if s := m.Stats(); s.BufferedBytes != 0 || s.Waiting != 0 {
		t.Fatalf("after every request: %d bytes held, %d waiting; want none", s.BufferedBytes, s.Waiting)
	}
}

// TestChunkedBodiesCountAgainstTheBudget: a body of unknown length
// (chunked) is reserved as its buffer grows: requests held by a slow
// handler take the budget until a further one is refused with 503, and
// the reservations never pass the budget.
func TestChunkedBodiesCountAgainstTheBudget(t *testing.T) {
	const budget = 160 << 10
	gate := make(chan struct{})
	var runs atomic.Int64
	srv, m := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{MaxRequestBody: 64 << 10, MaxBufferedBytes: budget},
		gatedHandler(gate, &runs))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var wg sync.WaitGroup
	answers := make([]answer, 10)
	for i := range answers {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", srv.URL+"/v1/uploads", io.NopCloser(strings.NewReader(strings.Repeat("y", 40<<10))))
			req.ContentLength = -1 // sent chunked
			req.Header.Set("Idempotency-Key", fmt.Sprint("chunked-", i))
			req.Header.Set("Authorization", idemtest.DefaultCredential)
			resp, err := client.Do(req)
			if err != nil {
				answers[i] = answer{err: err}
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			answers[i] = answer{status: resp.StatusCode}
		})
	}
	idemtest.WaitFor(t, "every request running or refused", func() bool {
		s := m.Stats()
		return s.Proceeded+s.OverBudget == 10
	})
	if s := m.Stats(); s.OverBudget == 0 || s.Proceeded == 0 || s.BufferedBytes > budget {
		t.Fatalf("%d running, %d refused, %d bytes held; want some of each, at most %d bytes", s.Proceeded, s.OverBudget, s.BufferedBytes, budget)
	}
	close(gate)
	wg.Wait()
	for _, a := range answers {
		if a.err != nil || a.status != 201 && a.status != http.StatusServiceUnavailable {
			t.Fatalf("answer %+v; want 201 or 503", a)
		}
	}
	if s := m.Stats(); s.BufferedBytes != 0 {
		t.Fatalf("%d bytes still held", s.BufferedBytes)
	}
}
