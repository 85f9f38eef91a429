package idemjob_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemjob"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
	"github.com/idemkv/idemkv/expiry"
)

type receipt struct {
	Invoice string `json:"invoice"`
	Run     int64  `json:"run"`
}

var ctx = context.Background()

// TestDoRunsOnceAndReplays: a redelivery gets the stored result, decoded,
// without running the function; the same key with another input is a
// conflict naming the first call; another name is another job.
func TestDoRunsOnceAndReplays(t *testing.T) {
	store := idemtest.OpenDiskEngine(t, t.TempDir(), nil)
	var runs atomic.Int64
	job := func(ctx context.Context, run *idemjob.Run) (receipt, error) {
		return receipt{Invoice: "inv_1", Run: runs.Add(1)}, nil
	}
	c := idemjob.Call{Name: "send-invoice", Key: "msg-1", Input: map[string]int{"amount": 100}, RequestID: "delivery-1"}
	first, err := idemjob.Do(ctx, store, c, job, nil)
	if err != nil || first.Replayed || first.Value.Run != 1 || first.Attempt != 1 {
		t.Fatalf("first: %+v %v", first, err)
	}
	c.RequestID = "delivery-2"
	again, err := idemjob.Do(ctx, store, c, job, nil)
	if err != nil || !again.Replayed || again.Value != first.Value {
		t.Fatalf("redelivery: %+v %v; want the replay of %+v", again, err, first.Value)
	}
	c.Input = map[string]int{"amount": 999}
	_, err = idemjob.Do(ctx, store, c, job, nil)
	var ce *idemjob.ConflictError
	if !errors.Is(err, idemjob.ErrConflict) || !errors.As(err, &ce) || ce.OriginalRequestID != "delivery-1" {
		t.Fatalf("another input: %v; want ErrConflict naming delivery-1", err)
	}
	other, err := idemjob.Do(ctx, store, idemjob.Call{Name: "send-reminder", Key: "msg-1"}, job, nil)
	if err != nil || other.Replayed {
		t.Fatalf("another job name, same key: %+v %v; want a first run", other, err)
	}
	if runs.Load() != 2 {
		t.Fatalf("the function ran %d times; want 2", runs.Load())
	}
	if _, err := idemjob.Do(ctx, store, idemjob.Call{Key: "k"}, job, nil); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("no name: %v; want ErrInvalid", err)
	}
}

// TestErrorsReleaseAndPermanentErrorsStay: a function's error releases
// the job (the next delivery runs it); a Permanent error is recorded and
// every later delivery gets it back without running.
func TestErrorsReleaseAndPermanentErrorsStay(t *testing.T) {
	store := idemtest.NewEngine(t, nil)
	var runs atomic.Int64
	transient := errors.New("smtp: connection refused")
	fail := func(ctx context.Context, run *idemjob.Run) (int, error) { runs.Add(1); return 0, transient }
	c := idemjob.Call{Name: "mail", Key: "m1"}
	for range 2 {
		if _, err := idemjob.Do(ctx, store, c, fail, nil); !errors.Is(err, transient) {
			t.Fatalf("transient failure: %v", err)
		}
	}
	if runs.Load() != 2 {
		t.Fatalf("a failed job ran %d times in two deliveries; want 2", runs.Load())
	}
	bad := errors.New("invalid address")
	perm := func(ctx context.Context, run *idemjob.Run) (int, error) {
		runs.Add(1)
		return 0, idemjob.Permanent(bad)
	}
	c.Key = "m2"
	_, err := idemjob.Do(ctx, store, c, perm, nil)
	var f *idemjob.Failed
	if !errors.As(err, &f) || f.Replayed || !errors.Is(err, bad) {
		t.Fatalf("permanent failure: %v", err)
	}
	_, err = idemjob.Do(ctx, store, c, perm, nil)
	if !errors.As(err, &f) || !f.Replayed || f.Message != "invalid address" {
		t.Fatalf("redelivery of a permanent failure: %v; want the stored Failed", err)
	}
	if runs.Load() != 3 {
		t.Fatalf("ran %d times; want 3 (the permanent failure once)", runs.Load())
	}
}

// TestConcurrentDeliveriesRunOnce: deliveries of one message at once run
// the function once; every one gets its result; under NoWait a delivery
// that finds it running gets ErrInProgress.
func TestConcurrentDeliveriesRunOnce(t *testing.T) {
	store := idemtest.NewEngine(t, nil)
	var runs atomic.Int64
	release := make(chan struct{})
	job := func(ctx context.Context, run *idemjob.Run) (receipt, error) {
		<-release
		return receipt{Invoice: "inv", Run: runs.Add(1)}, nil
	}
	c := idemjob.Call{Name: "charge", Key: "order-7", Input: "payload"}
	var wg sync.WaitGroup
	results := make([]idemjob.Result[receipt], 100)
	errs := make([]error, 100)
	for i := range results {
		wg.Go(func() { results[i], errs[i] = idemjob.Do(ctx, store, c, job, nil) })
	}
	idemtest.WaitFor(t, "one run and waiting deliveries", func() bool { return store.Stats().Waits >= 50 })
	if _, err := idemjob.Do(ctx, store, c, job, &idemjob.Options{WhenInProgress: engine.NoWait}); !errors.Is(err, idemjob.ErrInProgress) {
		t.Fatalf("NoWait while running: %v; want ErrInProgress", err)
	}
	close(release)
	wg.Wait()
	for i, r := range results {
		if errs[i] != nil || r.Value.Run != 1 {
			t.Fatalf("delivery %d: %+v %v; want run 1", i, r, errs[i])
		}
	}
	if runs.Load() != 1 {
		t.Fatalf("ran %d times; want 1", runs.Load())
	}
}

