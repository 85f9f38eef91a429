package engine_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/idemkv/idemkv/engine"
)

// opBlocker holds every file operation that match accepts while on, so
// that an operation can be caught halfway: the first one held closes
// entered, and all of them wait for release.
type opBlocker struct {
	match   func(errorfs.Op) bool
	on      atomic.Bool
	entered chan struct{}
	once    sync.Once
	release chan struct{}
}

func newOpBlocker(match func(errorfs.Op) bool) *opBlocker {
	return &opBlocker{match: match, entered: make(chan struct{}), release: make(chan struct{})}
}

func (b *opBlocker) String() string { return "opBlocker" }

func (b *opBlocker) MaybeError(op errorfs.Op) error {
	if b.on.Load() && b.match(op) {
		b.once.Do(func() { close(b.entered) })
		<-b.release
	}
	return nil
}

// awaitEntered waits until an operation is held, failing t if none comes.
func (b *opBlocker) awaitEntered(t *testing.T, what string) {
	t.Helper()
	select {
	case <-b.entered:
	case <-time.After(10 * time.Second):
		t.Fatal(what)
	}
}

// unblock lets the held operations, and all later ones, go on.
func (b *opBlocker) unblock() {
	b.on.Store(false)
	close(b.release)
}

// blobReads matches the reads of a blob file (a separated value: the
// stored record of a key).
func blobReads(op errorfs.Op) bool {
	return (op.Kind == errorfs.OpFileReadAt || op.Kind == errorfs.OpFileRead) && fileIs(op, ".blob")
}

// walSyncs matches the fsyncs of a write-ahead log file.
func walSyncs(op errorfs.Op) bool {
	return (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) && fileIs(op, ".log")
}

