package engine_test

// The storage-fault campaign: Pebble's error-injecting filesystem fails
// writes, fsyncs, reads and creates at chosen points, or every write (a
// full disk). The engine must answer with errors matching ErrStorage, never
// panic, never acknowledge what it could not write, never replay anything
// half-written, and — where Pebble allows it — work again once the fault
// clears without a restart. Where Pebble does not (the write-ahead log),
// the engine stops with ErrFailed and a reopen recovers everything it
// acknowledged.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
)

// fault fails the operations match selects with err while it is on.
type fault struct {
	on    atomic.Bool
	match func(errorfs.Op) bool
	err   error
	hits  atomic.Int64
}

func (f *fault) String() string { return "fault" }

func (f *fault) MaybeError(op errorfs.Op) error {
	if f.on.Load() && f.match(op) {
		f.hits.Add(1)
		return f.err
	}
	return nil
}

// enospc is a full disk as the operating system reports it.
var enospc = &os.PathError{Op: "write", Path: "data", Err: syscall.ENOSPC}

// eio is a failing device.
var eio = &os.PathError{Op: "read", Path: "data", Err: syscall.EIO}

func isWrite(op errorfs.Op) bool {
	switch op.Kind {
	case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpCreate, errorfs.OpReuseForWrite,
		errorfs.OpFilePreallocate, errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo,
		errorfs.OpFileFlush, errorfs.OpLink, errorfs.OpRename, errorfs.OpMkdirAll:
		return true
	}
	return false
}

func fileIs(op errorfs.Op, suffix string) bool { return strings.HasSuffix(op.Path, suffix) }

// faultyFS is a filesystem that f can fail.
func faultyFS(f *fault) vfs.FS { return noReuse{errorfs.Wrap(vfs.Default, f)} }

// noReuse creates a new file where Pebble would reuse an old log: errorfs
// does not wrap the files that ReuseForWrite returns, so faults would
// never reach a recycled log.
type noReuse struct{ *errorfs.FS }

func (fs noReuse) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if err := fs.Remove(oldname); err != nil {
		return nil, err
	}
	return fs.Create(newname, category)
}

// openFaulty opens an engine on dir through a filesystem that f can fail.
func openFaulty(t *testing.T, dir string, f *fault, o engine.Options) *engine.Engine {
	t.Helper()
	o.Logger = quietLogger()
	e, err := engine.Open(dir, engine.WithFSForTest(&o, faultyFS(f)))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return e
}

