package bench

import (
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// countingFS is a vfs.FS that counts the bytes written to its files:
// the write-ahead log, the tables of flushes and compactions, the
// manifest, everything a store hands to write(2). Raw Pebble writes
// through one; the engine counts the same bytes the same way in its own
// filesystem layer (engine.Stats.BytesWritten).
type countingFS struct {
	vfs.FS
	n *atomic.Uint64
}

// countWrites wraps inner so that every byte written to its files is
// added to n.
func countWrites(inner vfs.FS, n *atomic.Uint64) vfs.FS { return &countingFS{FS: inner, n: n} }

func (fs *countingFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	return &countingFile{File: f, n: fs.n}, nil
}

// Create implements vfs.FS.
func (fs *countingFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.Create(name, category))
}

// OpenReadWrite implements vfs.FS.
func (fs *countingFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenReadWrite(name, category, opts...))
}

// ReuseForWrite implements vfs.FS.
func (fs *countingFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.ReuseForWrite(oldname, newname, category))
}

// Unwrap implements vfs.FS.
func (fs *countingFS) Unwrap() vfs.FS { return fs.FS }

type countingFile struct {
	vfs.File
	n *atomic.Uint64
}

func (f *countingFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.n.Add(uint64(n))
	return n, err
}

func (f *countingFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	f.n.Add(uint64(n))
	return n, err
}
