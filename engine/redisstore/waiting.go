package redisstore

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
	"github.com/redis/go-redis/v9"
)

// Waiting for a request in flight without polling Redis.
//
// A Begin that finds the key claimed by another request with the same
// fingerprint waits for it to end. Asking Redis again and again (the
// first versions polled every 2-50 ms) made each waiting duplicate cost
// tens of commands a second: one client sending 500 duplicates of a slow
// request loaded the Redis that every replica and tenant shares. Instead:
//
//   - Across processes, a notification. A waiter's Begin marks the record
//     (field w, set by beginScript); the Complete or Release of a marked
//     claim publishes its Redis key on the channel Prefix + "done". Every
//     Store that has waited keeps one subscription to that channel, made
//     before its first waiting Begin asks, so no publication between the
//     ask and the wait is missed.
//   - In a process, one watch per key: every waiting Begin of the Store on
//     a key waits on the same watch, which a publication of the key (or a
//     Begin of this Store that finds the claim gone) wakes; one woken
//     Begin asks, and the others take its replay (they wait with the same
//     fingerprint, so its replay is theirs), or ask themselves if it got
//     none (the claim was released: one of them may run).
//   - A slow poll as the fallback: a publication can be lost (the
//     subscription's connection broke and was remade; a holder of an older
//     version that does not publish), and a crashed holder publishes
//     nothing; so a waiter asks again when the holder's lease runs out, and
//     at most every MaxPollInterval (default 1 s) otherwise, and of the
//     waiters of one key in one Store only one asks per interval.
//
// So, past each duplicate's own first ask, waiting costs about one ask
// per key, per Store, per MaxPollInterval, and one when the request ends,
// against the target of one command per waiting duplicate per second. Without a
// subscription (the server refused SUBSCRIBE), waiters poll with the
// backoff from PollInterval to MaxPollInterval.

// watch is what the waiting Begins of one key wait on.
type watch struct {
	done     chan struct{} // closed by a notification of the key
	refs     int           // waiting Begins; guarded by watches.mu
	lastPoll atomic.Int64  // when one of them last asked (Unix nanoseconds)

	// Once done is closed: the Begin that won leader asks, and shares its
	// answer (closing answered): its replay, if it was one.
	leader   atomic.Bool
	answered chan struct{}
	replay   *record.Record
}

// share publishes the woken leader's answer to the other woken Begins.
func (wt *watch) share(res engine.Result, err error) {
	if err == nil && res.Outcome == engine.Replay {
		wt.replay = res.Record
	}
	close(wt.answered)
}

type watches struct {
	mu sync.Mutex
	m  map[string]*watch // by Redis key

	subOK   atomic.Bool // sub is set: the fast path of subscribed
	subMu   sync.Mutex
	sub     *redis.PubSub // nil until subscribed
	subNext time.Time     // after a failed SUBSCRIBE, when to try again
}

// resubscribeAfter is how long a Store whose SUBSCRIBE failed polls before
// it tries again.
const resubscribeAfter = 30 * time.Second

// channel is the channel that Complete and Release publish waited-for keys
// on.
func (s *Store) channel() string { return s.opts.Prefix + "done" }

// subscribed makes sure the Store is subscribed to its channel (lazily,
// at its first wait); false if it cannot be (it tries again
// resubscribeAfter later). The subscription is confirmed before it
// returns true, so a publication after that is received.
func (s *Store) subscribed() bool {
	w := &s.watches
	if w.subOK.Load() {
		return true
	}
	w.subMu.Lock()
	defer w.subMu.Unlock()
	if w.sub != nil {
		return true
	}
	if time.Now().Before(w.subNext) {
		return false
	}
	ps := s.c.Subscribe(s.ctx, s.channel())
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		_ = ps.Close()
		w.subNext = time.Now().Add(resubscribeAfter)
		return false
	}
	w.sub = ps
	w.subOK.Store(true)
	s.work.Add(1)
	go s.dispatch(ps)
	return true
}

// dispatch wakes the watches of the keys published on the channel, until
// Close.
func (s *Store) dispatch(ps *redis.PubSub) {
	defer s.work.Done()
	ch := ps.Channel()
	for {
		select {
		case msg, ok := <-ch:
			if !ok {
				return
			}
			s.notify(msg.Payload)
		case <-s.ctx.Done():
			_ = ps.Close()
			return
		}
	}
}

// watch returns the watch of Redis key rk, counting the caller in.
func (s *Store) watch(rk string) *watch {
	w := &s.watches
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = make(map[string]*watch)
	}
	wt := w.m[rk]
	if wt == nil {
		wt = &watch{done: make(chan struct{}), answered: make(chan struct{})}
		w.m[rk] = wt
	}
	wt.refs++
	return wt
}

// unwatch counts the caller out of wt.
func (s *Store) unwatch(rk string, wt *watch) {
	w := &s.watches
	w.mu.Lock()
	defer w.mu.Unlock()
	if wt.refs--; wt.refs == 0 && w.m[rk] == wt {
		delete(w.m, rk)
	}
}

// notify wakes the Begins waiting on rk.
func (s *Store) notify(rk string) {
	w := &s.watches
	w.mu.Lock()
	defer w.mu.Unlock()
	if wt := w.m[rk]; wt != nil {
		close(wt.done)
		delete(w.m, rk)
	}
}

// shouldPoll reports whether a waiter of wt whose poll timer fired should
// ask Redis: no other waiter of the key in this Store asked in the last
// interval, or none has since the holder's lease ran out (leaseEnd, as
// the waiter last learnt it).
func (wt *watch) shouldPoll(now, leaseEnd time.Time, interval time.Duration) bool {
	last := wt.lastPoll.Load()
	due := now.UnixNano()-last >= int64(interval) || !now.Before(leaseEnd) && last < leaseEnd.UnixNano()
	return due && wt.lastPoll.CompareAndSwap(last, now.UnixNano())
}
