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
// file that SyncWAL no longer tracks.
//
// # Failure
//
// A failed fsync is sticky: after it, SyncWAL returns the same error for
// ever, because once fsync has failed the kernel may have dropped dirty
// pages and no later fsync can prove the earlier writes durable.
package walfs

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// walCategory is the write category Pebble uses for WAL files.
const walCategory vfs.DiskWriteCategory = "pebble-wal"

// FS is a vfs.FS whose WAL files are fsynced only by SyncWAL and Close.
type FS struct {
	vfs.FS

	mu    sync.Mutex
	open  map[*walFile]struct{} // guarded by mu
	err   error                 // first fsync failure; guarded by mu
	syncs atomic.Uint64
}

// New wraps inner.
func New(inner vfs.FS) *FS {
	return &FS{FS: inner, open: make(map[*walFile]struct{})}
}

// Create implements vfs.FS.
func (fs *FS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.wrap(f, category, err)
}

// ReuseForWrite implements vfs.FS.
func (fs *FS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(f, category, err)
}

func (fs *FS) wrap(f vfs.File, category vfs.DiskWriteCategory, err error) (vfs.File, error) {
	if err != nil || category != walCategory {
		return f, err
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
	fs.mu.Lock()
	if fs.err != nil {
		fs.mu.Unlock()
		return fs.err
	}
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
	return nil
}

// Syncs returns the number of fsyncs of WAL files performed.
func (fs *FS) Syncs() uint64 { return fs.syncs.Load() }

// Err returns the sticky fsync error, if any.
func (fs *FS) Err() error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.err
}

func (fs *FS) fail(err error) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.err == nil {
		fs.err = fmt.Errorf("idemkv: fsync of the write-ahead log failed; durability of earlier writes is unknown, reopen the engine: %w", err)
	}
	return fs.err
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

func (f *walFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.dirty.Store(true)
	return n, err
}

func (f *walFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	f.dirty.Store(true)
	return n, err
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
	f.fs.syncs.Add(1)
	if err := f.File.SyncData(); err != nil {
		f.dirty.Store(true)
		return f.fs.fail(err)
	}
	return nil
}

// Close fsyncs the file for real before closing it, and only then stops
// tracking it, so a concurrent SyncWAL never misses its data.
func (f *walFile) Close() error {
	err := f.syncIfDirty()
	f.fs.mu.Lock()
	delete(f.fs.open, f)
	f.fs.mu.Unlock()
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	return err
}
