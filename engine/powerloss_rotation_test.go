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
	"github.com/idemkv/idemkv/bench/payload"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// TestPowerLossRotations is TestPowerLoss with a small memtable, so
// that Pebble switches write-ahead logs (and flushes, and obsoletes logs)
// all the time while NoSync completions wait for the group fsync; bodies
// of up to 600 KiB (over half the memtable: Pebble's large-batch path,
// which rotates the log itself), and Checkpoints, which are durable
// commits too. Every acknowledged Complete must replay, and every
// acknowledged Checkpoint of a claim left unfinished must be recovered.
func TestPowerLossRotations(t *testing.T) {
	fs := vfs.NewCrashableMem()
	const dir = "data"
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := func(fs vfs.FS) *engine.Options {
		return &engine.Options{FS: fs, Durability: engine.Synced, MemTableSize: 1 << 20, CacheSize: -1, Logger: quietLogger()}
	}
	e, err := engine.Open(dir, opts(fs))
	if err != nil {
		t.Fatal(err)
	}
	bodyOfSize := func(k string) []byte {
		r := rand.New(rand.NewPCG(uint64(len(k)), uint64(k[len(k)-1])))
		n := 100 + r.IntN(4000)
		if k[len(k)-1]%7 == 0 {
			n = 200<<10 + r.IntN(400<<10)
		}
		return payload.JSON(nil, n, uint64(len(k))*31+uint64(k[len(k)-1]))
	}
	var (
		mu       sync.Mutex
		acked    []string // completed
		checkpts []string // checkpointed, left in flight
		fail     error
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for g := range 8 {
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
				body := bodyOfSize(k)
				res, err := e.Begin(context.Background(), engine.Request{Key: crashKey(k), Fingerprint: record.Sum(body)})
				if err == nil && res.Outcome != engine.Proceed {
					err = fmt.Errorf("key %s: outcome %v", k, res.Outcome)
				}
				cp := i%4 == 3
				if err == nil && cp {
					err = res.Claim.Checkpoint(context.Background(), "phase-"+k, []byte("data-"+k))
				}
				if err == nil && !cp {
					err = res.Claim.Complete(context.Background(), engine.Response{Status: 201, Body: body})
				}
				mu.Lock()
				switch {
				case err != nil && fail == nil:
					fail = err
				case err == nil && cp:
					checkpts = append(checkpts, k)
				case err == nil:
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
		fs              *vfs.MemFS
		acked, checkpts []string
	}
	var crashes []crash
	for range 8 {
		time.Sleep(150 * time.Millisecond)
		mu.Lock()
		c := crash{acked: slices.Clone(acked), checkpts: slices.Clone(checkpts)}
		mu.Unlock()
		c.fs = fs.CrashClone(vfs.CrashCloneCfg{})
		crashes = append(crashes, c)
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
		e, err := engine.Open(dir, opts(c.fs))
		if err != nil {
			t.Fatalf("crash %d: open after power loss: %v", i, err)
		}
		var lost []string
		for _, k := range c.acked {
			body := bodyOfSize(k)
			res, err := e.Begin(context.Background(), engine.Request{Key: crashKey(k), Fingerprint: record.Sum(body)})
			if err != nil {
				t.Fatalf("crash %d: key %s: %v", i, k, err)
			}
			if res.Outcome != engine.Replay || !bytes.Equal(res.Record.Body, body) {
				lost = append(lost, fmt.Sprintf("%s (%d B, %v)", k, len(body), res.Outcome))
			}
		}
		for _, k := range c.checkpts {
			body := bodyOfSize(k)
			res, err := e.Begin(context.Background(), engine.Request{Key: crashKey(k), Fingerprint: record.Sum(body)})
			if err != nil {
				t.Fatalf("crash %d: key %s: %v", i, k, err)
			}
			cp := res.Record
			if res.Outcome != engine.Proceed || !res.Recovered || cp == nil || cp.Checkpoint == nil ||
				cp.Checkpoint.Phase != "phase-"+k || string(cp.Checkpoint.Data) != "data-"+k {
				lost = append(lost, fmt.Sprintf("checkpoint %s (%v recovered=%v)", k, res.Outcome, res.Recovered))
			}
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if len(lost) > 0 {
			t.Fatalf("crash %d: %d of %d acknowledged writes lost: %v", i, len(lost), len(c.acked)+len(c.checkpts), lost[:min(len(lost), 10)])
		}
		t.Logf("crash %d: %d completions, %d checkpoints recovered", i, len(c.acked), len(c.checkpts))
	}
}
