package engine_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/idemkv/idemkv/bench/payload"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// TestPowerLoss checks the Synced mode's promise against a crash of the
// machine (power loss, kernel panic), which TestCrashKill9 cannot: the
// kernel keeps what a killed process wrote. Pebble's crashable in-memory
// filesystem tells what was fsynced from what was only written, and a crash
// clone of it holds the former (and, in the torn-tail case, a random part
// of the rest), as a disk would after power loss. Clones are taken while
// goroutines complete requests; each is opened as the next boot would, and
// every completion (and checkpoint) acknowledged before its clone was taken
// must be there, with nothing damaged.
//
// The cases: the plain one; a torn tail (clones keep 10-80 % of what was
// written but not fsynced); and log rotations (1 MiB memtables, so that
// Pebble switches logs, flushes and obsoletes them all the time while
// completions wait for the group fsync, with bodies of up to 600 KiB on
// Pebble's large-batch path, and Checkpoints, which are durable commits
// too: an acknowledged checkpoint of a claim left unfinished must come back
// with the recovered claim).
func TestPowerLoss(t *testing.T) {
	for _, tc := range []powerLossCase{
		{name: "plain", goroutines: 16, body: bodyFor, clones: 6, gap: 15 * time.Millisecond},
		{name: "torn tail", goroutines: 16, body: bodyFor, clones: 8, gap: 15 * time.Millisecond,
			unsynced: func(i int) int { return 10 + 10*i }},
		{name: "log rotations", goroutines: 8, memTable: 1 << 20, body: mixedBody, checkpointEvery: 4,
			clones: 8, gap: 150 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t) })
	}
}

type powerLossCase struct {
	name            string
	goroutines      int
	memTable        uint64 // 0: the default
	body            func(key string) []byte
	checkpointEvery int // every nth request checkpoints and stays in flight; 0: none
	clones          int
	gap             time.Duration       // between clones
	unsynced        func(clone int) int // percent of unsynced data a clone keeps; nil: none
}

// mixedBody returns bodies of 100 B to 4 KB, and of 200-600 KiB for one key
// in seven.
func mixedBody(k string) []byte {
	r := rand.New(rand.NewPCG(uint64(len(k)), uint64(k[len(k)-1])))
	n := 100 + r.IntN(4000)
	if k[len(k)-1]%7 == 0 {
		n = 200<<10 + r.IntN(400<<10)
	}
	return payload.JSON(nil, n, uint64(len(k))*31+uint64(k[len(k)-1]))
}

// powerLossClone is a crash clone and what was acknowledged before it.
type powerLossClone struct {
	fs              *vfs.MemFS
	acked, checkpts []string
}

func (tc powerLossCase) options(fs vfs.FS) *engine.Options {
	return engine.WithFSForTest(&engine.Options{Durability: engine.Synced, MemTableSize: tc.memTable, CacheSize: -1, Logger: quietLogger()}, fs)
}

