package engine_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/expiry"
)

// TestBloomNoFalseNegatives adds keys from several goroutines across many
// segment growths and checks that every one is still reported, and that
// keys never added are mostly reported absent.
func TestBloomNoFalseNegatives(t *testing.T) {
	const n, workers = 200_000, 4
	var b engine.Bloom
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range n / workers {
				b.Add(r.Uint64())
			}
		}()
	}
	wg.Wait()
	for w := range workers {
		r := rand.New(rand.NewPCG(uint64(w), 1))
		for i := range n / workers {
			if h := r.Uint64(); !b.MayContain(h) {
				t.Fatalf("worker %d key %d (%#x): added but reported absent", w, i, h)
			}
		}
	}
	r := rand.New(rand.NewPCG(99, 2))
	fp := 0
	const probes = 100_000
	for range probes {
		if b.MayContain(r.Uint64()) {
			fp++
		}
	}
	// Seven segments of about 1% each: well under 10% together. The
	// inputs are fixed, so this is not flaky.
	if rate := float64(fp) / probes; rate > 0.10 {
		t.Errorf("false-positive rate %.3f with %d keys; want < 0.10", rate, n)
	}
	if bpk := float64(b.Memory()*8) / n; bpk > 25 {
		t.Errorf("%.1f bits per key; want at most 25", bpk)
	}
	t.Logf("%d keys: %d false positives in %d, %d bytes", n, fp, probes, b.Memory())
}

// waitFilters waits until e's key filters are loaded.
func waitFilters(t *testing.T, e *engine.Engine) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !e.Stats().KeyFiltersReady {
		if time.Now().After(deadline) {
			t.Fatal("key filters not ready after 30s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFiltersAfterRestart stores completed records and interrupted claims
// in several generations, reopens the store (the filters are rebuilt from
// disk, in several iterator batches) and checks that every key is still
// found, while never-seen keys proceed without reading storage.
func TestFiltersAfterRestart(t *testing.T) {
	defer engine.SetFilterScanBatchForTest(7)()
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	clock := expiry.NewFakeClock(t0)
	opts := &engine.Options{Clock: clock, TTL: time.Hour, GenerationWidth: 10 * time.Minute}
	dir := t.TempDir()
	e, err := engine.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 60
	for i := range n {
		res := begin(t, e, req(fmt.Sprint("k", i), "a"))
		mustOutcome(t, res, engine.Proceed)
		if i%3 != 0 { // every third key stays in flight: an interrupted claim
			if err := res.Claim.Complete(ctx, response(fmt.Sprint("r", i))); err != nil {
				t.Fatal(err)
			}
		}
		clock.Advance(30 * time.Second) // 30 minutes in all: four generations
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = engine.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	waitFilters(t, e)
	before := e.Stats().Probes
	for i := range 1000 {
		res := begin(t, e, req(fmt.Sprint("new", i), "a"))
		mustOutcome(t, res, engine.Proceed)
		if err := res.Claim.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Released claims leave their keys in the filters, and a few unseen
	// keys are false positives; most never-seen keys read nothing.
	if probes := e.Stats().Probes - before; probes > 100 {
		t.Errorf("1000 never-seen keys read %d generations; want few", probes)
	}
	for i := range n {
		k := fmt.Sprint("k", i)
		res := begin(t, e, req(k, "a"))
		if i%3 == 0 {
			mustOutcome(t, res, engine.Proceed)
			if !res.Recovered {
				t.Errorf("%s: interrupted claim not recovered", k)
			}
			continue
		}
		assertReplay(t, res, response(fmt.Sprint("r", i)))
	}
}
