package sharedstore

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// Waiting for a request in flight without polling the shared server.
//
// A Begin that finds the key claimed by another request with the same
// fingerprint waits for it to end. Asking the server again and again (the
// first Redis store polled every 2-50 ms) made each waiting duplicate
// cost tens of round trips a second: one client sending 500 duplicates of
// a slow request loaded the server that every replica and tenant shares.
// Instead:
//
//   - Across processes, a notification. A waiter's ask marks the record;
//     the Complete or Release of a marked claim publishes its key (Redis
//     PUBLISH, PostgreSQL NOTIFY). Every store that has waited keeps one
//     subscription, made before its first waiting Begin asks, so no
//     publication between the ask and the wait is missed.
//   - In a process, one Watch per key: every waiting Begin of the store on
//     a key waits on the same Watch, which a publication of the key (or a
//     Begin of this store that finds the claim gone) wakes; one woken
//     Begin asks, and the others take its replay (they wait with the same
//     fingerprint, so its replay is theirs), or ask themselves if it got
//     none (the claim was released: one of them may run).
//   - A slow poll as the fallback: a publication can be lost (the
//     subscription's connection broke and was remade; a holder of an older
//     version that does not publish), and a crashed holder publishes
//     nothing; so a waiter asks again when the holder's lease runs out, and
//     at most every MaxPollInterval (default 1 s) otherwise, and of the
//     waiters of one key in one store only one asks per interval.
//
// So, past each duplicate's own first ask, waiting costs about one ask
// per key, per store, per MaxPollInterval, and one when the request ends.
// Without a subscription (the server refused it), waiters poll with the
// backoff from PollInterval to MaxPollInterval.

// Watch is what the waiting Begins of one key wait on.
type Watch struct {
	done     chan struct{} // closed by a notification of the key
	refs     int           // waiting Begins; guarded by Watches.mu
	lastPoll atomic.Int64  // when one of them last asked (Unix nanoseconds)

	// Once done is closed: the Begin that won leader asks, and shares its
	// answer (closing answered): its replay, if it was one.
	leader   atomic.Bool
	answered chan struct{}
	replay   *record.Record
}

// share publishes the woken leader's answer to the other woken Begins.
func (wt *Watch) share(res engine.Result, err error) {
	if err == nil && res.Outcome == engine.Replay {
		wt.replay = res.Record
	}
	close(wt.answered)
}

// woken reports whether a notification woke wt.
func (wt *Watch) woken() bool {
	select {
	case <-wt.done:
		return true
	default:
		return false
	}
}

// shouldPoll reports whether a waiter of wt whose poll timer fired should
// ask the server: no other waiter of the key in this store asked in the
// last interval, or none has since the holder's lease ran out (leaseEnd,
// as the waiter last learnt it).
func (wt *Watch) shouldPoll(now, leaseEnd time.Time, interval time.Duration) bool {
	last := wt.lastPoll.Load()
	due := now.UnixNano()-last >= int64(interval) || !now.Before(leaseEnd) && last < leaseEnd.UnixNano()
	return due && wt.lastPoll.CompareAndSwap(last, now.UnixNano())
}

// Watches are a store's watches, by the key its notifications name.
type Watches struct {
	mu sync.Mutex
	m  map[string]*Watch
}

// watch returns the watch of key k, counting the caller in.
func (w *Watches) watch(k string) *Watch {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = make(map[string]*Watch)
	}
	wt := w.m[k]
	if wt == nil {
		wt = &Watch{done: make(chan struct{}), answered: make(chan struct{})}
		w.m[k] = wt
	}
	wt.refs++
	return wt
}

// unwatch counts the caller out of wt.
func (w *Watches) unwatch(k string, wt *Watch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if wt.refs--; wt.refs == 0 && w.m[k] == wt {
		delete(w.m, k)
	}
}

// Notify wakes the Begins waiting on key k: the store calls it for every
// key its subscription receives.
func (w *Watches) Notify(k string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if wt := w.m[k]; wt != nil {
		close(wt.done)
		delete(w.m, k)
	}
}

// Waiter runs the waiting of a store's Begins.
type Waiter struct {
	Watches Watches
	// Subscribed reports whether the store receives notifications; it
	// makes the subscription at the first call, and must have it
	// confirmed before it returns true, so that a publication after that
	// is received.
	Subscribed func() bool
	// Closed reports whether the store is closed; Done is closed at its
	// Close.
	Closed func() bool
	Done   <-chan struct{}
	// PollInterval and MaxPollInterval are the store's options of those
	// names.
	PollInterval, MaxPollInterval time.Duration
	// Waits counts the Begins that waited.
	Waits *atomic.Uint64
}

