package engine

// This file is the claim state machine of the embedded engine, from Begin
// to Complete or Release; the package documentation draws its transition
// table ("The life of a key"). The helpers it names live in files named
// after them: calls and waiting (call.go), the cache of completed records
// (cache.go), storage lookups (lookup.go) and writes (write.go).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/idemkv/idemkv/record"
)

// Outcome is Begin's answer.
type Outcome uint8

const (
	// Proceed: first time (or the earlier attempt was interrupted). The
	// caller holds the claim and must Complete or Release it.
	Proceed Outcome = iota + 1
	// Replay: a completed record with the same fingerprint exists;
	// Result.Record holds the stored response.
	Replay
	// Conflict: the key is taken (completed or in progress) by a request
	// with a different fingerprint; Result.OriginalRequestID names it.
	Conflict
	// InProgress: a request with the same fingerprint holds the claim and
	// the caller asked not to wait; Result.OriginalRequestID names it.
	InProgress
)

func (o Outcome) String() string {
	switch o {
	case Proceed:
		return "proceed"
	case Replay:
		return "replay"
	case Conflict:
		return "conflict"
	case InProgress:
		return "in-progress"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Request is the question Begin answers.
type Request struct {
	// Key names the record.
	Key record.Key
	// Fingerprint identifies the request's content (see record.Hasher).
	// Its Version must be non-zero.
	Fingerprint record.Fingerprint
	// RequestID identifies this request; it is stored with the claim and
	// reported to conflicting requests (up to record.MaxRequestIDLen bytes).
	RequestID string
	// WhenInProgress overrides Options.WhenInProgress for this call.
	WhenInProgress WaitPolicy
	// Gate, if set, bounds waiting: under Wait, Begin asks it before it
	// waits for a request in flight, and answers InProgress at once if it
	// refuses (see WaitGate).
	Gate WaitGate
}

// A WaitGate bounds the Begins that wait for a request in flight (the
// HTTP middleware's MaxWaiters and MaxWaitersPerKey). Every store honours
// it.
type WaitGate interface {
	// Enter is called before a Begin waits for the request holding key.
	// If it returns false, Begin answers InProgress at once instead.
	Enter(key record.Key) bool
	// Leave is called once when a Begin that Enter admitted stops
	// waiting (whatever it then answers).
	Leave(key record.Key)
}

// Result is Begin's answer.
type Result struct {
	Outcome Outcome
	// Claim is the claim the caller now holds (Proceed only).
	Claim *Claim
	// Recovered is set with Proceed when an earlier claim of the key was
	// interrupted: its process crashed or its lease expired. The handler
	// may have partly run before; Record holds that claim (with its last
	// Checkpoint, if any) so the application can reconcile.
	Recovered bool
	// Record is the stored record: the response to replay (Replay, with
	// its body), the interrupted claim (Proceed with Recovered, without a
	// body), or the record that conflicts (Conflict with a completed or
	// interrupted record, without a body).
	//
	// Records are read-only: a Replay hands out the engine's cached copy,
	// shared with every other caller that replays the key, so that a
	// retry costs no decoding or copying. Use Record.Clone to modify one.
	Record *record.Record
	// OriginalRequestID is the request id of the original request
	// (Conflict) or of the running one (InProgress).
	OriginalRequestID string
}

// validate checks what every store requires of a Request.
func (req *Request) validate() error {
	if err := req.Key.Validate(); err != nil {
		return err
	}
	if req.Fingerprint.Version == 0 {
		return fmt.Errorf("%w: fingerprint has no version", ErrInvalid)
	}
	if len(req.RequestID) > record.MaxRequestIDLen {
		return fmt.Errorf("%w: request id is %d bytes (max %d)", ErrInvalid, len(req.RequestID), record.MaxRequestIDLen)
	}
	return nil
}

// ValidateRequest returns the error every store returns for a Request it
// cannot take (an invalid key, a fingerprint without a version, a request
// id too long), or nil. Stores other than Engine call it first in Begin.
func ValidateRequest(req Request) error { return req.validate() }

// Begin asks whether the request may run. It returns exactly one of the
// four outcomes. With the Wait policy, a request whose key is held by a
// running request with the same fingerprint blocks until that request
// completes (Replay) or releases its claim (then this one may Proceed),
// or until ctx is done (ctx.Err() is returned). Storage reads and writes
// are not interrupted by ctx.
//
// A key moves through the states drawn in the package documentation ("The
// life of a key"): Begin finds the key idle (nothing in memory; storage
// decides), being looked up (wait for the lookup), claimed (wait, or
// InProgress, or Conflict) or completed and cached (answer at once).
func (e *Engine) Begin(ctx context.Context, req Request) (Result, error) {
	if err := req.validate(); err != nil {
		return Result{}, err
	}
	if e.closed.Load() {
		return Result{}, ErrClosed
	}
	wait := req.WhenInProgress
	if wait == DefaultWait {
		wait = e.opts.WhenInProgress
	}
	kb := getBuf()
	defer putBuf(kb)
	*kb = req.Key.Append((*kb)[:0])
	// The encoded key is looked up as string(*kb), which does not
	// allocate; it is copied into a string only when it must be stored.
	h := xxhash.Sum64(*kb)
	s := &e.stripes[h&e.mask]
	first, admitted := true, false
	defer func() {
		if admitted {
			req.Gate.Leave(req.Key)
		}
	}()
	for {
		now := e.clock.Now()
		s.mu.Lock()
		// Completed and cached: a cached key has no call (every path that
		// starts a call for a key removes its cached record first, under
		// the same lock), so a cache hit needs no other lookup.
		if r := s.cache.get(*kb); r != nil {
			if res, ok := answerStored(r, req, now); ok {
				// Counted in the stripe, under the lock already held:
				// shared atomic counters cost more than the rest of a
				// hit when every core increments them.
				if first {
					s.n.begins++
				}
				s.n.cacheHits++
				if res.Outcome == Replay {
					s.n.replays++
				} else {
					s.n.conflicts++
				}
				s.mu.Unlock()
				return res, nil
			}
			// Expired: forget it and look in storage.
			s.cache.remove(string(*kb))
			s.mu.Unlock()
			continue
		}
		if first {
			first = false
			e.st.begins.Add(1)
		}
		c := s.calls[string(*kb)]
		if c == nil {
			// Idle: this request looks the key up for everyone who
			// arrives meanwhile.
			ek := string(*kb)
			lc := s.startLookupLocked(ek)
			s.mu.Unlock()
			return e.lead(s, lc, ek, h, req, now)
		}
		if c.expiredLocked(now) {
			// Claimed past its lease: taken over. Its lease record stays
			// in storage until the lookup that follows replaces it.
			e.takeOverUnlock(s, string(*kb), c)
			continue
		}
		if c.kind == claimCall {
			if c.fp != req.Fingerprint {
				s.mu.Unlock()
				e.st.conflicts.Add(1)
				return Result{Outcome: Conflict, OriginalRequestID: c.requestID}, nil
			}
			if wait == NoWait || req.Gate != nil && !admitted && !req.Gate.Enter(req.Key) {
				s.mu.Unlock()
				e.st.inprogress.Add(1)
				return Result{Outcome: InProgress, OriginalRequestID: c.requestID}, nil
			}
			admitted = admitted || req.Gate != nil
			e.st.waits.Add(1)
		}
		s.mu.Unlock()
		// Being looked up, or claimed with the same fingerprint: wait.
		if err := await(ctx, c); err != nil {
			return Result{}, err
		}
		switch c.res {
		case stored:
			if res, ok := e.answerStored(c.rec, req, e.clock.Now()); ok {
				return res, nil
			}
		case closing:
			return Result{}, ErrClosed
		}
	}
}

// lead runs the storage lookup for a key on behalf of every request that
// arrives meanwhile (they wait on lc), and answers for itself: a stored,
// live completion is cached and replayed; otherwise the key is claimed,
// recovering an interrupted claim of the same fingerprint.
//
// A stopped engine (see ErrFailed) still answers Replay and Conflict from
// what it stored, but nothing that needs a write.
func (e *Engine) lead(s *stripe, lc *call, ek string, h uint64, req Request, now time.Time) (res Result, err error) {
	if err := e.acquireRead(); err != nil {
		s.abandon(ek, lc)
		return Result{}, err
	}
	defer e.release()
	e.st.lookups.Add(1)
	loc, err := e.lookup(ek, h, now)
	if err != nil {
		s.abandon(ek, lc)
		e.st.errors.Add(1)
		return Result{}, err
	}
	var prev *record.Record
	if loc.ok {
		m := loc.meta
		switch {
		case m.State == record.Completed && m.Expired(now):
			// Expired: the key is fresh again.
		case m.State == record.Completed:
			r := loc.rec
			s.mu.Lock()
			delete(s.calls, ek)
			s.cache.put(ek, r)
			s.mu.Unlock()
			lc.resolve(stored, r)
			res, _ := e.answerStored(r, req, now)
			return res, nil
		default:
			// A claimed record with no claim in memory: its holder is
			// gone (an earlier process, or a claim that lost its lease).
			prev = loc.rec
			if m.Fingerprint != req.Fingerprint {
				s.abandon(ek, lc)
				e.st.conflicts.Add(1)
				return Result{Outcome: Conflict, Record: prev, OriginalRequestID: prev.RequestID}, nil
			}
		}
	}
	if err := e.writable(); err != nil {
		s.abandon(ek, lc)
		e.st.errors.Add(1)
		return Result{}, err
	}
	cl, err := e.claim(ek, h, req, now, loc, prev)
	if err != nil {
		s.abandon(ek, lc)
		e.st.errors.Add(1)
		return Result{}, err
	}
	s.mu.Lock()
	s.calls[ek] = cl.c
	s.mu.Unlock()
	lc.resolve(retry, nil)
	e.st.proceeds.Add(1)
	e.st.claims.Add(1)
	if prev != nil {
		e.st.recovered.Add(1)
	}
	return Result{Outcome: Proceed, Claim: &cl.claim, Recovered: prev != nil, Record: prev}, nil
}

// answerStored turns a completed record (shared, read-only) into Replay or
// Conflict for req; ok is false if the record has expired at now.
func (e *Engine) answerStored(r *record.Record, req Request, now time.Time) (Result, bool) {
	res, ok := answerStored(r, req, now)
	switch {
	case !ok:
	case res.Outcome == Replay:
		e.st.replays.Add(1)
	default:
		e.st.conflicts.Add(1)
	}
	return res, ok
}

// answerStored is Engine.answerStored without the counting.
func answerStored(r *record.Record, req Request, now time.Time) (Result, bool) {
	if r.Expired(now) {
		return Result{}, false
	}
	if r.Fingerprint != req.Fingerprint {
		return Result{Outcome: Conflict, Record: r.WithoutBody(), OriginalRequestID: r.RequestID}, true
	}
	return Result{Outcome: Replay, Record: r}, true
}

// claim writes the lease record of a new claim and returns the claim.
// loc is what storage held (an interrupted claim, or an expired record,
// or nothing); prev the interrupted claim this one recovers, if any.
func (e *Engine) claim(ek string, h uint64, req Request, now time.Time, loc located, prev *record.Record) (*localClaim, error) {
	token := e.tokens.Add(1)
	lc := &localClaim{e: e, ek: ek, h: h}
	cl := &lc.claim
	*cl = Claim{
		b: lc, key: req.Key, fp: req.Fingerprint, requestID: req.RequestID,
		token: token, attempt: 1, createdAt: now,
	}
	if prev != nil {
		cl.attempt = prev.Attempt + 1
		cl.createdAt = prev.CreatedAt
		cl.checkpoint = prev.Checkpoint
	}
	lease := lc.lease(now, cl.checkpoint)
	lc.gen = e.gens.Of(lease.ExpiresAt)
	if err := e.writeRecord(ek, h, lease, lc.gen, loc, false); err != nil {
		return nil, err
	}
	lc.c = &call{
		kind: claimCall, fp: req.Fingerprint, requestID: req.RequestID, token: token,
		leaseUntil: lease.Lease.ExpiresAt.UnixNano(),
	}
	return lc, nil
}

// Claim is the exclusive right to run a request for a key, returned with
// Proceed. Exactly one of Complete or Release must follow. A Claim's
// methods are safe to call from any goroutine, but not concurrently with
// each other.
//
// Every store hands out the same Claim: it keeps the rules that hold for
// all of them (Complete or Release once, Checkpoint only before) and
// calls the store's ClaimBackend for the rest, as database/sql's types
// call a driver.
type Claim struct {
	b          ClaimBackend
	key        record.Key
	fp         record.Fingerprint
	requestID  string
	token      uint64
	attempt    uint32
	createdAt  time.Time
	checkpoint *record.Checkpoint
	finished   atomic.Bool
}

// ClaimBackend is the store side of a Claim. Complete and Release have the
// meaning documented on Claim; Claim calls them at most once in total per
// claim, and Checkpoint only before them; Claim has already refused a
// status outside 100-999 (ErrInvalid). The one exception: a Complete
// that refuses the response with an error matching ErrInvalid or
// ErrTooLarge must have changed nothing, and the claim stays open for
// another Complete or a Release. A backend fences its claims itself:
// Complete, Release and Checkpoint of a claim whose lease was taken over
// fail with ErrLeaseLost, even if the record was deleted and claimed again
// since.
type ClaimBackend interface {
	Complete(ctx context.Context, resp Response) error
	Release(ctx context.Context) error
	// Checkpoint records cp durably in the claim (see Claim.Checkpoint);
	// Complete must store the last one with the response.
	Checkpoint(ctx context.Context, cp record.Checkpoint) error
}

// ClaimInfo describes a claim that a store made (see NewClaim).
type ClaimInfo struct {
	Key         record.Key
	Fingerprint record.Fingerprint
	RequestID   string
	Attempt     uint32
	Token       uint64
	CreatedAt   time.Time
	Checkpoint  *record.Checkpoint
}

// NewClaim returns a Claim whose Complete, Release and Checkpoint are b's,
// for a store other than Engine to hand out in Result.Claim.
func NewClaim(b ClaimBackend, info ClaimInfo) *Claim {
	return &Claim{
		b: b, key: info.Key, fp: info.Fingerprint, requestID: info.RequestID,
		attempt: info.Attempt, token: info.Token, createdAt: info.CreatedAt, checkpoint: info.Checkpoint,
	}
}

// Key returns the claimed key.
func (c *Claim) Key() record.Key { return c.key }

// RequestID returns the request id given to Begin.
func (c *Claim) RequestID() string { return c.requestID }

// Attempt returns 1 for a first claim, and one more for each recovery.
func (c *Claim) Attempt() uint32 { return c.attempt }

// Token returns the claim's token. For the embedded Engine it is unique
// among the claims of this process and fences them; other stores number
// the attempts on a record with it (1, then +1 at each takeover) and fence
// with an id of their own (see ClaimBackend).
func (c *Claim) Token() uint64 { return c.token }

// LastCheckpoint returns the claim's last recovery point: the one this
// claim recorded, or else the one it recovered from an interrupted
// attempt; nil if there is none. It is read-only.
func (c *Claim) LastCheckpoint() *record.Checkpoint { return c.checkpoint }

// Response is what Complete stores for replay.
type Response struct {
	Status int
	Header []record.Header
	Body   []byte
	// RequestID, if set, replaces the claim's request id in the stored
	// record (for example the id the handler itself assigned).
	RequestID string
	// TTL, if set, is how long this record is replayed, from its
	// completion, instead of the store's TTL (Options.TTL): a route whose
	// retries come within minutes need not keep its responses for a day.
	// It is at most the store's TTL (a longer one is cut to it: the
	// embedded engine's generations are sized by it). Negative is
	// invalid.
	TTL time.Duration
}

// Complete stores resp as the key's record and releases the claim. Every
// request waiting on the key then gets Replay (or Conflict). In the Synced
// mode it returns once the record is fsynced; the key stays locked until
// then, so no one can see a record that a crash could still lose. The
// caller may reuse resp's slices after the call. ctx is not used to
// interrupt the write, which cannot be undone halfway.
//
// A response refused before anything was written (ErrInvalid: a status
// outside 100-999; ErrTooLarge: a body over the store's limit) leaves the
// claim held, for another Complete or a Release.
func (c *Claim) Complete(ctx context.Context, resp Response) error {
	return c.CompleteWith(resp, func(b ClaimBackend) error { return b.Complete(ctx, resp) })
}

// CompleteWith is Complete through complete instead of the store's
// Complete, for a store's other ways of completing a claim (such as
// pgstore's CompleteTx, which completes it inside the caller's database
// transaction). The rules of Complete hold: it returns ErrClaimDone after
// Complete or Release, refuses an invalid resp, and leaves the claim held
// if complete refuses resp with an error matching ErrInvalid or
// ErrTooLarge (it must then have written nothing). complete is given the
// store's backend of the claim.
func (c *Claim) CompleteWith(resp Response, complete func(ClaimBackend) error) error {
	if c.finished.Swap(true) {
		return ErrClaimDone
	}
	var err error
	switch {
	case resp.Status < 100 || resp.Status > 999:
		err = fmt.Errorf("%w: status %d", ErrInvalid, resp.Status)
	case resp.TTL < 0:
		err = fmt.Errorf("%w: TTL %v", ErrInvalid, resp.TTL)
	default:
		err = complete(c.b)
	}
	if errors.Is(err, ErrInvalid) || errors.Is(err, ErrTooLarge) {
		c.finished.Store(false) // refused, nothing written: the claim is still held
	}
	return err
}

// Release gives the claim up without storing a response, so that a retry
// runs the request again. Waiting requests wake and one of them proceeds.
func (c *Claim) Release(ctx context.Context) error {
	if c.finished.Swap(true) {
		return ErrClaimDone
	}
	return c.b.Release(ctx)
}

// Checkpoint records a recovery point: phase names a step of the handler
// that has happened (its side effect is done), data is what the rest of
// the handler needs to know about it (an inserted row's id, a charge id).
// It returns once the point is as durable as a completed record (fsynced
// in the Synced mode). If the process crashes later, the claim that
// recovers the key (Proceed with Recovered) carries the last point
// (LastCheckpoint, and Result.Record.Checkpoint), so the handler can skip
// the steps that already happened. Complete stores the last point with
// the response; it expires with the record. Each call replaces the
// previous point, and renews the lease.
//
// Call it from the goroutine that holds the claim, before Complete or
// Release. It fails with ErrInvalid for an empty phase, ErrLeaseLost if
// the claim was taken over, with ErrClaimDone after Complete or Release,
// and with ErrTooLarge for a phase over record.MaxPhaseLen or data over
// record.MaxCheckpointData bytes. The caller may reuse data after the
// call.
func (c *Claim) Checkpoint(ctx context.Context, phase string, data []byte) error {
	if phase == "" {
		return fmt.Errorf("%w: empty checkpoint phase", ErrInvalid)
	}
	if len(phase) > record.MaxPhaseLen || len(data) > record.MaxCheckpointData {
		return fmt.Errorf("%w: checkpoint phase of %d bytes, data of %d (max %d and %d)",
			ErrTooLarge, len(phase), len(data), record.MaxPhaseLen, record.MaxCheckpointData)
	}
	if c.finished.Load() {
		return ErrClaimDone
	}
	cp := &record.Checkpoint{Phase: phase, Data: bytes.Clone(data)}
	if err := c.b.Checkpoint(ctx, *cp); err != nil {
		return err
	}
	c.checkpoint = cp
	return nil
}

// localClaim is the embedded engine's ClaimBackend: the claim's call in
// its stripe (what the other requests for the key see) and its lease
// record in storage (what a restart sees).
type localClaim struct {
	e     *Engine
	c     *call
	ek    string
	h     uint64 // hash of ek
	gen   uint32 // generation of the lease record
	claim Claim  // handed out to the caller; its backend is this localClaim
}

// lease returns the claim's lease record at now, carrying cp.
func (lc *localClaim) lease(now time.Time, cp *record.Checkpoint) *record.Record {
	e, cl := lc.e, &lc.claim
	return &record.Record{
		State: record.Claimed, RequestID: cl.requestID, Fingerprint: cl.fp,
		Attempt: cl.attempt, CreatedAt: cl.createdAt, ExpiresAt: now.Add(e.ttl),
		Lease:      record.Lease{Owner: e.incarnation, Token: cl.token, ExpiresAt: now.Add(e.opts.Lease)},
		Checkpoint: cp,
	}
}

// Complete implements ClaimBackend: claimed -> completing -> completed.
func (lc *localClaim) Complete(ctx context.Context, resp Response) error {
	e, cl := lc.e, &lc.claim
	if len(resp.Body) > e.opts.MaxBodySize {
		return fmt.Errorf("%w: body is %d bytes (max %d)", ErrTooLarge, len(resp.Body), e.opts.MaxBodySize)
	}
	reqID := cl.requestID
	if resp.RequestID != "" {
		reqID = resp.RequestID
	}
	now := e.clock.Now()
	ttl := e.ttl
	if resp.TTL > 0 && resp.TTL < ttl {
		ttl = resp.TTL
	}
	r := &record.Record{
		State: record.Completed, RequestID: reqID, Fingerprint: cl.fp, Attempt: cl.attempt,
		Status: resp.Status, Header: resp.Header, Body: resp.Body,
		CreatedAt: cl.createdAt, CompletedAt: now, ExpiresAt: now.Add(ttl),
		Lease:      record.Lease{Owner: e.incarnation, Token: cl.token},
		Checkpoint: cl.checkpoint,
	}
	vb := getBuf()
	defer putBuf(vb)
	val, err := e.encode((*vb)[:0], r)
	if err != nil {
		return err
	}
	*vb = val // the batch copies it; the buffer goes back to the pool
	if err := lc.finishing(); err != nil {
		return err
	}
	defer e.release()
	gen := e.gens.Of(r.ExpiresAt)
	if err := e.writeValue(lc.ek, lc.h, val, gen, lc.gen, true); err != nil {
		e.st.errors.Add(1)
		lc.abort()
		return err
	}
	// What Begin hands out from now on: a copy that shares nothing with
	// the caller's resp.
	shared := r.Clone()
	s := e.stripeFor(lc.ek)
	s.mu.Lock()
	if s.calls[lc.ek] == lc.c {
		delete(s.calls, lc.ek)
		s.cache.put(lc.ek, shared) // only with no call left for the key: see Begin
	}
	s.mu.Unlock()
	lc.c.resolve(stored, shared)
	e.st.completes.Add(1)
	e.st.claims.Add(-1)
	return nil
}

// Release implements ClaimBackend: claimed -> idle, the lease deleted.
func (lc *localClaim) Release(ctx context.Context) error {
	e := lc.e
	if err := lc.finishing(); err != nil {
		return err
	}
	defer e.release()
	err := e.deleteRecord(lc.ek, lc.gen)
	lc.abort() // remove the claim and wake waiters either way
	if err != nil {
		// The lease stays in storage; the next Begin recovers it.
		e.st.errors.Add(1)
		return err
	}
	e.st.releases.Add(1)
	return nil
}

// Checkpoint implements ClaimBackend: claimed -> claimed, with a new lease
// record that carries cp and a renewed lease.
func (lc *localClaim) Checkpoint(ctx context.Context, cp record.Checkpoint) error {
	e := lc.e
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.release()
	now := e.clock.Now()
	s := e.stripeFor(lc.ek)
	s.mu.Lock()
	if lc.c.lost || s.calls[lc.ek] != lc.c || lc.c.expiredLocked(now) {
		s.mu.Unlock()
		e.st.leasesLost.Add(1)
		return ErrLeaseLost
	}
	lc.c.saving = true // no takeover while the lease is rewritten
	s.mu.Unlock()
	lease := lc.lease(now, &cp)
	gen := e.gens.Of(lease.ExpiresAt)
	err := e.writeRecord(lc.ek, lc.h, lease, gen, located{ok: true, gen: lc.gen}, true)
	s.mu.Lock()
	lc.c.saving = false
	if err == nil {
		lc.c.leaseUntil = lease.Lease.ExpiresAt.UnixNano()
		lc.gen = gen
	}
	s.mu.Unlock()
	if err != nil {
		e.st.errors.Add(1)
	}
	return err
}

// finishing moves the claim to completing, so that its lease cannot be
// taken over while Complete or Release writes, after checking that it is
// still held; then it acquires the store. On success the caller must call
// e.release.
func (lc *localClaim) finishing() error {
	e := lc.e
	if e.closed.Load() {
		return ErrClosed
	}
	s := e.stripeFor(lc.ek)
	s.mu.Lock()
	if lc.c.lost || s.calls[lc.ek] != lc.c {
		s.mu.Unlock()
		e.st.leasesLost.Add(1)
		return ErrLeaseLost
	}
	lc.c.completing = true
	s.mu.Unlock()
	if err := e.acquire(); err != nil {
		lc.abort()
		return err
	}
	return nil
}

// abort removes the claim from memory and wakes its waiters to look again.
func (lc *localClaim) abort() {
	e := lc.e
	s := e.stripeFor(lc.ek)
	s.mu.Lock()
	held := s.calls[lc.ek] == lc.c
	if held {
		e.forgetClaim(lc.ek)
		delete(s.calls, lc.ek)
	}
	s.mu.Unlock()
	if held {
		lc.c.resolve(retry, nil)
		e.st.claims.Add(-1)
	}
}
