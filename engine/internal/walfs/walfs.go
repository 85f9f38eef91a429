// Package walfs wraps a Pebble filesystem so that a failing disk cannot
// wedge or crash Pebble, while Pebble keeps every fsync of its
// write-ahead log.
//
// Pebble fsyncs its log itself (a commit with pebble.Sync waits for it, and
// Pebble's log writer serves every waiting commit with one fsync). That
// matters for recovery: each log chunk carries the offset up to which the
// log was synced when the chunk was written, and on replay Pebble takes a
// damaged chunk for a torn tail only if no later chunk says it was synced.
// The offsets are true only if every sync Pebble sees is a real fsync, so
// this filesystem never fakes one.
//
// # Failure
//
// Pebble cannot survive an error from a log write: a failed write leaves
// its commit pipeline wedged (the failed batch blocks every later commit)
// and it calls Fatalf. So no write error reaches Pebble. The first failure
// of a WAL file — a failed create, write, fsync or close — is recorded as
// the filesystem's sticky error ([FS.Err]); from then on every write to a
// WAL file is dropped while reporting success, so that the log on disk
// never holds a record after a gap, and every fsync of a WAL file returns
// the sticky error, so that no commit waiting for one is acknowledged. The
// engine checks Err after every commit and acknowledges nothing once it is
// set; the directory is reopened to recover, and replay ends where the
// log's good bytes end.
//
// Blob files (Pebble's separated values) get the same treatment for another
// reason: Pebble v2.1.7 dereferences nil when the last write, the fsync or
// the close of a blob file fails (its writer aborts a file it has already
// released), which would crash the process. Their failures become the
// sticky error too, and to keep the damaged file from ever being used,
// every write to a MANIFEST fails once the sticky error is set: the flush
// that wrote the file cannot commit it (Pebble treats that as fatal, which
// the engine contains), and the directory stays as it was before the
// failure — the log still holds everything acknowledged.
//
// The error is sticky for fsync in particular because once fsync has
// failed the kernel may have dropped dirty pages, and no later fsync can
// prove the earlier writes durable.
package walfs

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The write categories Pebble creates its files with.
const (
	walCategory      vfs.DiskWriteCategory = "pebble-wal"
	manifestCategory vfs.DiskWriteCategory = "pebble-manifest"
)

// FS is a vfs.FS whose WAL, blob and MANIFEST files turn failures into
// its sticky error (see Failure in the package doc).
type FS struct {
	vfs.FS

	mu     sync.Mutex
	err    atomic.Pointer[error] // first failure; set once under mu
	syncs  atomic.Uint64
	synced atomic.Pointer[SyncPoint] // the latest fsync of a WAL file

	// OnSync, if set before the filesystem is used, is called after every
	// successful fsync of a WAL file. It must not block.
	OnSync func()
}

// A SyncPoint says that the first Size bytes of the WAL file Name are on
// stable storage.
type SyncPoint struct {
	Name string // base name, such as 000012.log
	Size int64
}

// Synced returns the latest fsync of a WAL file (zero if none yet).
func (fs *FS) Synced() SyncPoint {
	if p := fs.synced.Load(); p != nil {
		return *p
	}
	return SyncPoint{}
}

// New wraps inner.
func New(inner vfs.FS) *FS {
	return &FS{FS: inner}
}

// Create implements vfs.FS.
func (fs *FS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.wrap(f, name, category, err, "create")
}

// ReuseForWrite implements vfs.FS.
func (fs *FS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(f, newname, category, err, "reuse")
}

func (fs *FS) wrap(f vfs.File, name string, category vfs.DiskWriteCategory, err error, op string) (vfs.File, error) {
	switch {
	case err != nil && category != walCategory:
		return f, err
	case category == manifestCategory || strings.HasPrefix(fs.PathBase(name), "MANIFEST-"):
		return &manifestFile{File: f, fs: fs}, nil
	case strings.HasSuffix(name, ".blob"):
		return &blobFile{File: f, fs: fs}, nil
	case category != walCategory:
		return f, err
	}
	if err != nil {
		// Pebble would wedge on this error; hand it a log that drops
		// everything, and fail the filesystem instead.
		fs.fail("write-ahead log "+op, err)
		return nullFile{}, nil
	}
	return &walFile{File: f, fs: fs, name: fs.PathBase(name)}, nil
}

// Syncs returns the number of fsyncs of WAL files performed.
func (fs *FS) Syncs() uint64 { return fs.syncs.Load() }

// Err returns the sticky error of the first failed WAL operation, if any.
// It costs one atomic load.
func (fs *FS) Err() error {
	if p := fs.err.Load(); p != nil {
		return *p
	}
	return nil
}

// fail records err from op as the sticky error, unless one is set, and
// returns the sticky error.
func (fs *FS) fail(op string, err error) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if p := fs.err.Load(); p != nil {
		return *p
	}
	e := fmt.Errorf("%s failed; the write-ahead log holds everything acknowledged before it, reopen to recover: %w", op, err)
	fs.err.Store(&e)
	return e
}

