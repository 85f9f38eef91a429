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
//
// # After a failure the directory is frozen
//
// Once the sticky error is set, nothing in the directory is removed,
// renamed or linked any more, and no table or blob file is created: what
// is on disk stays exactly as it was at the failure, which is what the next
// Open recovers from. This is what makes it safe for Pebble to go on after
// an error it calls fatal (see [FS.Fail]): a MANIFEST write that failed may
// still have reached the disk, and Pebble, taking the flush for failed,
// would otherwise delete the tables that the MANIFEST on disk names. Reads
// keep working, so the engine can go on replaying what it stored.
//
// # Backoff
//
// Pebble retries a failed flush at once, and again, for as long as it
// fails: on a full disk, thousands of attempts (and as many log lines)
// a second. A table or blob file is created only after a pause
// once a write of one has failed (10 ms, doubling to a second, reset by a
// success), and not at all once the filesystem has failed.
package walfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

	mu    sync.Mutex
	err   atomic.Pointer[error] // first failure; set once under mu
	syncs atomic.Uint64
	// syncNanos is the time spent in WAL fsyncs.
	syncNanos atomic.Int64
	// written counts the bytes written to the files it wraps (logs,
	// tables, blob files, manifests), as handed to write(2).
	written atomic.Uint64
	synced  atomic.Pointer[SyncPoint] // the latest fsync of a WAL file

	// OnSync, if set before the filesystem is used, is called after every
	// successful fsync of a WAL file. It must not block.
	OnSync func()

	// backoff is the pause before the next table or blob file is created
	// (0 while their writes succeed); see Backoff in the package doc.
	backoff atomic.Int64
}

// Backoff bounds.
const (
	minBackoff = 10 * time.Millisecond
	maxBackoff = time.Second
)

// ErrFrozen is returned for every removal, rename, link and creation of a
// table that Pebble attempts after the filesystem has failed.
var ErrFrozen = errors.New("walfs: the store stopped after a failure; the data directory is left as it was")

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
	if category != walCategory && !isManifest(fs, name, category) {
		if err := fs.pause(name); err != nil {
			return nil, err
		}
	}
	f, err := fs.FS.Create(name, category)
	return fs.wrap(f, name, category, err, "create")
}

// pause waits out the backoff before a table or blob file is created, and
// refuses the creation once the filesystem has failed (after a pause, so
// that Pebble's retries do not spin).
func (fs *FS) pause(name string) error {
	d := time.Duration(fs.backoff.Load())
	if fs.Err() != nil {
		d = maxBackoff
	}
	if d > 0 {
		time.Sleep(d)
	}
	if err := fs.Err(); err != nil {
		return &os.PathError{Op: "create", Path: name, Err: ErrFrozen}
	}
	return nil
}

// noteWrite adjusts the backoff after a write of a table or blob file.
func (fs *FS) noteWrite(err error) {
	if err == nil {
		if fs.backoff.Load() != 0 {
			fs.backoff.Store(0)
		}
		return
	}
	d := time.Duration(fs.backoff.Load())
	fs.backoff.Store(int64(min(max(2*d, minBackoff), maxBackoff)))
}

// Remove implements vfs.FS; see the package doc for why it refuses once
// the filesystem has failed.
func (fs *FS) Remove(name string) error {
	if err := fs.frozen("remove", name); err != nil {
		return err
	}
	if err := fs.FS.Remove(name); err != nil {
		return err
	}
	if strings.HasPrefix(fs.PathBase(name), "MANIFEST-") {
		fs.removeMirror(name)
	}
	return nil
}

// RemoveAll implements vfs.FS.
func (fs *FS) RemoveAll(name string) error {
	if err := fs.frozen("remove", name); err != nil {
		return err
	}
	return fs.FS.RemoveAll(name)
}

// Rename implements vfs.FS.
func (fs *FS) Rename(oldname, newname string) error {
	if err := fs.frozen("rename", oldname); err != nil {
		return err
	}
	return fs.FS.Rename(oldname, newname)
}

// Link implements vfs.FS.
func (fs *FS) Link(oldname, newname string) error {
	if err := fs.frozen("link", oldname); err != nil {
		return err
	}
	return fs.FS.Link(oldname, newname)
}

func (fs *FS) frozen(op, name string) error {
	if fs.Err() != nil {
		return &os.PathError{Op: op, Path: name, Err: ErrFrozen}
	}
	return nil
}

// Fail sets the sticky error (unless one is set) for a failure found
// outside the filesystem — a fatal error in Pebble — and so freezes the
// directory (see the package doc). It returns the sticky error.
func (fs *FS) Fail(cause error) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if p := fs.err.Load(); p != nil {
		return *p
	}
	fs.err.Store(&cause)
	return cause
}

