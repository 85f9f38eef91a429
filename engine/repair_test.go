package engine_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