type walFile struct {
	vfs.File
	fs   *FS
	name string
	size atomic.Int64 // bytes written to the file in this incarnation
}

// Write writes p, or drops it once the filesystem has failed; it always
// reports success (see Failure in the package doc).
func (f *walFile) Write(p []byte) (int, error) {
	if f.fs.Err() != nil {
		return len(p), nil
	}
	if _, err := f.File.Write(p); err != nil {
		f.fs.fail("write-ahead log write", err)
	}
	f.size.Add(int64(len(p)))
	return len(p), nil
}

// WriteAt is Write at an offset.
func (f *walFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.Err() != nil {
		return len(p), nil
	}
	if _, err := f.File.WriteAt(p, off); err != nil {
		f.fs.fail("write-ahead log write", err)
	}
	for end := off + int64(len(p)); ; {
		if cur := f.size.Load(); cur >= end || f.size.CompareAndSwap(cur, end) {
			break
		}
	}
	return len(p), nil
}

// Preallocate is best effort; a failure here only matters if the writes
// that follow fail too.
func (f *walFile) Preallocate(off, n int64) error {
	_ = f.File.Preallocate(off, n)
	return nil
}

// Sync fsyncs the file, or returns the sticky error: no sync may succeed
// after a dropped write.
func (f *walFile) Sync() error {
	if err := f.fs.Err(); err != nil {
		return err
	}
	f.fs.syncs.Add(1)
	size := f.size.Load() // every byte written before the fsync began
	if err := f.File.SyncData(); err != nil {
		return f.fs.fail("write-ahead log fsync", err)
	}
	if err := f.fs.Err(); err != nil {
		return err
	}
	f.fs.synced.Store(&SyncPoint{Name: f.name, Size: size})
	if f.fs.OnSync != nil {
		f.fs.OnSync()
	}
	return nil
}

// SyncData is Sync.
func (f *walFile) SyncData() error { return f.Sync() }

// SyncTo promises nothing (fullSync is false), so no caller takes it as a
// sync; Pebble's log writer calls Sync.
func (f *walFile) SyncTo(int64) (bool, error) { return false, nil }

// Close closes the file; a failure becomes the sticky error rather than
// Pebble's. (Pebble fsyncs a log before it closes it.)
func (f *walFile) Close() error {
	if err := f.File.Close(); err != nil {
		f.fs.fail("write-ahead log close", err)
	}
	return nil
}

// blobFile reports success to Pebble whatever happens; a failure becomes
// the sticky error (see Failure in the package doc).
type blobFile struct {
	vfs.File
	fs *FS
}

func (f *blobFile) check(op string, err error) {
	if err != nil {
		f.fs.fail("blob file "+op, err)
	}
}

func (f *blobFile) Write(p []byte) (int, error) {
	if f.fs.Err() == nil {
		_, err := f.File.Write(p)
		f.check("write", err)
	}
	return len(p), nil
}

func (f *blobFile) Sync() error {
	if f.fs.Err() == nil {
		f.check("fsync", f.File.Sync())
	}
	return nil
}

func (f *blobFile) SyncData() error {
	if f.fs.Err() == nil {
		f.check("fsync", f.File.SyncData())
	}
	return nil
}

func (f *blobFile) Close() error {
	f.check("close", f.File.Close())
	return nil
}

// manifestFile refuses every write once the filesystem has failed, so that
// nothing written after the failure (a blob file above all) is committed.
type manifestFile struct {
	vfs.File
	fs *FS
}

func (f *manifestFile) Write(p []byte) (int, error) {
	if err := f.fs.Err(); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *manifestFile) Sync() error {
	if err := f.fs.Err(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *manifestFile) SyncData() error {
	if err := f.fs.Err(); err != nil {
		return err
	}
	return f.File.SyncData()
}

// nullFile stands in for a WAL file that could not be created once the
// filesystem has failed: it drops writes and reads as empty.
type nullFile struct{}

func (nullFile) Close() error                           { return nil }
func (nullFile) Read([]byte) (int, error)               { return 0, io.EOF }
func (nullFile) ReadAt([]byte, int64) (int, error)      { return 0, io.EOF }
func (nullFile) Write(p []byte) (int, error)            { return len(p), nil }
func (nullFile) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }
func (nullFile) Preallocate(int64, int64) error         { return nil }
func (nullFile) Stat() (vfs.FileInfo, error)            { return nil, errNullStat }
func (nullFile) Sync() error                            { return nil }
func (nullFile) SyncTo(int64) (bool, error)             { return false, nil }
func (nullFile) SyncData() error                        { return nil }
func (nullFile) Prefetch(int64, int64) error            { return nil }
func (nullFile) Fd() uintptr                            { return vfs.InvalidFd }

var errNullStat = errors.New("walfs: write-ahead log could not be created")
