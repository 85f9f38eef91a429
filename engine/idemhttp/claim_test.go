package idemhttp_test

import (
	"context"
	"fmt"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
)

// A handler that flushes gives up the record, but keeps the claim until it
// returns: a duplicate that was waiting (or arrives meanwhile) does not run
// the handler a second time, concurrently with the first.
func TestFlushKeepsClaimUntilHandlerReturns(t *testing.T) {
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
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{WaitTimeout: 300 * time.Millisecond, Logger: idemtest.QuietLogger()}, h)

	first := make(chan struct{})
	go func() {
		defer close(first)
		idemtest.Do(t, "POST", srv.URL+"/x", "k", "a")
	}()
	idemtest.WaitFor(t, "the first run", func() bool { return runs.Load() == 1 })
	second := make(chan struct{})
	go func() {
		defer close(second)
		idemtest.Do(t, "POST", srv.URL+"/x", "k", "a")
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

// The same for a hijacked connection (a WebSocket, say): the claim is kept
// until the handler returns, not released when Hijack is called, so a
// duplicate does not run the handler while the first connection is still
// being served.
func TestHijackKeepsClaimUntilHandlerReturns(t *testing.T) {
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
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{WaitTimeout: 300 * time.Millisecond, Logger: idemtest.QuietLogger()}, h)
	call := func() {
		req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader("a"))
		req.Header.Set("Idempotency-Key", "k")
		req.Header.Set("Authorization", idemtest.DefaultCredential)
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		if resp, err := (&http.Client{Transport: tr}).Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	var wg sync.WaitGroup
	wg.Go(call)
	idemtest.WaitFor(t, "the first run", func() bool { return runs.Load() == 1 })
	wg.Go(call)
	time.Sleep(150 * time.Millisecond)
	close(release)
	wg.Wait()
	if maxConcurrent.Load() > 1 {
		t.Fatalf("the handler ran %d times at once for one key (claim released at Hijack)", maxConcurrent.Load())
	}
}

// A handler that ends its goroutine with runtime.Goexit (t.FailNow in a
// test handler, a library calling it) neither returns nor panics; its claim
// is released all the same, so the retry runs the handler again instead of
// finding the key locked for the whole lease (5 minutes by default).
// net/http itself survives a Goexit (it closes the connection).
func TestGoexitInHandlerReleasesClaim(t *testing.T) {
	var runs atomic.Int64
	eng := idemtest.NewEngine(t, nil)
	srv, _ := newServer(t, eng, &idemhttp.Options{WhenInProgress: idemhttp.RejectInProgress, Logger: idemtest.QuietLogger()},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if runs.Add(1) == 1 {
				runtime.Goexit()
			}
			w.WriteHeader(201)
		}))
	srv.Config.ErrorLog = idemtest.QuietHTTPLog()
	req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader("a"))
	req.Header.Set("Idempotency-Key", "k")
	req.Header.Set("Authorization", idemtest.DefaultCredential)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	r := idemtest.Do(t, "POST", srv.URL+"/x", "k", "a")
	if c := eng.Stats().Claims; r.Status != 201 || runs.Load() != 2 {
		t.Fatalf("after a handler's Goexit the retry got %d %s (handler runs %d, engine claims in flight %d); the claim leaked",
			r.Status, r.Body, runs.Load(), c)
	}
}

// A panic in a user-supplied ShouldStore, while the response is being
// finished, releases the claim: the retry runs the handler again instead
// of waiting for the lease to expire.
func TestPanicInShouldStoreReleasesClaim(t *testing.T) {
	var runs atomic.Int64
	eng := idemtest.NewEngine(t, nil)
	srv, _ := newServer(t, eng, &idemhttp.Options{
		WhenInProgress: idemhttp.RejectInProgress,
		Logger:         idemtest.QuietLogger(),
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
	srv.Config.ErrorLog = idemtest.QuietHTTPLog()
	req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader("a"))
	req.Header.Set("Idempotency-Key", "k")
	req.Header.Set("Authorization", idemtest.DefaultCredential)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	r := idemtest.Do(t, "POST", srv.URL+"/x", "k", "a")
	if r.Status != 201 || runs.Load() != 2 {
		t.Fatalf("after a panic in ShouldStore the retry got %d (runs %d, engine claims in flight %d); the claim leaked",
			r.Status, runs.Load(), eng.Stats().Claims)
	}
}

// A handler that flushes and then panics: the claim is released once, no
// claim is left in the engine, and a retry runs again.
func TestFlushThenPanicReleasesClaimOnce(t *testing.T) {
	var runs atomic.Int64
	eng := idemtest.NewEngine(t, nil)
	srv, m := newServer(t, eng, &idemhttp.Options{Logger: idemtest.QuietLogger()}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if runs.Add(1) == 1 {
			io.WriteString(w, "partial")
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		}
		w.WriteHeader(201)
	}))
	srv.Config.ErrorLog = idemtest.QuietHTTPLog()
	req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader("a"))
	req.Header.Set("Idempotency-Key", "k")
	req.Header.Set("Authorization", idemtest.DefaultCredential)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	idemtest.WaitFor(t, "the claim to be released", func() bool { return eng.Stats().Claims == 0 })
	if r := idemtest.Do(t, "POST", srv.URL+"/x", "k", "a"); r.Status != 201 || runs.Load() != 2 {
		t.Fatalf("retry: %d, runs %d", r.Status, runs.Load())
	}
	if s := m.Stats(); s.Released != 1 || s.Recorded != 1 {
		t.Fatalf("Released %d, Recorded %d; want 1, 1", s.Released, s.Recorded)
	}
}

