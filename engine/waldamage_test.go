package engine_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/idemkv/idemkv/engine"
)

// TestDamagedLogNeverLosesAcknowledged flips one byte of each write-ahead
// log of a data directory left as a crash leaves it (copied while the
// engine runs, after every completion was acknowledged and Engine.Sync
// returned: what the kernel holds after a kill -9) at many offsets, from
// the start to the last bytes. Every completion was acknowledged, so every flip damages something
// acknowledged or the log's framing around it: the engine must either
// replay every completion byte for byte or refuse to open with ErrCorrupt
// and the name of the damaged file. Opening with a completion missing is
// the silent loss this test exists to catch.
func TestDamagedLogNeverLosesAcknowledged(t *testing.T) {
	const n = 40
	bodies := make([][]byte, n)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range bodies {
		size := 64 << 10 // incompressible, like the 64 KiB responses of the report
		if i%4 == 3 {
			size = 300 // small ones share blocks
		}
		bodies[i] = make([]byte, size)
		for j := range bodies[i] {
			bodies[i][j] = byte(rng.Uint32())
		}
	}
	keyOf := func(i int) string { return fmt.Sprint("k", i) }

	src := t.TempDir()
	e, err := engine.Open(src, &engine.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		res := begin(t, e, req(keyOf(i), "a"))
		if err := res.Claim.Complete(ctx, engine.Response{Status: 201, Body: bodies[i]}); err != nil {
			t.Fatal(err)
		}
	}
	// The proof of the last fsync follows it within about one more fsync;
	// Sync waits for it (see "Sync proofs" in the engine).
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(t.TempDir(), "crashed")
	if err := copyDir(src, crashed); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	logs, _ := filepath.Glob(filepath.Join(crashed, "*.log"))
	if len(logs) == 0 {
		t.Fatal("no write-ahead log")
	}
	for _, log := range logs {
		fi, err := os.Stat(log)
		if err != nil {
			t.Fatal(err)
		}
		size := fi.Size()
		offsets := []int64{10, 1000}
		for i := int64(1); i < 8; i++ {
			offsets = append(offsets, size*i/8)
		}
		offsets = append(offsets, size-30000, size-5000, size-1000, size-200, size-60, size-30)
		for _, off := range offsets {
			if off > 0 && off < size {
				checkLogDamage(t, crashed, filepath.Base(log), off, n, keyOf, bodies)
			}
		}
	}
}

// checkLogDamage flips the byte at off of the log named name in a copy of
// crashed and checks that the engine refuses the copy or replays every
// completion.
func checkLogDamage(t *testing.T, crashed, name string, off int64, n int, keyOf func(int) string, bodies [][]byte) {
	t.Helper()
	t.Run(fmt.Sprintf("%s at %d", name, off), func(t *testing.T) {
		dir := damagedCopy(t, crashed, name, func(b []byte) []byte { b[off] ^= 0x10; return b })
		e, err := engine.Open(dir, &engine.Options{Logger: quietLogger()})
		if err != nil {
			if !errors.Is(err, engine.ErrCorrupt) || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "write-ahead log") || strings.Contains(err.Error(), "codec") {
				t.Fatalf("Open: %v; want ErrCorrupt naming the write-ahead log %s (and not the record codec)", err, name)
			}
			return
		}
		defer e.Close()
		var lost []string
		for i := range n {
			res, err := e.Begin(ctx, req(keyOf(i), "a"))
			if err != nil {
				t.Fatalf("%s: %v", keyOf(i), err)
			}
			if res.Outcome != engine.Replay {
				lost = append(lost, keyOf(i))
				continue
			}
			assertReplay(t, res, engine.Response{Status: 201, Body: bodies[i]})
		}
		if len(lost) > 0 {
			t.Fatalf("opened with %d acknowledged completions missing: %v", len(lost), lost)
		}
	})
}

// TestRecordCutAtTheSyncPointIsATornTail: an fsync can end between the
// chunks of a record that spans blocks (Pebble writes whole chunks, and a
// record's first chunk may fill a block), so the fsynced bytes may hold
// the start of a record whose rest was never written. A crash there leaves
// a torn tail, not damage: the record was never acknowledged. A crash
// clone of TestPowerLoss/log_rotations caught the check taking it for
// damage (the sync mark said 163,840 bytes, a record began at 160,233 and
// continued in a block the crash lost) and refusing to open. Damage to a
// whole record before the sync point is still refused.
func TestRecordCutAtTheSyncPointIsATornTail(t *testing.T) {
	const block = 32 << 10
	// One small record, then one that fills the rest of the first block
	// and spans the second: its first chunk ends exactly at the block end.
	small := bytes.Repeat([]byte{'a'}, 1000)
	big := bytes.Repeat([]byte{'b'}, 2*block)
	whole := writeTestLog(t, [][]byte{small, big})
	check := func(log []byte) error {
		fs := vfs.NewMem()
		if err := engine.WriteSyncMarkForTest(fs, "data", "000007.log", block); err != nil {
			t.Fatal(err)
		}
		f, err := fs.Create("data/000007.log", vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		// A copy: with the race detector Pebble's invariants are on, and
		// its in-memory file scribbles over a buffer once written, to
		// catch callers that reuse it.
		if _, err := f.Write(bytes.Clone(log)); err != nil {
			t.Fatal(err)
		}
		f.Close()
		return engine.CheckLogsForTest(fs, "data")
	}
	if err := check(whole); err != nil {
		t.Fatalf("intact log: %v", err)
	}
	// The crash kept the fsynced first block only; the record's other
	// chunks are lost (zeros, or an older log's bytes in a recycled file).
	torn := bytes.Clone(whole[:block])
	if err := check(append(bytes.Clone(torn), make([]byte, block)...)); err != nil {
		t.Fatalf("a record cut at the sync point is a torn tail, but: %v", err)
	}
	if err := check(torn); err != nil {
		t.Fatalf("a log ending at the sync point inside a record: %v", err)
	}
	// The first record is whole before the sync point: damage to it is
	// damage to acknowledged bytes.
	damaged := bytes.Clone(torn)
	damaged[500] ^= 1
	if err := check(damaged); !errors.Is(err, engine.ErrCorrupt) || !strings.Contains(err.Error(), "000007.log") {
		t.Fatalf("damage before the sync point: %v, want ErrCorrupt naming the log", err)
	}
	// So is damage to the first chunk of the record cut at the sync point:
	// those bytes were fsynced.
	damaged = bytes.Clone(torn)
	damaged[block-10] ^= 1
	if err := check(damaged); !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("damage to fsynced chunk bytes: %v, want ErrCorrupt", err)
	}
}
