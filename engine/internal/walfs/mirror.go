package walfs

import (
	"errors"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// # The MANIFEST mirror
//
// Pebble's MANIFEST is the one file that names every table and blob file
// of the store, and Pebble reads it as it reads a log: it stops at the
// first edit it cannot read and takes the rest for a torn tail. A damaged
// byte in a MANIFEST's last edits therefore drops those edits silently —
// the tables a flush wrote stop being part of the store after the log
// they came from was deleted — and a damaged byte in its first edit makes
// the directory unreadable, though every table is intact (which blob file
// a table's values point into is recorded only in the MANIFEST).
//
// So every MANIFEST this filesystem creates gets a mirror beside it
// (MANIFEST-000123, MIRROR-000123) that holds exactly what the MANIFEST's
// fsyncs covered: a fsync of the MANIFEST is followed, before it returns
// to Pebble, by the write and fsync of the same bytes to the mirror. So
// Pebble acts on an edit (deleting the files it made obsolete, say) only
// once both copies hold it; the mirror is a byte copy of the MANIFEST's
// start; and any length the mirror has is a length of the MANIFEST that
// was fsynced. A chunk of the MANIFEST that does not read before the
// mirror's length was damaged on stable storage, which is no torn tail
// (engine's checkManifests refuses it); a torn tail of the MANIFEST,
// written but never fsynced, is never in the mirror. An explicit repair
// takes each damaged chunk from the mirror (see engine.Repair).
//
// If a write or fsync of the mirror fails, the mirror is removed (or
// emptied, if it cannot be) and the MANIFEST goes on without one, and
// without the check. Were even that to fail, the stale mirror would still
// be a byte copy of the MANIFEST's start: it mends only what it holds.
// What a mirror cannot cover: an edit that a kill -9 stopped between the
// MANIFEST's fsync and the mirror's write, until the next MANIFEST begins
// (at the next flush or open), and damage to the same chunk of both.
const mirrorPrefix = "MIRROR-"

// MirrorName returns the name of the mirror of the MANIFEST file with base
// name manifest (MANIFEST-000123 -> MIRROR-000123), or "" if manifest is
// not a MANIFEST's name.
func MirrorName(manifest string) string {
	num, ok := strings.CutPrefix(manifest, "MANIFEST-")
	if !ok || num == "" || strings.ContainsAny(num, "./") {
		return ""
	}
	return mirrorPrefix + num
}

// mirrorPath returns the path of the mirror of the MANIFEST at name, or "".
func (fs *FS) mirrorPath(name string) string {
	m := MirrorName(fs.PathBase(name))
	if m == "" {
		return ""
	}
	return fs.PathJoin(fs.PathDir(name), m)
}

// createMirror creates the mirror of the MANIFEST being created at name,
// or returns nil (the MANIFEST then goes on without one).
func (fs *FS) createMirror(name string) *mirror {
	path := fs.mirrorPath(name)
	if path == "" {
		return nil
	}
	f, err := fs.FS.Create(path, manifestCategory)
	if err != nil {
		_ = fs.FS.Remove(path)
		return nil
	}
	return &mirror{f: f, fs: fs.FS, path: path}
}

// RemoveOrphanMirrors removes the mirrors in dir whose MANIFEST is gone (a
// crash between the removal of an obsolete MANIFEST and of its mirror
// leaves one). Failures are ignored: an orphan only takes space.
func (fs *FS) RemoveOrphanMirrors(dir string) {
	names, err := fs.List(dir)
	if err != nil {
		return
	}
	for _, name := range names {
		num, ok := strings.CutPrefix(name, mirrorPrefix)
		if !ok {
			continue
		}
		// Asked of the filesystem, not of the listing, which is no
		// snapshot: a MANIFEST created while it ran may be missing from
		// it while its mirror (created after it) is there.
		if _, err := fs.FS.Stat(fs.PathJoin(dir, "MANIFEST-"+num)); errors.Is(err, os.ErrNotExist) {
			_ = fs.FS.Remove(fs.PathJoin(dir, name))
		}
	}
}

// removeMirror removes the mirror of the MANIFEST at name, if it has one.
func (fs *FS) removeMirror(name string) {
	if path := fs.mirrorPath(name); path != "" {
		_ = fs.FS.Remove(path)
	}
}

// A mirror is the second copy of one MANIFEST file.
type mirror struct {
	mu      sync.Mutex
	f       vfs.File // nil once dropped
	fs      vfs.FS
	path    string
	pending []byte // written to the MANIFEST since its last fsync
}

// write notes p, which the MANIFEST has just taken; it reaches the mirror
// after the MANIFEST's next fsync.
func (m *mirror) write(p []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f != nil {
		m.pending = append(m.pending, p...)
	}
}

// synced copies what the MANIFEST's fsync just covered to the mirror, and
// fsyncs it.
func (m *mirror) synced() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f == nil || len(m.pending) == 0 {
		return
	}
	n, err := m.f.Write(m.pending)
	if err == nil && n == len(m.pending) {
		err = m.f.Sync()
	} else if err == nil {
		err = io.ErrShortWrite
	}
	if err != nil {
		m.dropLocked()
		return
	}
	m.pending = m.pending[:0]
}

func (m *mirror) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f != nil {
		_ = m.f.Close()
		m.f = nil
	}
}

// drop gives the mirror up after a failed write or fsync of its MANIFEST.
func (m *mirror) drop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f != nil {
		m.dropLocked()
	}
}

// dropLocked gives the mirror up: it is removed (or, if it cannot be,
// emptied), so that no copy that misses edits stays behind for a repair to
// read in the MANIFEST's place.
func (m *mirror) dropLocked() {
	_ = m.f.Close()
	m.f, m.pending = nil, nil
	if m.fs.Remove(m.path) != nil {
		if f, err := m.fs.Create(m.path, manifestCategory); err == nil {
			_ = f.Close()
		}
	}
}