// reopen opens dir on the plain filesystem after a fault, as an operator
// would once the disk is fixed.
func reopen(t *testing.T, dir string) *engine.Engine {
	t.Helper()
	e, err := engine.Open(dir, &engine.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatalf("reopen after the fault: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// mustStorageErr checks that err reports a storage failure.
func mustStorageErr(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, engine.ErrStorage) {
		t.Fatalf("%s: err = %v; want an error matching ErrStorage", what, err)
	}
}

// complete runs Begin+Complete for k and returns Complete's error.
func complete(t *testing.T, e *engine.Engine, k string) error {
	t.Helper()
	res := begin(t, e, req(k, "x"))
	mustOutcome(t, res, engine.Proceed)
	return res.Claim.Complete(ctx, response(bodyOf(k)))
}

// completeAll runs complete for n keys prefix0..prefix(n-1), failing the
// test on any error, and returns the keys.
func completeAll(t *testing.T, e *engine.Engine, prefix string, n int) []string {
	t.Helper()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint(prefix, i)
		if err := complete(t, e, keys[i]); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// checkAfterFault checks, on a reopened engine, that every acknowledged key
// replays exactly and that an unacknowledged one is either replayed whole,
// recovered as an interrupted claim, or absent — never anything else.
func checkAfterFault(t *testing.T, e *engine.Engine, acked, unacked []string) {
	t.Helper()
	for _, k := range acked {
		res := begin(t, e, req(k, "x"))
		assertReplay(t, res, response(bodyOf(k)))
	}
	for _, k := range unacked {
		res, err := e.Begin(ctx, req(k, "x"))
		if err != nil {
			t.Fatalf("Begin(%s) after reopen: %v", k, err)
		}
		switch res.Outcome {
		case engine.Replay:
			assertReplay(t, res, response(bodyOf(k)))
		case engine.Proceed:
			if err := res.Claim.Release(ctx); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("Begin(%s) after reopen: outcome %v", k, res.Outcome)
		}
	}
}

// TestFaultLog fails the write-ahead log in each way it can fail. Pebble
// cannot continue past a failed log write, so the engine stops: the failed
// Complete and everything after it is refused with ErrFailed, nothing is
// replayed from the failed write, and a reopen on the healed disk has every
// acknowledged record.
func TestFaultLog(t *testing.T) {
	cases := []struct {
		name  string
		match func(errorfs.Op) bool
	}{
		{"write", func(op errorfs.Op) bool {
			return (op.Kind == errorfs.OpFileWrite || op.Kind == errorfs.OpFileWriteAt) && fileIs(op, ".log")
		}},
		{"fsync", func(op errorfs.Op) bool {
			return (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) && fileIs(op, ".log")
		}},
		{"full disk", isWrite},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := &fault{match: tc.match, err: enospc}
			e := openFaulty(t, dir, f, engine.Options{})
			if err := complete(t, e, "before"); err != nil {
				t.Fatal(err)
			}
			claimed := begin(t, e, req("during", "x"))
			mustOutcome(t, claimed, engine.Proceed)
			f.on.Store(true)
			err := claimed.Claim.Complete(ctx, response(bodyOf("during")))
			if !errors.Is(err, engine.ErrFailed) {
				t.Fatalf("Complete with a failing log: %v; want ErrFailed", err)
			}
			mustStorageErr(t, "Complete", err)
			if f.hits.Load() == 0 {
				t.Fatal("the fault never fired")
			}
			if !errors.Is(e.Err(), engine.ErrFailed) {
				t.Fatalf("Err() = %v; want ErrFailed", e.Err())
			}
			f.on.Store(false) // healed, but the log is in an unknown state
			for _, k := range []string{"during", "after"} {
				if _, err := e.Begin(ctx, req(k, "x")); !errors.Is(err, engine.ErrFailed) {
					t.Fatalf("Begin(%s) on a stopped engine: %v; want ErrFailed", k, err)
				}
			}
			if _, err := e.Get(ctx, key("during")); !errors.Is(err, engine.ErrFailed) {
				t.Fatalf("Get on a stopped engine: %v; want ErrFailed", err)
			}
			_ = e.Close() // may report the failure; must return
			e = reopen(t, dir)
			checkAfterFault(t, e, []string{"before"}, []string{"during"})
			if err := complete(t, e, "after"); err != nil {
				t.Fatalf("a new request after the reopen: %v", err)
			}
		})
	}
}

// TestStoppedEngineHidesClaimsInFlightAtTheStop holds two claims while
// another request's failed log write stops the engine. Their lease records
// were written without a sync, so they may be in Pebble's memtable without
// their log bytes: the stopped engine must not show them, neither while a
// claim is still held nor after its holder's Complete is refused.
func TestStoppedEngineHidesClaimsInFlightAtTheStop(t *testing.T) {
	dir := t.TempDir()
	f := &fault{match: isWrite, err: enospc}
	e := openFaulty(t, dir, f, engine.Options{})
	held := begin(t, e, req("held", "x"))
	mustOutcome(t, held, engine.Proceed)
	done := begin(t, e, req("done", "x"))
	mustOutcome(t, done, engine.Proceed)
	f.on.Store(true)
	// The log syncer, kicked by the two claims, may fail first.
	hidden := []string{"held", "done"}
	res, err := e.Begin(ctx, req("other", "x"))
	if err == nil {
		mustOutcome(t, res, engine.Proceed)
		hidden = append(hidden, "other")
		err = res.Claim.Complete(ctx, response(bodyOf("other")))
	}
	if !errors.Is(err, engine.ErrFailed) {
		t.Fatalf("a request with a failing log: %v; want ErrFailed", err)
	}
	f.on.Store(false)
	if err := done.Claim.Complete(ctx, response(bodyOf("done"))); !errors.Is(err, engine.ErrFailed) {
		t.Fatalf("Complete on a stopped engine: %v; want ErrFailed", err)
	}
	for _, k := range hidden {
		if r, err := e.Get(ctx, key(k)); !errors.Is(err, engine.ErrFailed) {
			t.Errorf("Get(%s) on a stopped engine: %v, %v; want ErrFailed", k, r, err)
		}
	}
	_ = e.Close()
	e = reopen(t, dir)
	checkAfterFault(t, e, nil, []string{"held", "done", "other"})
}

// TestFaultTables fails every write of tables (a flush or compaction that
// runs out of space). The log still works, so requests keep being answered
// and acknowledged; once the disk has room again the flush succeeds with no
// restart, and a reopen finds everything.
func TestFaultTables(t *testing.T) {
	dir := t.TempDir()
	f := tableFault()
	e := openFaulty(t, dir, f, engine.Options{})
	acked := completeAll(t, e, "a", 20)
	f.on.Store(true)
	// Pebble retries a failed flush in the background until it succeeds,
	// so Flush returns only once the disk has room again.
	flushed := make(chan error, 1)
	go func() { flushed <- e.FlushForTest() }()
	for f.hits.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if e.Err() != nil {
		t.Fatalf("a failed flush stopped the engine: %v", e.Err())
	}
	for i := range 20 { // the log still takes writes
		k := fmt.Sprint("b", i)
		if err := complete(t, e, k); err != nil {
			t.Fatalf("Complete while tables cannot be written: %v", err)
		}
		acked = append(acked, k)
	}
	select {
	case err := <-flushed:
		t.Fatalf("flush finished while tables could not be written: %v", err)
	default:
	}
	f.on.Store(false)
	select {
	case err := <-flushed:
		if err != nil {
			t.Fatalf("flush once the disk has room: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the flush did not succeed after the disk had room again")
	}
	e.EvictCacheForTest()
	checkAfterFault(t, e, acked, nil)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	checkAfterFault(t, reopen(t, dir), acked, nil)
}

// TestWritesRefusedWhileFlushesFailAndMemtablesAreFull: on a full disk
// flushes fail, and once Pebble's memtables are full it stops taking
// writes until a flush succeeds, which may be never. A write that arrives
// then must fail at once with ErrStorage, not queue inside Pebble, and
// Health must say why; replays go on; once the disk has room the writes
// that were already waiting finish, new ones are taken again without a
// restart, and nothing acknowledged is lost.
func TestWritesRefusedWhileFlushesFailAndMemtablesAreFull(t *testing.T) {
	dir, f, e, acked, s := stallOnFullDisk(t)

	// A new request is refused at once (the lease cannot be written).
	refused := make(chan error, 1)
	go func() {
		_, err := e.Begin(ctx, req("new", "x"))
		refused <- err
	}()
	select {
	case err := <-refused:
		if !errors.Is(err, engine.ErrStorage) {
			t.Fatalf("Begin of a new key during the stall: %v; want ErrStorage", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Begin of a new key waits inside Pebble for a flush that keeps failing")
	}
	if err := e.Sync(ctx); !errors.Is(err, engine.ErrStorage) {
		t.Fatalf("Sync during the stall: %v; want ErrStorage", err)
	}
	e.EvictCacheForTest()
	for _, k := range acked { // replays need no room
		assertReplay(t, begin(t, e, req(k, "x")), response(bodyOf(k)))
	}

	f.on.Store(false) // room again: a flush succeeds, the stall ends
	filled := s.end()
	deadline := time.Now().Add(30 * time.Second)
	for e.Health(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Health still failing after the disk has room: %v", e.Health(ctx))
		}
		time.Sleep(5 * time.Millisecond)
	}
	acked = append(acked, completeAll(t, e, "b", 5)...)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	r := reopen(t, dir)
	checkAfterFault(t, r, acked, nil)
	checkStalled(t, r, filled)
}

// TestCloseDuringStallDoesNotHang: Close while Pebble takes no writes
// behind failing flushes returns within a bounded time with an error
// saying why (the writes stuck inside Pebble are left to the process's
// exit), and a later open recovers everything acknowledged.
func TestCloseDuringStallDoesNotHang(t *testing.T) {
	dir, f, e, acked, s := stallOnFullDisk(t)
	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	select {
	case err := <-closed:
		if !errors.Is(err, engine.ErrStorage) {
			t.Fatalf("Close during the stall: %v; want an error matching ErrStorage", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Close waits for a flush that keeps failing")
	}
	// The writes stuck inside Pebble finish once the disk has room; the
	// store the engine left open then closes and frees the directory.
	f.on.Store(false)
	filled := s.end()
	var r *engine.Engine
	for deadline := time.Now().Add(30 * time.Second); ; {
		var err error
		if r, err = engine.Open(dir, &engine.Options{Logger: quietLogger()}); err == nil {
			break
		} else if !errors.Is(err, engine.ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("open after the stall: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer r.Close()
	checkAfterFault(t, r, acked, nil)
	checkStalled(t, r, filled)
}

// stallOnFullDisk opens an engine with 1 MiB memtables in a new
// directory, completes five keys (acked), fails every table and blob
// write from then on, and fills the memtables until the engine refuses
// writes (see stall).
func stallOnFullDisk(t *testing.T) (dir string, f *fault, e *engine.Engine, acked []string, s *stalled) {
	t.Helper()
	dir = t.TempDir()
	f = tableFault()
	e = openFaulty(t, dir, f, engine.Options{MemTableSize: 1 << 20})
	acked = completeAll(t, e, "a", 5)
	f.on.Store(true)
	return dir, f, e, acked, stall(t, e)
}

// tableFault fails every write of tables and blob files with ENOSPC once on.
func tableFault() *fault {
	return &fault{match: func(op errorfs.Op) bool {
		return isWrite(op) && (fileIs(op, ".sst") || fileIs(op, ".blob"))
	}, err: enospc}
}

// stalled is a set of writers filling an engine's memtables (see stall).
type stalled struct {
	mu     sync.Mutex
	filled []string // keys completed
	stop   atomic.Bool
	wg     sync.WaitGroup
}

// stallBody is the body of the requests that fill the memtables.
var stallBody = bytes.Repeat([]byte("0123456789abcdef"), 2<<10) // 32 KiB

// stall fills e's memtables from four writers, with its flushes failing,
// until Health reports that e refuses writes. The writer that finds them
// full waits inside Pebble, and so may those writing at that moment; the
// others stop at their first refusal, which must match ErrStorage.
func stall(t *testing.T, e *engine.Engine) *stalled {
	t.Helper()
	s := &stalled{}
	for w := range 4 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for i := 0; !s.stop.Load(); i++ {
				k := fmt.Sprintf("f%d-%d", w, i)
				res, err := e.Begin(ctx, req(k, "x"))
				if err == nil {
					err = res.Claim.Complete(ctx, engine.Response{Status: 200, Body: stallBody})
				}
				if err != nil {
					// ErrClosed: the test closed the engine under them.
					if !errors.Is(err, engine.ErrStorage) && !errors.Is(err, engine.ErrClosed) {
						t.Errorf("write of %s while the disk is full: %v; want ErrStorage (or ErrClosed after Close)", k, err)
					}
					return
				}
				s.mu.Lock()
				s.filled = append(s.filled, k)
				s.mu.Unlock()
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for e.Health(ctx) == nil {
		if time.Now().After(deadline) {
			t.Fatal("Health does not report that writes are refused while the memtables are full and flushes fail")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := e.Health(ctx); !errors.Is(err, engine.ErrStorage) || errors.Is(err, engine.ErrFailed) {
		t.Fatalf("Health during the stall: %v; want ErrStorage, not a stopped engine", err)
	}
	return s
}

// end stops the writers, waits for them (those stuck inside Pebble finish
// once the disk has room) and returns the keys they completed.
func (s *stalled) end() []string {
	s.stop.Store(true)
	s.wg.Wait()
	return s.filled
}

// checkStalled checks that every key the stall's writers completed
// replays its body.
func checkStalled(t *testing.T, e *engine.Engine, filled []string) {
	t.Helper()
	for _, k := range filled {
		res := begin(t, e, req(k, "x"))
		mustOutcome(t, res, engine.Replay)
		if !bytes.Equal(res.Record.Body, stallBody) {
			t.Fatalf("%s replayed %d bytes; want the 32 KiB body", k, len(res.Record.Body))
		}
	}
}

// TestFaultReads fails reads of tables. A lookup that cannot read must
// fail — never answer Proceed for a key that is stored, which would run its
// handler twice — and work again once reads do, with no restart.
func TestFaultReads(t *testing.T) {
	dir := t.TempDir()
	e := openFaulty(t, dir, &fault{match: func(errorfs.Op) bool { return false }}, engine.Options{})
	keys := completeAll(t, e, "k", 50)
	if err := e.FlushForTest(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen so that neither Pebble's block cache nor the engine's replay
	// cache holds the records.
	f := &fault{match: func(op errorfs.Op) bool {
		return (op.Kind == errorfs.OpFileReadAt || op.Kind == errorfs.OpFileRead) && (fileIs(op, ".sst") || fileIs(op, ".blob"))
	}, err: eio}
	e = openFaulty(t, dir, f, engine.Options{})
	defer e.Close()
	waitFilters(t, e)
	f.on.Store(true)
	failed := 0
	for _, k := range keys {
		res, err := e.Begin(ctx, req(k, "x"))
		switch {
		case err != nil:
			mustStorageErr(t, "Begin with failing reads", err)
			failed++
		case res.Outcome == engine.Replay: // its block was read before the fault
			assertReplay(t, res, response(bodyOf(k)))
		default:
			t.Fatalf("Begin(%s) with failing reads: outcome %v; a stored key must never proceed", k, res.Outcome)
		}
	}
	if failed == 0 || f.hits.Load() == 0 {
		t.Fatalf("no read failed (%d errors, %d faults)", failed, f.hits.Load())
	}
	f.on.Store(false)
	if e.Err() != nil {
		t.Fatalf("failed reads stopped the engine: %v", e.Err())
	}
	checkAfterFault(t, e, keys, nil)
}

// TestFaultFatal fails what Pebble cannot continue from on a background
// goroutine: a write of its MANIFEST (Pebble calls Fatalf), and a write of a
// blob file (Pebble v2.1.7 would dereference nil; the engine turns it into
// a failed MANIFEST write, see package walfs). The process must survive,
// the engine must stop with ErrFailed, and — once the process has exited,
// since a wedged Pebble keeps the directory locked — a reopen must find
// every acknowledged record. The faulty part runs in a child process.
func TestFaultFatal(t *testing.T) {
	for _, kind := range []string{"manifest", "blob"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			out := runFaultChild(t, kind, dir, 0)
			if !strings.Contains(out, "stopped: ") {
				t.Fatalf("the child did not report a stopped engine:\n%s", out)
			}
			var acked []string
			for i := range 20 {
				acked = append(acked, fmt.Sprint("m", i))
			}
			checkAfterFault(t, reopen(t, dir), acked, nil)
		})
	}
}

func fatalChild(t *testing.T, dir, kind string) {
	f := &fault{match: func(op errorfs.Op) bool {
		if kind == "blob" {
			// Not its creation: Pebble handles that (the flush is retried).
			return isWrite(op) && op.Kind != errorfs.OpCreate && fileIs(op, ".blob")
		}
		return isWrite(op) && strings.Contains(op.Path, "MANIFEST")
	}, err: enospc}
	e := openFaulty(t, dir, f, engine.Options{})
	for i := range 20 {
		if err := complete(t, e, fmt.Sprint("m", i)); err != nil {
			t.Fatal(err)
		}
	}
	f.on.Store(true)
	go func() { _ = e.FlushForTest() }() // never returns: the flush died
	deadline := time.After(30 * time.Second)
	for e.Err() == nil {
		select {
		case <-deadline:
			t.Fatal("a failed MANIFEST write did not stop the engine")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if !errors.Is(e.Err(), engine.ErrFailed) {
		t.Fatalf("Err() = %v", e.Err())
	}
	if _, err := e.Begin(ctx, req("after", "x")); !errors.Is(err, engine.ErrFailed) {
		t.Fatalf("Begin on a stopped engine: %v", err)
	}
	f.on.Store(false)
	start := time.Now()
	if err := e.Close(); err == nil {
		t.Fatal("Close of a stopped engine reported no error")
	}
	if d := time.Since(start); d > time.Minute {
		t.Fatalf("Close took %v", d)
	}
	fmt.Println("stopped:", e.Err())
}

// TestReplaysServedOnFullDisk fills the disk under a working engine. The
// engine stops taking writes (a log write failed), but what it stored and
// acknowledged — in tables and in the memtable, read from storage, not the
// replay cache — is still replayed, conflicts are still answered, and the
// completion that failed is never replayed: a restart may not have it.
func TestReplaysServedOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	f := &fault{match: isWrite, err: enospc}
	e := openFaulty(t, dir, f, engine.Options{CacheSize: -1})
	acked := completeAll(t, e, "s", 20)
	if err := e.FlushForTest(); err != nil { // half in tables, half in the memtable
		t.Fatal(err)
	}
	acked = append(acked, completeAll(t, e, "t", 20)...)
	claimed := begin(t, e, req("during", "x"))
	mustOutcome(t, claimed, engine.Proceed)
	f.on.Store(true)
	if err := claimed.Claim.Complete(ctx, response(bodyOf("during"))); !errors.Is(err, engine.ErrFailed) {
		t.Fatalf("Complete on a full disk: %v; want ErrFailed (hits %d, err %v)", err, f.hits.Load(), e.Err())
	}
	for _, k := range acked {
		res := begin(t, e, req(k, "x"))
		assertReplay(t, res, response(bodyOf(k)))
		res = begin(t, e, req(k, "another body"))
		mustOutcome(t, res, engine.Conflict)
		if _, err := e.Get(ctx, key(k)); err != nil {
			t.Fatalf("Get(%s) on a full disk: %v", k, err)
		}
	}
	for _, k := range []string{"during", "new"} {
		if _, err := e.Begin(ctx, req(k, "x")); !errors.Is(err, engine.ErrFailed) {
			t.Fatalf("Begin(%s) on a full disk: %v; want ErrFailed", k, err)
		}
	}
	if _, err := e.Get(ctx, key("during")); !errors.Is(err, engine.ErrFailed) {
		t.Fatalf("Get of the failed completion: %v; want ErrFailed", err)
	}
	if f.hits.Load() == 0 {
		t.Fatal("the fault never fired")
	}
	_ = e.Close()
	f.on.Store(false)
	checkAfterFault(t, reopen(t, dir), acked, []string{"during"})
}

// TestOpenOnFullDiskFailsInBoundedTime restarts on a full disk, the way an
// operator does after freeing too little space: the log holds records that
// Open must flush, and the flush cannot write its table (Pebble retries it
// for ever) or its MANIFEST (Pebble calls Fatalf, which once parked the
// flush and left pebble.Open waiting for it for ever). Open must return an
// error matching ErrStorage and ENOSPC: at once after the fatal error,
// within OpenFaultWait otherwise. The fatal case runs in a child process,
// since the wedged store keeps the directory locked until the process
// exits; afterwards, on a healed disk, every record is there.
func TestOpenOnFullDiskFailsInBoundedTime(t *testing.T) {
	for _, kind := range []string{"tables", "manifest"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			fillLog(t, dir)
			out := runFaultChild(t, "open-"+kind, dir, 0)
			if !strings.Contains(out, "open failed: ") {
				t.Fatalf("the child did not report a failed open:\n%s", out)
			}
			checkAfterFault(t, reopen(t, dir), fillLogKeys(), nil)
		})
	}
}

// TestOpenOnFullDiskSucceedsOnceSpaceIsBack frees space while Open waits
// for its flush: Open must then succeed with every record.
func TestOpenOnFullDiskSucceedsOnceSpaceIsBack(t *testing.T) {
	dir := t.TempDir()
	fillLog(t, dir)
	f := &fault{match: func(op errorfs.Op) bool { return isWrite(op) && fileIs(op, ".sst") }, err: enospc}
	f.on.Store(true)
	opened := make(chan error, 1)
	var e *engine.Engine
	go func() {
		var err error
		e, err = engine.Open(dir, engine.WithFSForTest(&engine.Options{Logger: quietLogger(), OpenFaultWait: time.Minute}, faultyFS(f)))
		opened <- err
	}()
	for f.hits.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	f.on.Store(false)
	if err := <-opened; err != nil {
		t.Fatalf("Open once the disk had room again: %v", err)
	}
	defer e.Close()
	checkAfterFault(t, e, fillLogKeys(), nil)
}

// fillLog stores fillLogKeys in dir and closes it with the records only in
// the write-ahead log, so that the next Open must flush them.
func fillLog(t *testing.T, dir string) {
	t.Helper()
	e, err := engine.Open(dir, &engine.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	completeAll(t, e, "w", len(fillLogKeys()))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
}

func fillLogKeys() []string {
	var keys []string
	for i := range 50 {
		keys = append(keys, fmt.Sprint("w", i))
	}
	return keys
}

func openFullChild(t *testing.T, dir, kind string) {
	f := &fault{match: func(op errorfs.Op) bool {
		if kind == "open-manifest" {
			return isWrite(op) && strings.Contains(op.Path, "MANIFEST")
		}
		return isWrite(op) && (fileIs(op, ".sst") || fileIs(op, ".blob"))
	}, err: enospc}
	f.on.Store(true)
	start := time.Now()
	e, err := engine.Open(dir, engine.WithFSForTest(&engine.Options{Logger: quietLogger(), OpenFaultWait: time.Second}, faultyFS(f)))
	if err == nil {
		e.Close()
		t.Fatal("Open on a full disk succeeded")
	}
	if !errors.Is(err, engine.ErrStorage) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Open on a full disk: %v; want an error matching ErrStorage and ENOSPC", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("Open took %v to fail", d)
	}
	fmt.Println("open failed:", err)
}

// TestFaultCampaign runs rounds of concurrent requests while faults of a
// random kind (log writes, table writes, table reads, every write: a full
// disk) fire at random points. Each round runs in a child process, which
// reports what was acknowledged and exits (a store wedged by a fatal
// Pebble error keeps its directory locked until then); the parent heals
// the disk, reopens, and checks that every acknowledged record replays
// exactly and that nothing unacknowledged replays anything but its own
// whole response. IDEMKV_FAULT_ROUNDS sets the number of rounds (default
// 4; the README quotes a long run).
func TestFaultCampaign(t *testing.T) {
	rounds := 4
	if s := os.Getenv("IDEMKV_FAULT_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		rounds = n
	}
	dir := t.TempDir()
	var acked []string
	var faults, refused, stopped int
	for round := range rounds {
		var unacked []string
		out := runFaultChild(t, "campaign", dir, round)
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) == 2 && f[0] == "ack":
				acked = append(acked, f[1])
			case len(f) == 2 && f[0] == "unack":
				unacked = append(unacked, f[1])
			case len(f) == 4 && f[0] == "round":
				a, _ := strconv.Atoi(f[1])
				b, _ := strconv.Atoi(f[2])
				c, _ := strconv.Atoi(f[3])
				faults, refused, stopped = faults+a, refused+b, stopped+c
			}
		}
		e, err := engine.Open(dir, &engine.Options{Logger: quietLogger()})
		if err != nil {
			t.Fatalf("round %d: reopen after the fault: %v", round, err)
		}
		checkAfterFault(t, e, acked, unacked)
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d rounds: %d faults injected, %d requests refused with a storage error, %d engine stops, %d acknowledged records all replayed, 0 lost",
		rounds, faults, refused, stopped, len(acked))
}

func campaignChild(t *testing.T, dir string, round int) {
	rng := rand.New(rand.NewPCG(uint64(round), 7))
	isRead := func(op errorfs.Op) bool {
		return op.Kind == errorfs.OpFileReadAt || op.Kind == errorfs.OpFileRead
	}
	kinds := []func(errorfs.Op) bool{
		func(op errorfs.Op) bool { return isWrite(op) && fileIs(op, ".log") },
		func(op errorfs.Op) bool { return isWrite(op) && (fileIs(op, ".sst") || fileIs(op, ".blob")) },
		func(op errorfs.Op) bool { return isRead(op) && (fileIs(op, ".sst") || fileIs(op, ".blob")) },
		isWrite,
	}
	match := kinds[rng.IntN(len(kinds))]
	p := 0.01 + rng.Float64()*0.1
	var seq atomic.Uint64
	f := &fault{err: enospc}
	f.match = func(op errorfs.Op) bool {
		return match(op) && rand.New(rand.NewPCG(uint64(round), seq.Add(1))).Float64() < p
	}
	e := openFaulty(t, dir, f, engine.Options{MemTableSize: 64 << 10})
	f.on.Store(true)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		refused int
	)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 150 {
				k := fmt.Sprintf("r%d-g%d-%d", round, g, i)
				res, err := e.Begin(ctx, req(k, "x"))
				if err == nil && res.Outcome != engine.Proceed {
					t.Errorf("Begin(%s): outcome %v for a new key", k, res.Outcome)
					return
				}
				if err == nil {
					err = res.Claim.Complete(ctx, response(bodyOf(k)))
					mu.Lock()
					if err == nil {
						fmt.Println("ack", k)
					} else {
						fmt.Println("unack", k)
					}
					mu.Unlock()
				}
				if err != nil {
					if !errors.Is(err, engine.ErrStorage) {
						t.Errorf("%s: %v; want an error matching ErrStorage", k, err)
					}
					mu.Lock()
					refused++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	f.on.Store(false)
	stopped := 0
	if e.Err() != nil {
		stopped = 1
	}
	_ = e.Close()
	fmt.Println("round", f.hits.Load(), refused, stopped)
}

// TestFaultChild is the child process of the fault tests that need one.
func TestFaultChild(t *testing.T) {
	dir := os.Getenv("IDEMKV_FAULT_DIR")
	if dir == "" {
		t.Skip("runs only as the child of TestFaultFatal and TestFaultCampaign")
	}
	round, _ := strconv.Atoi(os.Getenv("IDEMKV_FAULT_ROUND"))
	switch os.Getenv("IDEMKV_FAULT_CHILD") {
	case "manifest", "blob":
		fatalChild(t, dir, os.Getenv("IDEMKV_FAULT_CHILD"))
	case "campaign":
		campaignChild(t, dir, round)
	case "open-tables", "open-manifest":
		openFullChild(t, dir, os.Getenv("IDEMKV_FAULT_CHILD"))
	}
}

// runFaultChild runs TestFaultChild as a child process and returns what it
// printed; the child failing fails the test.
func runFaultChild(t *testing.T, kind, dir string, round int) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestFaultChild$", "-test.timeout=2m", "-test.v")
	cmd.Env = append(os.Environ(), "IDEMKV_FAULT_DIR="+dir, "IDEMKV_FAULT_CHILD="+kind, "IDEMKV_FAULT_ROUND="+strconv.Itoa(round))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fault child %s round %d: %v\n%s", kind, round, err, out)
	}
	return string(out)
}

// TestFaultMiddleware checks what a client sees through idemhttp when the
// disk fills: the request whose response could not be recorded still gets
// its response (the handler ran); retries of acknowledged requests are
// replayed while the disk is full; every other request gets 503
// idempotency_store_unavailable with Retry-After and the handler does not
// run; and after a restart on a healed disk a retry of the unrecorded one
// is either replayed whole or runs anew.
func TestFaultMiddleware(t *testing.T) {
	dir := t.TempDir()
	f := &fault{match: isWrite, err: enospc}
	e := openFaulty(t, dir, f, engine.Options{})
	var (
		runs       atomic.Int64
		failInside atomic.Bool // the disk fills while the handler runs
	)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		if failInside.Load() {
			f.on.Store(true)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%d}`, runs.Load())
	})
	serve := func(e *engine.Engine) *httptest.Server {
		m, err := idemhttp.New(e, &idemhttp.Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(m.Handler(handler))
		t.Cleanup(srv.Close)
		return srv
	}
	post := func(srv *httptest.Server, k string) (*http.Response, string) {
		t.Helper()
		rq, _ := http.NewRequest("POST", srv.URL+"/v1/calls", strings.NewReader(`{"amount":1}`))
		rq.Header.Set("Idempotency-Key", k)
		rq.Header.Set("Authorization", "Bearer tenant-a")
		resp, err := srv.Client().Do(rq)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	srv := serve(e)
	if resp, _ := post(srv, "before"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("before the fault: %d", resp.StatusCode)
	}
	failInside.Store(true)
	resp, body := post(srv, "during")
	if resp.StatusCode != http.StatusCreated || runs.Load() != 2 {
		t.Fatalf("the request whose record failed: %d %s (runs %d); want the handler's 201", resp.StatusCode, body, runs.Load())
	}
	e.EvictCacheForTest() // the replay below must come from storage
	for _, k := range []string{"during", "before", "after"} {
		resp, body := post(srv, k)
		if k == "before" {
			if resp.StatusCode != http.StatusCreated || resp.Header.Get("Idempotency-Replay") != "true" || body != `{"id":1}` {
				t.Fatalf("replay of an acknowledged record on a full disk: %d %q replay=%q", resp.StatusCode, body, resp.Header.Get("Idempotency-Replay"))
			}
			continue
		}
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(body, "idempotency_store_unavailable") {
			t.Fatalf("%s on a stopped engine: %d %q Retry-After=%q", k, resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
	}
	if runs.Load() != 2 {
		t.Fatalf("the handler ran %d times; a stopped engine must not let it run", runs.Load())
	}
	srv.Close()
	_ = e.Close()
	f.on.Store(false)
	srv = serve(reopen(t, dir))
	resp, body = post(srv, "before")
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Idempotency-Replay") != "true" || body != `{"id":1}` {
		t.Fatalf("acknowledged record after the reopen: %d %q replay=%q", resp.StatusCode, body, resp.Header.Get("Idempotency-Replay"))
	}
	resp, body = post(srv, "during")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("retry of the unrecorded request after the reopen: %d %q", resp.StatusCode, body)
	}
}

// TestReadOnlyOpenBesideAWritingEngine opens a directory read-only while
// an engine writes to it: the snapshot replays what was acknowledged
// before it, refuses writes with ErrReadOnly, reports the writer as live,
// and leaves the writer working.
func TestReadOnlyOpenBesideAWritingEngine(t *testing.T) {
	dir := t.TempDir()
	w, err := engine.Open(dir, &engine.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	acked := completeAll(t, w, "ro", 30)
	r, err := engine.Open(dir, &engine.Options{ReadOnly: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); !st.ReadOnly || !st.Live {
		t.Fatalf("Stats: ReadOnly %v Live %v; want both", st.ReadOnly, st.Live)
	}
	for _, k := range acked {
		assertReplay(t, begin(t, r, req(k, "x")), response(bodyOf(k)))
	}
	if _, err := r.Begin(ctx, req("new", "x")); !errors.Is(err, engine.ErrReadOnly) {
		t.Fatalf("Begin of a new key read-only: %v; want ErrReadOnly", err)
	}
	if _, err := r.Sweep(ctx); !errors.Is(err, engine.ErrReadOnly) {
		t.Fatalf("Sweep read-only: %v; want ErrReadOnly", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := complete(t, w, "after"); err != nil {
		t.Fatalf("the writer after a read-only open beside it: %v", err)
	}
	if _, err := engine.Open(t.TempDir(), &engine.Options{ReadOnly: true}); !errors.Is(err, engine.ErrNoData) {
		t.Fatalf("read-only Open of an empty directory: %v; want ErrNoData", err)
	}
}

// TestRemovedDataDirStopsTheEngine removes, or replaces, the data directory
// under a working engine: the engine must notice, stop acknowledging
// (ErrFailed, saying what happened) rather than go on writing to files
// that no longer have a name.
func TestRemovedDataDirStopsTheEngine(t *testing.T) {
	for _, how := range []string{"removed", "replaced"} {
		t.Run(how, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			e, err := engine.Open(dir, &engine.Options{Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if err := complete(t, e, "before"); err != nil {
				t.Fatal(err)
			}
			if how == "removed" {
				// The engine may create a file while it is removed (the
				// sync mark, a log): rm -rf again, as an operator would.
				for range 100 {
					if err = os.RemoveAll(dir); err == nil {
						break
					}
				}
			} else if err = os.Rename(dir, dir+".old"); err == nil {
				err = os.Mkdir(dir, 0o755)
			}
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for e.Err() == nil && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if err := e.Err(); !errors.Is(err, engine.ErrFailed) || !strings.Contains(err.Error(), how) {
				t.Fatalf("Err() after the directory was %s: %v; want ErrFailed saying so", how, err)
			}
			if _, err := e.Begin(ctx, req("after", "x")); !errors.Is(err, engine.ErrFailed) {
				t.Fatalf("Begin after the directory was %s: %v; want ErrFailed", how, err)
			}
		})
	}
}

// TestReadOnlyOpenRemovesSnapshotsOfDeadProcesses leaves a snapshot of a
// process that died before Close (its hard links would pin deleted tables
// on the disk) beside a data directory: the next read-only Open removes
// it, and its own snapshot is gone after Close.
func TestReadOnlyOpenRemovesSnapshotsOfDeadProcesses(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	fillLog(t, dir)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip("no true(1) to get the id of a dead process")
	}
	stale := filepath.Join(root, fmt.Sprintf(".idemkv-snapshot-%d-1234", dead.Process.Pid))
	if err := os.Mkdir(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := engine.Open(dir, &engine.Options{ReadOnly: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the dead process's snapshot is still there: %v", err)
	}
	checkAfterFault(t, r, fillLogKeys(), nil)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(root)
	if len(ents) != 1 {
		t.Fatalf("after Close the parent holds %d entries; want only the data directory", len(ents))
	}
}

// TestOpenOfDirectoryInUseIsLockedNotDamaged: a second writable Open of a
// directory that an engine is writing says ErrLocked, never ErrCorrupt:
// its logs change while they are read, which the check of the logs would
// take for damage, and an operator told "damaged" would repair a healthy
// directory. (Found in CI: a reopen after a Close that gave up during a
// stall raced the old store's last writes.)
func TestOpenOfDirectoryInUseIsLockedNotDamaged(t *testing.T) {
	dir := t.TempDir()
	e, err := engine.Open(dir, &engine.Options{Logger: quietLogger(), Durability: engine.Relaxed})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := complete(t, e, fmt.Sprint("w", i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 200 {
		if _, err := engine.Open(dir, &engine.Options{Logger: quietLogger()}); !errors.Is(err, engine.ErrLocked) {
			close(stop)
			<-done
			t.Fatalf("Open of a directory in use: %v; want ErrLocked", err)
		}
	}
	close(stop)
	<-done
}

// TestFailedMirrorStopsNothing: a failed write or fsync of a MANIFEST's
// mirror only gives the mirror up (it is removed, so that no copy missing
// edits stays behind); the engine goes on, and the next start writes a new
// MANIFEST with a mirror.
func TestFailedMirrorStopsNothing(t *testing.T) {
	for name, op := range map[string]errorfs.OpKind{"write": errorfs.OpFileWrite, "fsync": errorfs.OpFileSync} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			f := &fault{match: func(o errorfs.Op) bool {
				return o.Kind == op && strings.Contains(o.Path, "MIRROR-")
			}, err: enospc}
			e := openFaulty(t, dir, f, engine.Options{})
			keys := completeAll(t, e, "a", 20)
			manifest := newestFile(t, dir, "MANIFEST-")
			mirror := "MIRROR-" + strings.TrimPrefix(manifest, "MANIFEST-")
			if _, err := os.Stat(filepath.Join(dir, mirror)); err != nil {
				t.Fatalf("no mirror before the fault: %v", err)
			}
			f.on.Store(true)
			if err := e.FlushForTest(); err != nil { // a MANIFEST edit
				t.Fatal(err)
			}
			if f.hits.Load() == 0 {
				t.Fatal("the flush wrote nothing to the mirror")
			}
			if _, err := os.Stat(filepath.Join(dir, mirror)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the failed mirror is still there: %v", err)
			}
			keys = append(keys, completeAll(t, e, "b", 20)...)
			if err := e.Err(); err != nil {
				t.Fatalf("a failed mirror stopped the engine: %v", err)
			}
			f.on.Store(false)
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			e = reopen(t, dir)
			defer e.Close()
			checkAfterFault(t, e, keys, nil)
			next := newestFile(t, dir, "MANIFEST-")
			if _, err := os.Stat(filepath.Join(dir, "MIRROR-"+strings.TrimPrefix(next, "MANIFEST-"))); next == manifest || err != nil {
				t.Fatalf("after a restart: MANIFEST %s (was %s), its mirror: %v", next, manifest, err)
			}
		})
	}
}
