package engine_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	pebblerecord "github.com/cockroachdb/pebble/v2/record"
	"github.com/idemkv/idemkv/engine"
)

// TestRepairRefusesWhatItMustNotTouch: a directory a process has open, a
// directory without data, and a destination that holds files are refused,
// and nothing is written.
func TestRepairRefusesWhatItMustNotTouch(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	e, err := engine.Open(dir, &engine.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	completeAll(t, e, "k", 2)
	out := filepath.Join(t.TempDir(), "out")
	if _, err := engine.Repair(dir, out, nil); !errors.Is(err, engine.ErrLocked) {
		t.Fatalf("Repair of an open directory: %v, want ErrLocked", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("Repair of an open directory created the destination: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Repair(filepath.Join(t.TempDir(), "none"), out, nil); !errors.Is(err, engine.ErrNoData) {
		t.Fatalf("Repair of a missing directory: %v, want ErrNoData", err)
	}
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Repair(dir, full, nil); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("Repair into a directory with files: %v, want ErrInvalid", err)
	}
	for _, inside := range []string{dir, filepath.Join(dir, "new"), filepath.Dir(dir)} {
		if _, err := engine.Repair(dir, inside, nil); !errors.Is(err, engine.ErrInvalid) {
			t.Fatalf("Repair into %s (of %s): %v, want ErrInvalid", inside, dir, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Fatalf("Repair wrote into the damaged directory: %v", err)
	}
	for range 2 { // incarnations 2 and 3
		e, err := engine.Open(dir, &engine.Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		e.Close()
	}
	if err := os.Mkdir(out, 0o755); err != nil { // an empty destination is fine
		t.Fatal(err)
	}
	rep, err := engine.Repair(dir, out, &engine.Options{Logger: quietLogger()})
	if err != nil || !rep.Clean() || rep.Completed != 2 {
		t.Fatalf("Repair of a sound directory: %+v, %v", rep, err)
	}
	ents, err := os.ReadDir(filepath.Dir(out))
	if err != nil || len(ents) != 1 {
		t.Fatalf("Repair left files beside its destination: %v %v", ents, err)
	}
	e, err = engine.Open(out, &engine.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Stats().Incarnation; got != 4 {
		t.Errorf("repaired directory opens as incarnation %d; want 4, after the old directory's 3 (a lease it copied must not look like the new process's own)", got)
	}
	e.Close()
}

// FuzzSalvageLog feeds Repair's log reader any bytes: it must not panic,
// the damage it reports must lie inside the input, in order, and every
// record it returns must be made of bytes of the input. A log of intact
// records is read back whole, with no damage.
func FuzzSalvageLog(f *testing.F) {
	recs := [][]byte{[]byte("a"), bytes.Repeat([]byte("b"), 40<<10), []byte("c")}
	f.Add(writeTestLog(f, recs), uint64(testLogNum))
	f.Add([]byte{}, uint64(1))
	f.Fuzz(func(t *testing.T, b []byte, num uint64) {
		got, skipped := engine.SalvageLogForTest(b, num)
		prev := 0
		for _, s := range skipped {
			if s[0] < prev || s[1] < s[0] || s[1] > len(b) {
				t.Fatalf("damage %v out of order or bounds (input %d bytes)", s, len(b))
			}
			prev = s[1]
		}
		total := 0
		for _, r := range got {
			total += len(r)
		}
		if total > len(b) {
			t.Fatalf("%d bytes of records from %d bytes of log", total, len(b))
		}
	})
}

// TestSalvageLogReadsPastDamage: a log with one damaged block gives back
// every record that does not touch it, and names the damaged stretch.
func TestSalvageLogReadsPastDamage(t *testing.T) {
	var recs [][]byte
	for i := range 200 {
		recs = append(recs, bytes.Repeat([]byte{byte(i)}, 1000))
	}
	b := writeTestLog(t, recs)
	if got, skipped := engine.SalvageLogForTest(b, testLogNum); len(got) != len(recs) || len(skipped) != 0 {
		t.Fatalf("intact log: %d records, damage %v; want %d, none", len(got), skipped, len(recs))
	}
	b[3*32<<10+500] ^= 1 // inside the fourth block
	got, skipped := engine.SalvageLogForTest(b, testLogNum)
	if len(skipped) != 1 || skipped[0][0] > 3*32<<10+500 || skipped[0][1] <= 3*32<<10+500 {
		t.Fatalf("damage %v does not cover the flipped byte", skipped)
	}
	// Records of about 1 KB: the block's ~33 records and the one crossing
	// into it at most are lost; the rest survive, in order.
	if lost := len(recs) - len(got); lost < 1 || lost > 40 {
		t.Fatalf("%d records lost, want 1..40", lost)
	}
	j := 0
	for _, r := range got {
		for j < len(recs) && !bytes.Equal(recs[j], r) {
			j++
		}
		if j == len(recs) {
			t.Fatal("a returned record is not one of the log's, or out of order")
		}
	}
}

// testLogNum is the number the logs of writeTestLog are read as (their
// chunks, in Pebble's first format, do not carry it).
const testLogNum = 7

// writeTestLog writes recs with Pebble's log record writer.
func writeTestLog(tb testing.TB, recs [][]byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w := pebblerecord.NewWriter(&buf)
	for _, r := range recs {
		if _, err := w.WriteRecord(r); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// TestRepairRemovesWorkOfInterruptedRepairs: a repair killed midway leaves
// its working directory beside the destination (never the destination
// itself); the next Repair there removes it if its process is gone, and
// leaves that of a live process alone.
func TestRepairRemovesWorkOfInterruptedRepairs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	e, err := engine.Open(dir, &engine.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	completeAll(t, e, "k", 3)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip("no true(1) to get the id of a dead process")
	}
	parent := t.TempDir()
	stale := filepath.Join(parent, fmt.Sprintf(".idemkv-repair-%d-77", dead.Process.Pid))
	live := filepath.Join(parent, fmt.Sprintf(".idemkv-repair-%d-78", os.Getppid()))
	for _, d := range []string{stale, live} {
		if err := os.MkdirAll(filepath.Join(d, "new"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(parent, "out")
	rep, err := engine.Repair(dir, out, nil)
	if err != nil || rep.Completed != 3 || !rep.Clean() {
		t.Fatalf("Repair: %+v, %v; want 3 completions, nothing lost", rep, err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the working directory of a dead repair is still there: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the working directory of a live process was removed: %v", err)
	}
	ents, _ := os.ReadDir(parent)
	if len(ents) != 2 {
		t.Errorf("beside the destination: %d entries; want the destination and the live working directory", len(ents))
	}
}

// manifestDir writes a data directory whose current MANIFEST has edits
// that matter: the first round's records reach tables (and the log they
// came from is deleted) when the second round opens the directory. It
// returns the directory, its keys, and the names of its current MANIFEST
// and of that MANIFEST's mirror, after checking that the mirror is its
// copy and that no obsolete MANIFEST's mirror stayed behind.
func manifestDir(t *testing.T) (dir string, keys []string, manifest, mirror string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "data")
	for round := range 2 {
		e, err := engine.Open(dir, &engine.Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, completeAll(t, e, fmt.Sprintf("r%d-", round), 200)...)
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	manifest = newestFile(t, dir, "MANIFEST-")
	mirror = "MIRROR-" + strings.TrimPrefix(manifest, "MANIFEST-")
	a, errA := os.ReadFile(filepath.Join(dir, manifest))
	b, errB := os.ReadFile(filepath.Join(dir, mirror))
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		t.Fatalf("the mirror of %s is not its copy: %v %v, %d and %d bytes", manifest, errA, errB, len(a), len(b))
	}
	if n, m := countFiles(t, dir, "MANIFEST-"), countFiles(t, dir, "MIRROR-"); n != m {
		t.Fatalf("%d MANIFEST files and %d mirrors: an obsolete MANIFEST's mirror stayed behind", n, m)
	}
	return dir, keys, manifest, mirror
}

// replayed counts the keys that e replays with their exact response.
func replayed(t *testing.T, e *engine.Engine, keys []string) int {
	t.Helper()
	n := 0
	for _, k := range keys {
		res := begin(t, e, req(k, "x"))
		switch res.Outcome {
		case engine.Replay:
			assertReplay(t, res, response(bodyOf(k)))
			n++
		case engine.Proceed:
			res.Claim.Release(ctx)
		}
	}
	return n
}

// TestManifestDamageIsNeverTakenForATornTail flips every byte of a
// MANIFEST in turn (every other time a byte of its mirror too). Pebble reads a MANIFEST up to its first unreadable
// edit and takes the rest for a torn tail, so a flip in a later edit used
// to open the directory without the tables that edit added: 200
// acknowledged records gone, silently. Each flip must now be refused
// (ErrCorrupt naming the MANIFEST) or leave every record replaying.
func TestManifestDamageIsNeverTakenForATornTail(t *testing.T) {
	src, keys, manifest, _ := manifestDir(t)
	fi, err := os.Stat(filepath.Join(src, manifest))
	if err != nil {
		t.Fatal(err)
	}
	step := int64(1)
	if raceEnabled {
		step = 5
	}
	refused, whole := 0, 0
	for off := int64(0); off < fi.Size(); off += step {
		dir := damagedCopy(t, src, manifest, func(b []byte) []byte { b[off] ^= 0x10; return b })
		if off%2 == 1 {
			// The mirror damaged too, elsewhere.
			mp := filepath.Join(dir, "MIRROR-"+strings.TrimPrefix(manifest, "MANIFEST-"))
			mb, err := os.ReadFile(mp)
			if err != nil {
				t.Fatal(err)
			}
			mb[(off*7+13)%int64(len(mb))] ^= 0x04
			if err := os.WriteFile(mp, mb, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		e, err := engine.Open(dir, &engine.Options{Logger: quietLogger()})
		if err != nil {
			if !errors.Is(err, engine.ErrCorrupt) || !strings.Contains(err.Error(), manifest) {
				t.Fatalf("flip at %d: Open: %v; want ErrCorrupt naming %s", off, err, manifest)
			}
			refused++
			continue
		}
		n := replayed(t, e, keys)
		e.Close()
		if n != len(keys) {
			t.Fatalf("flip at %d of %s: the directory opened and replays %d of %d acknowledged records", off, manifest, n, len(keys))
		}
		whole++
	}
	t.Logf("%s, %d bytes: %d flips refused, %d opened with every record", manifest, fi.Size(), refused, whole)
}

// TestTornManifestTailOpens: an edit being written when the machine
// stopped (in the MANIFEST, never fsynced, so never in the mirror) is a
// torn tail, and the directory opens with everything.
func TestTornManifestTailOpens(t *testing.T) {
	src, keys, manifest, _ := manifestDir(t)
	for _, tail := range [][]byte{
		{0xde, 0xad, 0xbe, 0xef, 0x40, 0x00, 0x01, 'e', 'd', 'i'}, // a chunk cut short
		bytes.Repeat([]byte{0}, 50),                               // zeroed pages
	} {
		dir := damagedCopy(t, src, manifest, func(b []byte) []byte { return append(b, tail...) })
		e, err := engine.Open(dir, &engine.Options{Logger: quietLogger()})
		if err != nil {
			t.Fatalf("Open with a torn MANIFEST tail: %v", err)
		}
		if n := replayed(t, e, keys); n != len(keys) {
			t.Fatalf("torn MANIFEST tail: %d of %d records replay", n, len(keys))
		}
		e.Close()
	}
}

// TestRepairReadsTablesThroughTheManifestMirror: with a MANIFEST damaged,
// Repair reads the tables and blob files through its mirror and loses
// nothing. Without a usable mirror it can salvage only the write-ahead
// log, and says that the tables are lost.
func TestRepairReadsTablesThroughTheManifestMirror(t *testing.T) {
	src, keys, manifest, mirror := manifestDir(t)
	for _, tc := range []struct {
		name   string
		at     func(size int) int  // where the MANIFEST is damaged
		mirror func([]byte) []byte // nil: removed
		whole  bool
	}{
		{"first edit, intact mirror", func(int) int { return 10 }, func(b []byte) []byte { return b }, true},
		{"last edit, intact mirror", func(n int) int { return n - 20 }, func(b []byte) []byte { return b }, true},
		// Each copy damaged where the other is not (found in review: the
		// whole mirror was read in the MANIFEST's place, or the damage
		// opened silently).
		{"first edit, mirror damaged in the last", func(int) int { return 10 }, func(b []byte) []byte { b[len(b)-20] ^= 0x10; return b }, true},
		{"last edit, mirror damaged in the first", func(n int) int { return n - 20 }, func(b []byte) []byte { b[10] ^= 0x10; return b }, true},
		// A mirror that missed the last edit (one whose removal failed)
		// mends what it holds, and the rest is the MANIFEST's own.
		{"first edit, mirror without the last edit", func(int) int { return 10 }, func(b []byte) []byte { return b[:manifestRecordEnd(t, b, 1)] }, true},
		{"no mirror", func(int) int { return 10 }, nil, false},
		{"mirror damaged too", func(int) int { return 10 }, func(b []byte) []byte { b[10] ^= 0x10; return b }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := damagedCopy(t, src, manifest, func(b []byte) []byte { b[tc.at(len(b))] ^= 0x10; return b })
			if tc.mirror == nil {
				if err := os.Remove(filepath.Join(dir, mirror)); err != nil {
					t.Fatal(err)
				}
			} else {
				mb, err := os.ReadFile(filepath.Join(dir, mirror))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, mirror), tc.mirror(mb), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := engine.Open(dir, &engine.Options{Logger: quietLogger()}); !errors.Is(err, engine.ErrCorrupt) || !strings.Contains(err.Error(), manifest) {
				t.Fatalf("Open with a damaged MANIFEST: %v; want ErrCorrupt naming %s", err, manifest)
			}
			out := filepath.Join(t.TempDir(), "out")
			rep, err := engine.Repair(dir, out, &engine.Options{Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			damage := strings.Join(rep.Damage, "; ")
			if tc.whole {
				if rep.Completed != len(keys) || !rep.Clean() || len(rep.Mended) != 1 || !strings.Contains(rep.Mended[0], mirror) {
					t.Fatalf("Repair with an intact mirror: %d of %d completions, clean %v, lost %v and %d, damage %q, mended %q", rep.Completed, len(keys), rep.Clean(), rep.Lost, rep.LostUnknown, damage, rep.Mended)
				}
			} else if rep.Completed >= len(keys) || rep.Clean() || !strings.Contains(damage, "only the write-ahead logs were salvaged") {
				t.Fatalf("Repair without a usable mirror: %d of %d completions, damage %q; want the log's records only, and the tables reported lost", rep.Completed, len(keys), damage)
			}
			e, err := engine.Open(out, &engine.Options{Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if n := replayed(t, e, keys); n != rep.Completed {
				t.Fatalf("the repaired directory replays %d records; the report says %d were carried over", n, rep.Completed)
			}
		})
	}
}

// manifestRecordEnd returns the offset at which the first n records of
// MANIFEST b end (each of these fits one chunk).
func manifestRecordEnd(t *testing.T, b []byte, n int) int {
	t.Helper()
	off := 0
	for range n {
		if off+7 > len(b) || b[off+6] != 1 { // a full chunk
			t.Fatalf("MANIFEST record at %d is not one chunk", off)
		}
		off += 7 + (int(b[off+4]) | int(b[off+5])<<8)
	}
	return off
}

// newestFile returns the name of the file in dir with the prefix and the
// highest number.
func newestFile(t *testing.T, dir, prefix string) string {
	t.Helper()
	names := filesWith(t, dir, prefix)
	if len(names) == 0 {
		t.Fatalf("no %s file in %s", prefix, dir)
	}
	return slices.Max(names)
}

func countFiles(t *testing.T, dir, prefix string) int {
	t.Helper()
	return len(filesWith(t, dir, prefix))
}

// filesWith returns the names of the files in dir with the prefix.
func filesWith(t *testing.T, dir, prefix string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), prefix) {
			names = append(names, ent.Name())
		}
	}
	return names
}

// TestOrphanMirrorIsRemoved: a mirror whose MANIFEST is gone (a crash
// between their removals) is removed at the next writable open, and a
// read-only open leaves it.
func TestOrphanMirrorIsRemoved(t *testing.T) {
	dir, _, _, _ := manifestDir(t)
	orphan := filepath.Join(dir, "MIRROR-000002")
	if err := os.WriteFile(orphan, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(dir, &engine.Options{ReadOnly: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	if _, err := os.Stat(orphan); err != nil {
		t.Fatalf("a read-only open removed a file: %v", err)
	}
	e, err = engine.Open(dir, &engine.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the orphan mirror is still there: %v", err)
	}
	// Counted once Pebble's removal of the obsolete MANIFEST (and, after
	// it, of its mirror) is over: Close waits for it.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if n, m := countFiles(t, dir, "MANIFEST-"), countFiles(t, dir, "MIRROR-"); n != m {
		t.Fatalf("%d MANIFEST files and %d mirrors after open and close", n, m)
	}
}