// TestCloseDuringLookupWithWaiter: Close resolves every call in the
// stripes (closeAll) while a Begin is still reading storage for its key;
// that Begin resolves its own lookup call again when the read returns. With
// a second Begin waiting on the key (so that the call's channel exists),
// neither may panic (the first resolve of a call wins; a second one used to
// close the channel twice).
func TestCloseDuringLookupWithWaiter(t *testing.T) {
	fs := vfs.NewMem()
	const dir = "data"
	body := bodyOf("k") // > 256 bytes: stored in a blob file
	{
		e, err := engine.Open(dir, engine.WithFSForTest(&engine.Options{CacheSize: -1, Logger: quietLogger()}, fs))
		if err != nil {
			t.Fatal(err)
		}
		res := begin(t, e, req("k", "x"))
		if err := res.Claim.Complete(ctx, response(body)); err != nil {
			t.Fatal(err)
		}
		if err := e.FlushForTest(); err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	b := newOpBlocker(blobReads)
	e, err := engine.Open(dir, engine.WithFSForTest(&engine.Options{CacheSize: -1, Logger: quietLogger()}, errorfs.Wrap(fs, b)))
	if err != nil {
		t.Fatal(err)
	}
	waitFilters(t, e)
	b.on.Store(true)

	type outcome struct {
		res   engine.Result
		err   error
		panic any
	}
	run := func(out chan<- outcome) {
		var o outcome
		defer func() {
			o.panic = recover()
			out <- o
		}()
		o.res, o.err = e.Begin(ctx, req("k", "x"))
	}
	leader, waiter := make(chan outcome, 1), make(chan outcome, 1)
	go run(leader)
	b.awaitEntered(t, "the lookup never read the blob file")
	go run(waiter)
	time.Sleep(100 * time.Millisecond) // the waiter finds the lookup call and waits on it

	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	select {
	case o := <-waiter:
		if o.panic != nil || !errors.Is(o.err, engine.ErrClosed) {
			t.Fatalf("waiter woken by Close: %v %v %v; want ErrClosed", o.res.Outcome, o.err, o.panic)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake the waiter")
	}
	b.unblock()
	o := <-leader
	if o.panic != nil {
		t.Fatalf("the Begin whose lookup Close interrupted panicked: %v", o.panic)
	}
	t.Logf("leader: %v %v", o.res.Outcome, o.err)
	if err := <-closed; err != nil {
		t.Logf("close: %v", err)
	}
}

// TestWaitersWakeUnderChurn: many Begins of few keys, racing with
// completions, releases and Delete, so that waiters attach to calls at
// every moment of their life (before, during and after resolve). Every
// Begin must return (no lost wake-up) and every replay must carry the
// stored body.
func TestWaitersWakeUnderChurn(t *testing.T) {
	e, _ := newTestEngine(t, &engine.Options{CacheSize: -1, Durability: engine.Relaxed})
	const keys = 4
	deadline := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	var errs atomic.Value
	var ops atomic.Int64
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				k := fmt.Sprint("k", (g+i)%keys)
				res, err := e.Begin(ctx, req(k, "x"))
				if err != nil {
					errs.Store(err)
					return
				}
				ops.Add(1)
				switch res.Outcome {
				case engine.Proceed:
					if i%3 == 0 {
						err = res.Claim.Release(ctx)
					} else {
						err = res.Claim.Complete(ctx, response(bodyOf(k)))
					}
				case engine.Replay:
					if string(res.Record.Body) != bodyOf(k) {
						err = fmt.Errorf("replay of %s: body %q", k, res.Record.Body)
					} else if i%5 == 0 {
						err = e.Delete(ctx, key(k))
						if errors.Is(err, engine.ErrInProgress) || errors.Is(err, engine.ErrNotFound) {
							err = nil
						}
					}
				default:
					err = fmt.Errorf("outcome %v", res.Outcome)
				}
				if err != nil {
					errs.Store(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatalf("Begins still blocked after 15 s (%d ops done): a lost wake-up", ops.Load())
	}
	if err, _ := errs.Load().(error); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d begins", ops.Load())
}

// TestCloseDuringCompleteWithWaiter: Close resolves the claim's call
// (closeAll) while its Complete waits for the group fsync; when the fsync
// returns, Complete resolves the same call again. With a request waiting on
// the key, that must not panic in the caller of Complete (it used to close
// the channel twice).
func TestCloseDuringCompleteWithWaiter(t *testing.T) {
	b := newOpBlocker(walSyncs)
	e, err := engine.Open("data", engine.WithFSForTest(&engine.Options{Durability: engine.Synced, Logger: quietLogger()}, errorfs.Wrap(vfs.NewMem(), b)))
	if err != nil {
		t.Fatal(err)
	}
	res := begin(t, e, req("k", "x"))
	mustOutcome(t, res, engine.Proceed)
	waiter := make(chan error, 1)
	go func() {
		_, err := e.Begin(ctx, req("k", "x")) // same fingerprint: waits for the claim
		waiter <- err
	}()
	for e.Stats().Waits == 0 {
		time.Sleep(time.Millisecond)
	}
	b.on.Store(true)
	type outcome struct {
		err   error
		panic any
	}
	completed := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() { o.panic = recover(); completed <- o }()
		o.err = res.Claim.Complete(ctx, response("body"))
	}()
	b.awaitEntered(t, "Complete never reached the fsync")
	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	select {
	case err := <-waiter:
		if !errors.Is(err, engine.ErrClosed) {
			t.Fatalf("waiter: %v; want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake the waiter")
	}
	b.unblock()
	o := <-completed
	if o.panic != nil {
		t.Fatalf("Complete panicked: %v", o.panic)
	}
	t.Logf("Complete: %v; Close: %v", o.err, <-closed)
}

// TestCloseDuringCompleteNoWaiter is the same race with nobody waiting:
// the call's result fields must be written once (run it with -race; they
// were written by Close's closeAll and again by Complete).
func TestCloseDuringCompleteNoWaiter(t *testing.T) {
	b := newOpBlocker(walSyncs)
	e, err := engine.Open("data", engine.WithFSForTest(&engine.Options{Durability: engine.Synced, Logger: quietLogger()}, errorfs.Wrap(vfs.NewMem(), b)))
	if err != nil {
		t.Fatal(err)
	}
	res := begin(t, e, req("k", "x"))
	mustOutcome(t, res, engine.Proceed)
	b.on.Store(true)
	completed := make(chan error, 1)
	go func() { completed <- res.Claim.Complete(ctx, response("body")) }()
	<-b.entered
	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	time.Sleep(100 * time.Millisecond) // Close has run closeAll and waits for Complete
	b.unblock()
	t.Logf("Complete: %v; Close: %v", <-completed, <-closed)
}

// walFaults blocks fsyncs of the write-ahead log (block) and fails
// its writes and fsyncs (fail).
type walFaults struct {
	block, fail atomic.Bool
	entered     chan struct{}
	once        sync.Once
	release     chan struct{}
}

func (f *walFaults) String() string { return "walFaults" }

func (f *walFaults) MaybeError(op errorfs.Op) error {
	if !fileIs(op, ".log") {
		return nil
	}
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData:
		if f.block.Load() {
			f.once.Do(func() { close(f.entered) })
			<-f.release
		}
		if f.fail.Load() {
			return enospc
		}
	case errorfs.OpFileWrite, errorfs.OpFileWriteAt:
		if f.fail.Load() {
			return enospc
		}
	}
	return nil
}

// TestCloseAfterFailureReleasesWaiters: one Complete's fsync hangs and a
// second Complete waits behind it in Pebble's log writer; then the log
// fails. Close gives up on both after failedCloseWait (lockForClose). When
// the hung fsync returns with the failure, both Completes must return an
// error, neither acknowledged, instead of waiting for ever.
func TestCloseAfterFailureReleasesWaiters(t *testing.T) {
	f := &walFaults{entered: make(chan struct{}), release: make(chan struct{})}
	e, err := engine.Open("data", engine.WithFSForTest(&engine.Options{Durability: engine.Synced, Logger: quietLogger()}, errorfs.Wrap(vfs.NewMem(), f)))
	if err != nil {
		t.Fatal(err)
	}
	a, b := begin(t, e, req("a", "x")), begin(t, e, req("b", "x"))
	if err := e.Sync(ctx); err != nil { // the leases are on disk
		t.Fatal(err)
	}
	f.block.Store(true)
	doneA, doneB := make(chan error, 1), make(chan error, 1)
	go func() { doneA <- a.Claim.Complete(ctx, response("a")) }()
	<-f.entered // A's fsync hangs
	go func() { doneB <- b.Claim.Complete(ctx, response("b")) }()
	time.Sleep(100 * time.Millisecond) // B waits for the next fsync
	f.fail.Store(true)
	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	time.Sleep(100 * time.Millisecond)
	close(f.release) // the hung fsync returns, failing
	for name, done := range map[string]chan error{"A": doneA, "B": doneB} {
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("%s: Complete acknowledged over a failed fsync", name)
			}
			t.Logf("%s: %v", name, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s never returned", name)
		}
	}
	select {
	case err := <-closed:
		t.Logf("Close: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close never returned")
	}
}
