package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// TestPowerLossTornTail is TestPowerLoss with crash clones that
// also keep a random part of what was written but not fsynced, as a disk
// may after power loss (the log's unsynced tail torn).
func TestPowerLossTornTail(t *testing.T) {
	fs := vfs.NewCrashableMem()
	const dir = "data"
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(dir, &engine.Options{FS: fs, Durability: engine.Synced, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		acked []string
		fail  error
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("g%d-%d", g, i)
				body := bodyFor(k)
				res, err := e.Begin(context.Background(), engine.Request{Key: crashKey(k), Fingerprint: record.Sum(body)})
				if err == nil && res.Outcome != engine.Proceed {
					err = fmt.Errorf("key %s: outcome %v, want proceed", k, res.Outcome)
				}
				if err == nil {
					err = res.Claim.Complete(context.Background(), engine.Response{Status: 201, Body: body})
				}
				mu.Lock()
				if err != nil && fail == nil {
					fail = err
				}
				if err == nil {
					acked = append(acked, k)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	type crash struct {
		fs    *vfs.MemFS
		acked []string
	}
	var crashes []crash
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 8 {
		time.Sleep(15 * time.Millisecond)
		mu.Lock()
		before := slices.Clone(acked)
		mu.Unlock()
		crashes = append(crashes, crash{fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 10 + 10*i, RNG: rng}), before})
	}
	close(stop)
	wg.Wait()
	if fail != nil {
		t.Fatal(fail)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for i, c := range crashes {
		e, err := engine.Open(dir, &engine.Options{FS: c.fs, Logger: quietLogger()})
		if err != nil {
			t.Fatalf("crash %d: open after power loss: %v", i, err)
		}
		lost := 0
		for _, k := range c.acked {
			body := bodyFor(k)
			res, err := e.Begin(context.Background(), engine.Request{Key: crashKey(k), Fingerprint: record.Sum(body)})
			if err != nil {
				t.Fatalf("crash %d: key %s: %v", i, k, err)
			}
			if res.Outcome != engine.Replay || !bytes.Equal(res.Record.Body, body) {
				lost++
			}
		}
		err = e.Scan(context.Background(), engine.ScanOptions{IncludeExpired: true, WithBody: true}, func(en engine.Entry) error {
			return en.Err
		})
		if err != nil {
			t.Fatalf("crash %d: damaged record after power loss: %v", i, err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if lost > 0 {
			t.Fatalf("crash %d: %d of %d acknowledged completions lost", i, lost, len(c.acked))
		}
		t.Logf("crash %d: %d acknowledged completions replayed", i, len(c.acked))
	}
}