// The crash test's child: runs the job's first step, saves a recovery
// point, says so, and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("IDEMJOB_CHILD_DIR"); dir != "" {
		os.Exit(child(dir))
	}
	os.Exit(m.Run())
}

func child(dir string) int {
	store, err := engine.Open(filepath.Join(dir, "data"), nil)
	if err != nil {
		fmt.Println("open:", err)
		return 1
	}
	_, err = idemjob.Do(ctx, store, crashCall, func(ctx context.Context, run *idemjob.Run) (receipt, error) {
		if err := sideEffect(dir, "charged"); err != nil {
			return receipt{}, err
		}
		if err := run.Save(ctx, "charged", []byte("ch_123")); err != nil {
			return receipt{}, err
		}
		fmt.Println("saved")
		select {} // killed here
	}, nil)
	fmt.Println("returned:", err)
	return 1
}

var crashCall = idemjob.Call{Name: "fulfil", Key: "order-9", Input: "order 9"}

// sideEffect appends step to the job's ledger, durably.
func sideEffect(dir, step string) error {
	f, err := os.OpenFile(filepath.Join(dir, "ledger"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(step + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// TestCrashedJobResumesFromItsRecoveryPoint: a consumer killed with
// SIGKILL after the job's first step and its recovery point; the
// redelivery (a restarted consumer) resumes from the recovery point: the
// first step is not done again, the job completes, and a further
// redelivery replays.
func TestCrashedJobResumesFromItsRecoveryPoint(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "IDEMJOB_CHILD_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "saved" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q %v", line, err)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	cmd.Wait()

	store := idemtest.OpenDiskEngine(t, filepath.Join(dir, "data"), nil)
	var resumed *idemjob.Run
	job := func(ctx context.Context, run *idemjob.Run) (receipt, error) {
		resumed = run
		charge := ""
		if run.Checkpoint != nil && run.Checkpoint.Phase == "charged" {
			charge = string(run.Checkpoint.Data) // the first step is done
		} else {
			if err := sideEffect(dir, "charged"); err != nil {
				return receipt{}, err
			}
			charge = "ch_new"
		}
		if err := sideEffect(dir, "shipped"); err != nil {
			return receipt{}, err
		}
		return receipt{Invoice: charge}, nil
	}
	res, err := idemjob.Do(ctx, store, crashCall, job, nil)
	if err != nil || res.Value.Invoice != "ch_123" || res.Attempt != 2 || resumed == nil || !resumed.Recovered {
		t.Fatalf("redelivery after the crash: %+v %v (run %+v); want attempt 2 resumed from the recovery point", res, err, resumed)
	}
	again, err := idemjob.Do(ctx, store, crashCall, job, nil)
	if err != nil || !again.Replayed || again.Value.Invoice != "ch_123" {
		t.Fatalf("a further redelivery: %+v %v; want the replay", again, err)
	}
	ledger, err := os.ReadFile(filepath.Join(dir, "ledger"))
	if err != nil || string(ledger) != "charged\nshipped\n" {
		t.Fatalf("ledger %q %v; want each step once", ledger, err)
	}
}

// TestDoTTL: Options.TTL keeps a job's result for less than the store's
// TTL: past it, a delivery runs the job again.
func TestDoTTL(t *testing.T) {
	clock := expiry.NewFakeClock(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	store := idemtest.NewEngine(t, &engine.Options{Clock: clock})
	var runs atomic.Int64
	job := func(ctx context.Context, run *idemjob.Run) (int64, error) { return runs.Add(1), nil }
	c := idemjob.Call{Name: "daily-report", Key: "2026-12-06"}
	o := &idemjob.Options{TTL: time.Hour}
	if _, err := idemjob.Do(ctx, store, c, job, o); err != nil {
		t.Fatal(err)
	}
	clock.Advance(59 * time.Minute)
	if r, err := idemjob.Do(ctx, store, c, job, o); err != nil || !r.Replayed {
		t.Fatalf("within the TTL: %+v %v; want the replay", r, err)
	}
	clock.Advance(2 * time.Minute)
	if r, err := idemjob.Do(ctx, store, c, job, o); err != nil || r.Replayed || r.Value != 2 {
		t.Fatalf("past the TTL: %+v %v; want a second run", r, err)
	}
}
