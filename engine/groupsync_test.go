package engine

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGroupSync checks the promise of groupSync: when Sync returns nil, a
// run of fn that started after the call began has finished, and runs are
// shared among concurrent callers.
func TestGroupSync(t *testing.T) {
	var (
		written atomic.Int64 // writes done so far
		synced  atomic.Int64 // writes covered by a finished run
		runs    atomic.Int64
	)
	var g groupSync
	g.start(func() error {
		covered := written.Load() // everything written before the run began
		runs.Add(1)
		for {
			old := synced.Load()
			if covered <= old || synced.CompareAndSwap(old, covered) {
				return nil
			}
		}
	})
	defer g.stop()
	const goroutines, each = 64, 200
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				mine := written.Add(1)
				if err := g.Sync(); err != nil {
					t.Error(err)
					return
				}
				if s := synced.Load(); s < mine {
					t.Errorf("Sync returned with write %d not covered (synced up to %d)", mine, s)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := runs.Load(); n >= goroutines*each {
		t.Errorf("%d runs for %d calls; want them shared", n, goroutines*each)
	}
	t.Logf("%d calls served by %d runs", goroutines*each, runs.Load())
}

// TestGroupSyncStickyError checks that after a failed run every later Sync
// fails with the same error, without running fn again, also after stop.
func TestGroupSyncStickyError(t *testing.T) {
	boom := errors.New("fsync: input/output error")
	var runs atomic.Int64
	var g groupSync
	g.start(func() error {
		if runs.Add(1) == 2 {
			return boom
		}
		return nil
	})
	if err := g.Sync(); err != nil {
		t.Fatalf("first Sync: %v", err)
	}
	for i := range 3 {
		if err := g.Sync(); !errors.Is(err, boom) {
			t.Fatalf("Sync %d after the failure: %v; want %v", i, err, boom)
		}
	}
	g.stop()
	g.stop()
	if err := g.Sync(); !errors.Is(err, boom) {
		t.Fatalf("Sync after stop: %v; want %v", err, boom)
	}
	if n := runs.Load(); n != 2 {
		t.Errorf("fn ran %d times; want 2 (never after the failure)", n)
	}
}

// TestGroupSyncStopWithin checks that stopWithin gives up on a run that
// never returns (a store wedged by a failure) instead of hanging Close, that
// a caller waiting for the next run then gets the failure instead of
// waiting for ever, and that stopWithin waits for a run that does return.
func TestGroupSyncStopWithin(t *testing.T) {
	stuck, entered := make(chan struct{}), make(chan struct{})
	defer close(stuck) // lets the abandoned loop exit at the end
	var g groupSync
	var once sync.Once
	g.start(func() error { once.Do(func() { close(entered) }); <-stuck; return nil })
	go func() { _ = g.Sync() }() // a caller whose run never ends
	<-entered
	next := make(chan error, 1)
	go func() { next <- g.Sync() }() // waits for the run after it
	for {
		g.mu.Lock()
		registered := g.pending != nil
		g.mu.Unlock()
		if registered {
			break
		}
		time.Sleep(time.Millisecond)
	}
	boom := errors.New("engine stopped")
	start := time.Now()
	if g.stopWithin(50*time.Millisecond, boom) {
		t.Fatal("stopWithin reported the loop ended while its run is stuck")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stopWithin took %v", d)
	}
	select {
	case err := <-next:
		if !errors.Is(err, boom) {
			t.Fatalf("the caller waiting for the next run got %v; want %v", err, boom)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the caller waiting for the next run was left waiting")
	}

	var h groupSync
	var runs atomic.Int64
	h.start(func() error { time.Sleep(20 * time.Millisecond); runs.Add(1); return nil })
	if err := h.Sync(); err != nil {
		t.Fatal(err)
	}
	if !h.stopWithin(10*time.Second, nil) {
		t.Fatal("stopWithin gave up on a loop that was idle")
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("fn ran %d times; want 1", n)
	}
}
