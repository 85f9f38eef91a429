package engine_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

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
	rep, err := engine.Repair(dir, out, &engine.Options{Logger: quietLogger()})
	if err != nil || !rep.Clean() || rep.Completed != 2 {
		t.Fatalf("Repair of a sound directory: %+v, %v", rep, err)
	}
}
