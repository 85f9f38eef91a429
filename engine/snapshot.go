package engine

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// A read-only Open of a directory that another process has open (see
// Options.ReadOnly) reads a snapshot: a copy of the directory, taken
// without the owner's help, that Pebble opens as it would after a crash.
//
// Pebble changes a directory in one order: it writes new tables, blob
// files and logs, records them in the MANIFEST (an appended edit, or a new
// MANIFEST named by a new marker file), and only then removes what the
// edit made obsolete. So a copy is consistent if the MANIFEST (its name and
// size) did not change while it was taken: every file that MANIFEST names
// was there throughout, and so was every log it has not flushed. Tables and
// blob files never change once written and are hard-linked (copied where
// links fail, across filesystems); everything else is copied. The newest
// log may be caught mid-write: a torn tail, which Open accepts. A copy
// taken while the MANIFEST changed is thrown away and taken again.

// snapshotTries bounds the attempts at a consistent copy.
const snapshotTries = 20

// snapshotDir copies dir into a new temporary directory beside it (so
// that tables can be hard-linked), or in os.TempDir, and returns it.
//
// A snapshot's name carries the process id, so that the snapshots of a
// process that died before Close (whose hard links would keep deleted
// tables on the disk) are removed by the next read-only Open.
func snapshotDir(dir string) (string, error) {
	parent := filepath.Dir(filepath.Clean(dir))
	removeStale(parent, snapshotPrefix)
	removeStale(os.TempDir(), snapshotPrefix)
	prefix := fmt.Sprintf("%s%d-", snapshotPrefix, os.Getpid())
	var lastErr error
	for range snapshotTries {
		tmp, err := os.MkdirTemp(parent, prefix)
		if err != nil {
			tmp, err = os.MkdirTemp("", prefix)
		}
		if err != nil {
			return "", err
		}
		ok, err := copyStore(dir, tmp)
		if ok && err == nil {
			return tmp, nil
		}
		os.RemoveAll(tmp)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		lastErr = err
	}
	return "", fmt.Errorf("%w: the directory changed during each of %d attempts to copy it (last: %v)", ErrLocked, snapshotTries, lastErr)
}

// snapshotPrefix and repairPrefix begin the names of the working
// directories of read-only opens and of Repair, followed by the process
// id and a dash.
const (
	snapshotPrefix = ".idemkv-snapshot-"
	repairPrefix   = ".idemkv-repair-"
)

// removeStale removes the working directories in dir named with prefix
// whose process is gone.
func removeStale(dir, prefix string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, ent := range ents {
		rest, ok := strings.CutPrefix(ent.Name(), prefix)
		if !ok || !ent.IsDir() {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		os.RemoveAll(filepath.Join(dir, ent.Name()))
	}
}

// copyStore copies the store in dir into tmp; ok is false if its MANIFEST
// changed meanwhile. A file removed during the copy is reported as an
// error matching os.ErrNotExist (and the copy is retried).
func copyStore(dir, tmp string) (ok bool, err error) {
	before, err := manifestState(dir)
	if err != nil {
		return false, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	// The sync mark first: it must not claim more of a log than the copy
	// of that log holds (the logs grow while they are copied). Then the
	// MANIFESTs' mirrors, for the same reason: a mirror must not hold an
	// edit that the copy of its MANIFEST lacks (see checkManifests).
	first := func(name string) int {
		switch {
		case name == syncMarkName:
			return 2
		case strings.HasPrefix(name, "MIRROR-"):
			return 1
		}
		return 0
	}
	slices.SortStableFunc(ents, func(a, b os.DirEntry) int {
		return cmp.Compare(first(b.Name()), first(a.Name()))
	})
	for _, ent := range ents {
		name := ent.Name()
		if !ent.Type().IsRegular() || name == "LOCK" {
			continue
		}
		src, dst := filepath.Join(dir, name), filepath.Join(tmp, name)
		if strings.HasSuffix(name, ".sst") || strings.HasSuffix(name, ".blob") {
			if err := os.Link(src, dst); err == nil {
				continue
			} else if errors.Is(err, os.ErrNotExist) {
				return false, err
			}
		}
		if err := copyFile(src, dst); err != nil {
			return false, err
		}
	}
	after, err := manifestState(dir)
	if err != nil {
		return false, err
	}
	return before == after, nil
}

// manifestState names the current MANIFEST (by its marker files) and its
// size.
func manifestState(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var state []string
	for _, ent := range ents {
		name := ent.Name()
		if strings.HasPrefix(name, "marker.") || strings.HasPrefix(name, "MANIFEST-") {
			fi, err := ent.Info()
			if err != nil {
				return "", err
			}
			state = append(state, fmt.Sprintf("%s:%d", name, fi.Size()))
		}
	}
	return strings.Join(state, ","), nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// isLockHeld reports whether err (from locking a directory) says that
// another process, or this one, holds the lock.
func isLockHeld(err error) bool {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return false // the lock file could not be opened at all
	}
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) ||
		strings.Contains(err.Error(), "lock held by current process")
}

// openDirs counts the writable engines of this process by directory.
var openDirs sync.Map // string -> *atomic.Int32

// register records that a writable engine has dir open, and returns the
// name to unregister.
func register(dir string) string {
	name := canonical(dir)
	n, _ := openDirs.LoadOrStore(name, new(atomic.Int32))
	n.(*atomic.Int32).Add(1)
	return name
}

func unregister(name string) {
	if n, ok := openDirs.Load(name); ok {
		n.(*atomic.Int32).Add(-1)
	}
}

// openHere reports whether a writable engine of this process has dir open.
func openHere(dir string) bool {
	n, ok := openDirs.Load(canonical(dir))
	return ok && n.(*atomic.Int32).Load() > 0
}

func canonical(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	return dir
}