func isManifest(fs *FS, name string, category vfs.DiskWriteCategory) bool {
	return category == manifestCategory || strings.HasPrefix(fs.PathBase(name), "MANIFEST-")
}

// ReuseForWrite implements vfs.FS. Once the filesystem has failed it
// renames nothing (see the package doc).
func (fs *FS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if err := fs.frozen("rename", oldname); err != nil {
		if category == walCategory {
			return nullFile{}, nil
		}
		return nil, err
	}
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(f, newname, category, err, "reuse")
}

func (fs *FS) wrap(f vfs.File, name string, category vfs.DiskWriteCategory, err error, op string) (vfs.File, error) {
	switch {
	case err != nil && category != walCategory:
		if !isManifest(fs, name, category) {
			fs.noteWrite(err)
		}
		return f, err
	case isManifest(fs, name, category):
		mf := &manifestFile{File: f, fs: fs}
		if op == "create" {
			mf.mirror = fs.createMirror(name)
		} else {
			fs.removeMirror(name)
		}
		return mf, nil
	case strings.HasSuffix(name, ".blob"):
		return &blobFile{File: f, fs: fs}, nil
	case category != walCategory:
		return &tableFile{File: f, fs: fs}, nil
	}
	if err != nil {
		// Pebble would wedge on this error; hand it a log that drops
		// everything, and fail the filesystem instead.
		fs.fail("write-ahead log "+op, err)
		return nullFile{}, nil
	}
	return &walFile{File: f, fs: fs, name: fs.PathBase(name)}, nil
}

// Written returns the bytes written to the files created through fs: the
// write-ahead log, the tables and blob files of flushes and compactions,
// the manifest.
func (fs *FS) Written() uint64 { return fs.written.Load() }

// Syncs returns the number of fsyncs of WAL files performed.
func (fs *FS) Syncs() uint64 { return fs.syncs.Load() }

// SyncTime returns the time spent in those fsyncs.
func (fs *FS) SyncTime() time.Duration { return time.Duration(fs.syncNanos.Load()) }

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
	if n, err := f.File.Write(p); err != nil {
		f.fs.fail("write-ahead log write", err)
	} else {
		f.fs.written.Add(uint64(n))
	}
	f.size.Add(int64(len(p)))
	return len(p), nil
}

// WriteAt is Write at an offset.
func (f *walFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.Err() != nil {
		return len(p), nil
	}
	if n, err := f.File.WriteAt(p, off); err != nil {
		f.fs.fail("write-ahead log write", err)
	} else {
		f.fs.written.Add(uint64(n))
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
	start := time.Now()
	err := f.File.SyncData()
	f.fs.syncNanos.Add(int64(time.Since(start)))
	if err != nil {
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
		f.fs.noteWrite(err)
		f.fs.fail("blob file "+op, err)
	}
}

func (f *blobFile) Write(p []byte) (int, error) {
	if f.fs.Err() == nil {
		n, err := f.File.Write(p)
		f.fs.written.Add(uint64(n))
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

// tableFile passes everything through, noting write failures for the
// backoff.
type tableFile struct {
	vfs.File
	fs *FS
}

func (f *tableFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.fs.written.Add(uint64(n))
	if err != nil {
		f.fs.noteWrite(err)
	}
	return n, err
}

func (f *tableFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	f.fs.written.Add(uint64(n))
	if err != nil {
		f.fs.noteWrite(err)
	}
	return n, err
}

func (f *tableFile) Sync() error {
	err := f.File.Sync()
	f.fs.noteWrite(err)
	return err
}

// manifestFile refuses every write once the filesystem has failed, so that
// nothing written after the failure (a blob file above all) is committed,
// and copies what each fsync covered to its mirror (see mirror.go).
type manifestFile struct {
	vfs.File
	fs     *FS
	mirror *mirror // nil: none
}

func (f *manifestFile) Write(p []byte) (int, error) {
	if err := f.fs.Err(); err != nil {
		return 0, err
	}
	n, err := f.File.Write(p)
	f.fs.written.Add(uint64(n))
	if f.mirror != nil {
		if err != nil || n != len(p) {
			f.mirror.drop()
		} else {
			f.mirror.write(p)
		}
	}
	return n, err
}

func (f *manifestFile) Sync() error {
	if err := f.fs.Err(); err != nil {
		return err
	}
	err := f.File.Sync()
	f.syncMirror(err)
	return err
}

func (f *manifestFile) SyncData() error {
	if err := f.fs.Err(); err != nil {
		return err
	}
	err := f.File.SyncData()
	f.syncMirror(err)
	return err
}

func (f *manifestFile) syncMirror(err error) {
	switch {
	case f.mirror == nil:
	case err != nil:
		f.mirror.drop()
	default:
		f.mirror.synced()
	}
}

func (f *manifestFile) Close() error {
	err := f.File.Close()
	if f.mirror != nil {
		f.mirror.close()
	}
	return err
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
