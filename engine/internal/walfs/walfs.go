// Package walfs wraps a Pebble filesystem so that the engine, not Pebble,
// decides when the write-ahead log is fsynced.
//
// Pebble's commit with pebble.Sync waits for its WAL writer to write(2) the
// batch and then fsync the file. Through this filesystem the fsync of WAL
// files is a no-op, so such a commit returns as soon as the bytes are in
// the operating system: they survive a crash of the process (the kernel
// still holds them) but not of the machine. The engine then calls
// [FS.SyncWAL] — once for many commits — when it needs the machine-crash
// guarantee, or on a timer in the relaxed durability mode.
//
// Every other file (tables, manifest, options, directories) is synced by
// Pebble exactly as usual. A WAL file is fsynced for real when Pebble
// closes it (at rotation and at Close), so data never sits unsynced in a
// file that SyncWAL no longer tracks. That fsync runs in the background:
// Pebble closes the old log while it switches memtables, with every commit
// waiting, and an fsync there (of up to a SyncInterval of writes in the
// relaxed mode) showed up as the slowest requests. The file stays tracked
// until its fsync is done, so a SyncWAL meanwhile covers it; [FS.Drain]
// waits for all of them (the engine calls it after closing Pebble).
//
// # Failure
//
// Pebble cannot survive an error from its log: a failed write leaves its
// commit pipeline wedged (the failed batch blocks every later commit) and
// it calls Fatalf. So no error from a WAL file ever reaches Pebble. The
// first one — a failed create, write, fsync or close — is recorded as the
// filesystem's sticky error ([FS.Err]), and from then on every write to a
// WAL file is dropped while reporting success, so that the log on disk
// never holds a record after a gap. The engine checks Err after every
// commit and acknowledges nothing once it is set; the directory is
// reopened to recover, and replay ends where the log's good bytes end.
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

// FS is a vfs.FS whose WAL files are fsynced only by SyncWAL and Close.
type FS struct {
	vfs.FS

	mu      sync.Mutex
	open    map[*walFile]struct{} // guarded by mu
	closing sync.WaitGroup        // logs being closed in the background
	err     atomic.Pointer[error] // first WAL failure; set once under mu
	syncs   atomic.Uint64
}

// New wraps inner.
func New(inner vfs.FS) *FS {
	return &FS{FS: inner, open: make(map[*walFile]struct{})}
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
	w := &walFile{File: f, fs: fs}
	fs.mu.Lock()
	fs.open[w] = struct{}{}
	fs.mu.Unlock()
	return w, nil
}

// SyncWAL fsyncs every open WAL file written since its last fsync. When it
// returns nil, every byte written to a WAL before the call began is on
// stable storage. It is safe to call concurrently with writes, but callers
// should not run two SyncWAL calls at once (the engine serialises them).
func (fs *FS) SyncWAL() error {
	if err := fs.Err(); err != nil {
		return err
	}
	fs.mu.Lock()
	files := make([]*walFile, 0, len(fs.open))
	for f := range fs.open {
		files = append(files, f)
	}
	fs.mu.Unlock()
	for _, f := range files {
		if err := f.syncIfDirty(); err != nil {
			return err
		}
	}
	return fs.Err()
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
	fs *FS
	// dirty is set after every write and cleared just before an fsync, so
	// an fsync that observes it clear covers every write that set it.
	dirty atomic.Bool
	// syncMu serialises the real fsyncs of this file (SyncWAL and Close).
	syncMu sync.Mutex
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
	f.dirty.Store(true)
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
	f.dirty.Store(true)
	return len(p), nil
}

// Preallocate is best effort; a failure here only matters if the writes
// that follow fail too.
func (f *walFile) Preallocate(off, n int64) error {
	_ = f.File.Preallocate(off, n)
	return nil
}

// Sync is a no-op: the engine fsyncs WAL files through SyncWAL.
func (f *walFile) Sync() error { return nil }

// SyncData is a no-op: the engine fsyncs WAL files through SyncWAL.
func (f *walFile) SyncData() error { return nil }

// SyncTo promises nothing (fullSync is false), so no caller takes it as
// durable.
func (f *walFile) SyncTo(int64) (bool, error) { return false, nil }

func (f *walFile) syncIfDirty() error {
	f.syncMu.Lock()
	defer f.syncMu.Unlock()
	if !f.dirty.Swap(false) {
		return nil
	}
	if err := f.fs.Err(); err != nil {
		return err
	}
	f.fs.syncs.Add(1)
	if err := f.File.SyncData(); err != nil {
		f.dirty.Store(true)
		return f.fs.fail("write-ahead log fsync", err)
	}
	return nil
}

// Close fsyncs the file for real before closing it, and only then stops
// tracking it, so a concurrent SyncWAL never misses its data. A failure
// becomes the sticky error rather than Pebble's.
//
// Pebble writes the log's last bytes (its EOF trailer) before it calls
// Close, so what remains is the fsync and the close, which run in the
// background (see the package doc) and report to the sticky error.
func (f *walFile) Close() error {
	f.fs.closing.Add(1)
	go func() {
		defer f.fs.closing.Done()
		_ = f.syncIfDirty()
		f.fs.mu.Lock()
		delete(f.fs.open, f)
		f.fs.mu.Unlock()
		if err := f.File.Close(); err != nil {
			f.fs.fail("write-ahead log close", err)
		}
	}()
	return nil
}

// Drain waits for the logs being closed in the background to be fsynced
// and closed, and returns the sticky error, if any.
func (fs *FS) Drain() error {
	fs.closing.Wait()
	return fs.Err()
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