// A duplicate whose client leaves while it waits is counted as canceled;
// the original is not disturbed and is recorded.
func TestWaiterDisconnectLeavesOriginalRecorded(t *testing.T) {
	h, started, release := blocked()
	eng := idemtest.NewEngine(t, nil)
	srv, m := newServer(t, eng, nil, h)
	done := make(chan idemtest.Reply)
	go func() { done <- idemtest.Do(t, "POST", srv.URL+"/x", "k", "a") }()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/x", strings.NewReader("a"))
	req.Header.Set("Idempotency-Key", "k")
	req.Header.Set("Authorization", idemtest.DefaultCredential)
	errc := make(chan error, 1)
	go func() {
		_, err := http.DefaultClient.Do(req)
		errc <- err
	}()
	idemtest.WaitFor(t, "the duplicate to wait", func() bool { return eng.Stats().Waits >= 1 })
	cancel()
	<-errc
	idemtest.WaitFor(t, "the cancellation to be counted", func() bool { return m.Stats().Canceled == 1 })
	close(release)
	if first := <-done; first.Status != 201 {
		t.Fatalf("original: %d", first.Status)
	}
	if r := idemtest.Do(t, "POST", srv.URL+"/x", "k", "a"); r.Header.Get("Idempotency-Replay") != "true" {
		t.Fatal("original not recorded")
	}
}

// Many keys, tenants and duplicates at once (run with -race): every key
// runs once, and no claim is left behind.
func TestConcurrentKeysRunOnceAndLeaveNoClaim(t *testing.T) {
	var runs sync.Map
	eng := idemtest.NewEngine(t, nil)
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
			r := idemtest.Do(t, "POST", srv.URL+"/x", key, "body", "Authorization", tenant)
			if r.Body != tenant+"|"+key {
				t.Errorf("%s %s got %q", tenant, key, r.Body)
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
func TestInterruptedClaimIsRecoveredAfterRestart(t *testing.T) {
	dir := t.TempDir()
	eng, err := engine.Open(dir, &engine.Options{Logger: idemtest.QuietLogger()})
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
	srv, m := newServer(t, eng, &idemhttp.Options{Logger: idemtest.QuietLogger()}, h)
	done := make(chan idemtest.Reply)
	go func() { done <- idemtest.Do(t, "POST", srv.URL+"/x", "k", "a") }()
	<-started
	eng.Close() // the process "dies" with the claim in flight
	close(release)
	if first := <-done; first.Status != 201 || first.Body != "attempt 1" {
		t.Fatalf("first: %d %q; the response must be sent even if it could not be recorded", first.Status, first.Body)
	}
	if s := m.Stats(); s.CompleteErrors != 1 {
		t.Fatalf("CompleteErrors = %d; want 1", s.CompleteErrors)
	}
	srv.Close()

	eng2, err := engine.Open(dir, &engine.Options{Logger: idemtest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng2.Close()
	srv2, m2 := newServer(t, eng2, nil, h)
	again := idemtest.Do(t, "POST", srv2.URL+"/x", "k", "a")
	mu.Lock()
	defer mu.Unlock()
	if again.Status != 201 || len(calls) != 2 || !calls[1].Recovered || calls[1].Attempt != 2 || calls[1].Interrupted == nil {
		t.Fatalf("retry after restart: %d %q, calls %+v", again.Status, again.Body, calls)
	}
	if m2.Stats().Recovered != 1 {
		t.Fatalf("Recovered = %d", m2.Stats().Recovered)
	}
}
