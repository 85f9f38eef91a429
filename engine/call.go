package engine

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/idemkv/idemkv/record"
)

// callKind distinguishes the two things that can be in flight for a key.
type callKind uint8

const (
	// lookupCall: a Begin (or Delete) is reading storage for the key.
	// Everyone else waits for it, whatever their fingerprint, because what
	// storage holds decides their answer.
	lookupCall callKind = iota
	// claimCall: a request holds the key's claim and is running.
	claimCall
)

// outcome of a call, for the goroutines waiting on it.
type callResult uint8

const (
	// retry: look again (the call was replaced by a claim, was released,
	// failed, or its lease was taken over).
	retry callResult = iota
	// stored: val holds the key's encoded record.
	stored
	// closing: the engine closed.
	closing
)

// A call is one in-flight operation on a key. Waiters block on the channel
// of wait; the result fields are written before resolve publishes them and
// read after, so the publication orders them (happens-before).
//
// The channel is made only when someone waits: most calls (a first
// request's claim, a lookup nobody shares) have no waiter, and a channel is
// an allocation. resolve sets resolved before it looks for a channel, and a
// waiter installs its channel before it looks at resolved, so (the atomics
// being sequentially consistent) either resolve closes the waiter's channel
// or the waiter sees resolved and does not wait.
type call struct {
	kind      callKind
	fp        record.Fingerprint // claims: the claim's fingerprint
	requestID string             // claims: the id reported to conflicting requests
	token     uint64             // claims: fencing token

	// guarded by the stripe's mu:
	leaseUntil int64 // claims: unix nanoseconds after which it may be taken over
	completing bool  // claims: Complete or Release is writing; no takeover
	saving     bool  // claims: Checkpoint is writing; no takeover
	lost       bool  // claims: taken over or closed; Complete must fail

	done      atomic.Pointer[chan struct{}] // made by the first waiter
	resolving atomic.Bool                   // set by the resolve that publishes; later ones do nothing
	resolved  atomic.Bool
	res       callResult
	rec       *record.Record // the completed record when res == stored; read-only
}

func newCall(kind callKind) *call { return &call{kind: kind} }

// closedChan is the channel wait returns once the call is resolved.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// wait returns a channel that is closed once the call is resolved; then
// res and rec may be read.
func (c *call) wait() <-chan struct{} {
	p := c.done.Load()
	if p == nil {
		ch := make(chan struct{})
		if !c.done.CompareAndSwap(nil, &ch) {
			p = c.done.Load()
		} else {
			p = &ch
		}
	}
	if c.resolved.Load() {
		return closedChan
	}
	return *p
}

// resolve publishes the call's result and wakes its waiters. It is called
// after the call was removed from (or replaced in) the stripe's map. The
// first call publishes; later ones do nothing: Close (closeAll) resolves
// every call in the maps with closing while their owners (a lookup, a
// Complete already writing) may still resolve them when they finish.
func (c *call) resolve(res callResult, rec *record.Record) {
	if !c.resolving.CompareAndSwap(false, true) {
		return
	}
	c.res, c.rec = res, rec
	c.resolved.Store(true)
	if p := c.done.Load(); p != nil {
		close(*p)
	}
}

// takeOverUnlock takes key ek from claim c, whose holder outlived its
// lease (expiredLocked): c's Complete, Checkpoint and Release then fail
// with ErrLeaseLost, and its waiters wake to look again. It is called
// with s.mu held and unlocks it.
func (e *Engine) takeOverUnlock(s *stripe, ek string, c *call) {
	e.forgetClaim(ek)
	delete(s.calls, ek)
	c.lost = true
	s.mu.Unlock()
	e.st.leasesExpired.Add(1)
	c.resolve(retry, nil)
}

// expiredLocked reports whether a claim's in-process lease ran out.
func (c *call) expiredLocked(now time.Time) bool {
	return c.kind == claimCall && !c.completing && !c.saving && now.UnixNano() >= c.leaseUntil
}

// closeAll resolves every call with closing, for Close.
func (s *stripe) closeAll() {
	s.mu.Lock()
	calls := s.calls
	s.calls = make(map[string]*call)
	for _, c := range calls {
		c.lost = true
	}
	s.cache = recentCache{budget: s.cache.budget}
	s.mu.Unlock()
	for _, c := range calls {
		c.resolve(closing, nil)
	}
}

// await waits until c is resolved or ctx is done.
func await(ctx context.Context, c *call) error {
	select {
	case <-c.wait():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startLookupLocked makes a lookup call for ek, which has no call, and
// forgets ek's cached record (a key with a call has none; see Begin). It
// is called with s.mu held.
func (s *stripe) startLookupLocked(ek string) *call {
	c := newCall(lookupCall)
	s.calls[ek] = c
	s.cache.remove(ek)
	return c
}

// abandon removes a lookup call that found nothing to share and wakes its
// waiters to try again.
func (s *stripe) abandon(ek string, c *call) {
	s.mu.Lock()
	if s.calls[ek] == c {
		delete(s.calls, ek)
	}
	s.mu.Unlock()
	c.resolve(retry, nil)
}