// Ask asks the shared server once, for the Begin of one request: its
// answer, and for InProgress how long the holder's lease still runs.
type Ask func() (res engine.Result, left time.Duration, err error)

// Begin asks until the answer is final: while it is InProgress and wait
// is engine.Wait, it waits (see above) and asks again. k is the key that
// notifications name; req's Gate admits the wait.
func (w *Waiter) Begin(ctx context.Context, k string, req engine.Request, wait engine.WaitPolicy, ask Ask) (engine.Result, error) {
	// Waiting: on the key's watch, registered before the ask it follows
	// so that no publication is missed, woken by a publication, with a
	// poll timer as the fallback; without a subscription, polling with
	// backoff. Registering before the first ask costs every
	// waiting-capable Begin three allocations and a map entry
	// (BenchmarkRedisStore: 65-66 allocations per first request without
	// it, 68-69 with it); registering at the first InProgress answer
	// instead would cost each duplicate one more ask of the server (6.3
	// commands per waiter instead of 3.3 in redisstore's
	// TestWaitingDuplicatesDoNotLoadRedis), and the server that every
	// replica shares is the scarcer resource.
	var wt *Watch
	if wait == engine.Wait && w.Subscribed() {
		wt = w.Watches.watch(k)
	}
	admitted, waited, woken, polled := false, false, false, false
	defer func() {
		if wt != nil {
			w.Watches.unwatch(k, wt)
		}
		if admitted {
			req.Gate.Leave(req.Key)
		}
	}()
	pause := w.PollInterval
	for {
		if w.Closed() {
			return engine.Result{}, engine.ErrClosed
		}
		leading := false
		if woken {
			// Of the Begins that the publication woke, one asks; the
			// others take its replay, or ask themselves if it has none.
			if leading = wt.leader.CompareAndSwap(false, true); !leading {
				select {
				case <-wt.answered:
				case <-ctx.Done():
					return engine.Result{}, ctx.Err()
				case <-w.Done:
					return engine.Result{}, engine.ErrClosed
				}
				if wt.replay != nil {
					return engine.Result{Outcome: engine.Replay, Record: wt.replay}, nil
				}
			}
		}
		res, left, err := ask()
		if leading {
			wt.share(res, err)
		}
		if err != nil || res.Outcome != engine.InProgress || wait == engine.NoWait {
			if err == nil && polled && wt != nil {
				w.Watches.Notify(k) // the request ended: wake the other waiters here
			}
			return res, err
		}
		if !admitted && req.Gate != nil {
			if !req.Gate.Enter(req.Key) {
				return res, nil
			}
			admitted = true
		}
		if !waited {
			waited = true
			w.Waits.Add(1)
		}
		if woken || wt == nil && w.Subscribed() {
			// A new watch (the first, or after a wake that found the key
			// claimed again), then ask again: a publication after the
			// last answer and before the watch is not missed.
			if wt != nil {
				w.Watches.unwatch(k, wt)
			}
			wt, woken = w.Watches.watch(k), false
			continue
		}
		d := min(pause, max(left, time.Millisecond))
		if wt != nil {
			d = min(w.MaxPollInterval, max(left, time.Millisecond))
		}
		pause = min(2*pause, w.MaxPollInterval)
		if err := w.sleep(ctx, wt, d, time.Now().Add(left)); err != nil {
			return engine.Result{}, err
		}
		woken = wt != nil && wt.woken()
		polled = !woken
	}
}

// sleep waits d, or until wt (if any) is woken, ctx ends or the store
// closes. With a watch, a timer that fires while another waiter of the
// key in this store polled recently (see Watch.shouldPoll) waits on.
func (w *Waiter) sleep(ctx context.Context, wt *Watch, d time.Duration, leaseEnd time.Time) error {
	var done chan struct{}
	if wt != nil {
		done = wt.done
	}
	for {
		t := time.NewTimer(d)
		select {
		case <-done:
			t.Stop()
			return nil
		case <-t.C:
			if wt == nil || wt.shouldPoll(time.Now(), leaseEnd, w.MaxPollInterval) {
				return nil
			}
			d = w.MaxPollInterval
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-w.Done:
			t.Stop()
			return engine.ErrClosed
		}
	}
}