func (tc powerLossCase) run(t *testing.T) {
	fs := vfs.NewCrashableMem()
	const dir = "data"
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(dir, tc.options(fs))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		acked    []string               // completed
		sums     = map[string]bodySum{} // of every key written, for verify
		checkpts []string               // checkpointed and left in flight
		fail     error
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for g := range tc.goroutines {
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
				body := tc.body(k)
				res, err := e.Begin(context.Background(), engine.Request{Key: crashKey(k), Fingerprint: record.Sum(body)})
				if err == nil && res.Outcome != engine.Proceed {
					err = fmt.Errorf("key %s: outcome %v, want proceed", k, res.Outcome)
				}
				cp := tc.checkpointEvery > 0 && i%tc.checkpointEvery == tc.checkpointEvery-1
				switch {
				case err != nil:
				case cp:
					err = res.Claim.Checkpoint(context.Background(), "phase-"+k, []byte("data-"+k))
				default:
					err = res.Claim.Complete(context.Background(), engine.Response{Status: 201, Body: body})
				}
				mu.Lock()
				switch {
				case err != nil && fail == nil:
					fail = err
				case err == nil && cp:
					checkpts = append(checkpts, k)
					sums[k] = sumOf(body)
				case err == nil:
					acked = append(acked, k)
					sums[k] = sumOf(body)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var clones []powerLossClone
	for i := range tc.clones {
		time.Sleep(tc.gap)
		mu.Lock()
		c := powerLossClone{acked: slices.Clone(acked), checkpts: slices.Clone(checkpts)}
		mu.Unlock()
		cfg := vfs.CrashCloneCfg{}
		if tc.unsynced != nil {
			cfg = vfs.CrashCloneCfg{UnsyncedDataPercent: tc.unsynced(i), RNG: rng}
		}
		c.fs = fs.CrashClone(cfg)
		clones = append(clones, c)
	}
	close(stop)
	wg.Wait()
	if fail != nil {
		t.Fatal(fail)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for i, c := range clones {
		tc.verify(t, i, dir, c, sums)
	}
}

// bodySum is what verify knows of a body: its fingerprint, and a digest to
// compare a replayed body with (rather than the body, which the bigger
// cases would take longer to generate again than to check).
type bodySum struct {
	fp  record.Fingerprint
	sum uint64
	n   int
}

func sumOf(b []byte) bodySum { return bodySum{fp: record.Sum(b), sum: xxhash.Sum64(b), n: len(b)} }

// verify opens clone i as the next boot would and checks it.
func (tc powerLossCase) verify(t *testing.T, i int, dir string, c powerLossClone, sums map[string]bodySum) {
	e, err := engine.Open(dir, tc.options(c.fs))
	if err != nil {
		dumpClone(t, c.fs, dir)
		t.Fatalf("clone %d: open after power loss: %v", i, err)
	}
	var lost []string
	for _, k := range c.acked {
		want := sums[k]
		res, err := e.Begin(context.Background(), engine.Request{Key: crashKey(k), Fingerprint: want.fp})
		if err != nil {
			t.Fatalf("clone %d: key %s: %v", i, k, err)
		}
		if res.Outcome != engine.Replay || len(res.Record.Body) != want.n || xxhash.Sum64(res.Record.Body) != want.sum {
			lost = append(lost, fmt.Sprintf("%s (%d B, %v)", k, want.n, res.Outcome))
		}
	}
	for _, k := range c.checkpts {
		res, err := e.Begin(context.Background(), engine.Request{Key: crashKey(k), Fingerprint: sums[k].fp})
		if err != nil {
			t.Fatalf("clone %d: key %s: %v", i, k, err)
		}
		r := res.Record
		if res.Outcome != engine.Proceed || !res.Recovered || r == nil || r.Checkpoint == nil ||
			r.Checkpoint.Phase != "phase-"+k || string(r.Checkpoint.Data) != "data-"+k {
			lost = append(lost, fmt.Sprintf("checkpoint %s (%v, recovered %v)", k, res.Outcome, res.Recovered))
		}
	}
	err = e.Scan(context.Background(), engine.ScanOptions{IncludeExpired: true, WithBody: true}, func(en engine.Entry) error {
		return en.Err
	})
	if err != nil {
		t.Fatalf("clone %d: damaged record after power loss: %v", i, err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if len(lost) > 0 {
		t.Fatalf("clone %d: %d of %d acknowledged writes lost: %v", i, len(lost), len(c.acked)+len(c.checkpts), lost[:min(len(lost), 10)])
	}
	t.Logf("clone %d: %d completions and %d checkpoints there", i, len(c.acked), len(c.checkpts))
}

// dumpClone saves the files of a clone that did not open to a directory
// that outlives the test, and logs its name: the failure depends on where
// the crash fell, so the clone is the evidence.
func dumpClone(t *testing.T, fs *vfs.MemFS, dir string) {
	out, err := os.MkdirTemp("", "idemkv-powerloss-")
	if err != nil {
		t.Logf("cannot save the clone: %v", err)
		return
	}
	names, _ := fs.List(dir)
	for _, n := range names {
		f, err := fs.Open(fs.PathJoin(dir, n))
		if err != nil {
			continue
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err == nil {
			err = os.WriteFile(filepath.Join(out, n), b, 0o600)
		}
		if err != nil {
			t.Logf("cannot save %s: %v", n, err)
		}
	}
	t.Logf("the clone's files are saved in %s", out)
}
