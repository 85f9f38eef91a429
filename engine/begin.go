package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/idemkv/idemkv/codec"
	"github.com/idemkv/idemkv/expiry"
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
	// Conflict: the key is taken (completed or in flight) by a request
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

// Begin asks whether the request may run. It returns exactly one of the
// four outcomes. With the Wait policy, a request whose key is held by a
// running request with the same fingerprint blocks until that request
// completes (Replay) or releases its claim (then this one may Proceed),
// or until ctx is done (ctx.Err() is returned). Storage reads and writes
// are not interrupted by ctx.
func (e *Engine) Begin(ctx context.Context, req Request) (Result, error) {
	if err := req.Key.Validate(); err != nil {
		return Result{}, err
	}
	if req.Fingerprint.Version == 0 {
		return Result{}, fmt.Errorf("%w: fingerprint has no version", ErrInvalid)
	}
	if len(req.RequestID) > record.MaxRequestIDLen {
		return Result{}, fmt.Errorf("%w: request id is %d bytes (max %d)", ErrInvalid, len(req.RequestID), record.MaxRequestIDLen)
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
	first := true
	for {
		now := e.clock.Now()
		s.mu.Lock()
		// A cached key has no call: every path that starts a call for a
		// key (a lookup, Delete) removes its cached record first, under
		// the same lock. So a cache hit needs no other lookup.
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
		if c := s.calls[string(*kb)]; c != nil {
			if c.expiredLocked(now) {
				// Its lease record stays in storage until the lookup
				// below replaces it.
				e.takeOverUnlock(s, string(*kb), c)
				continue
			}
			if c.kind == claimCall {
				if c.fp != req.Fingerprint {
					s.mu.Unlock()
					e.st.conflicts.Add(1)
					return Result{Outcome: Conflict, OriginalRequestID: c.requestID}, nil
				}
				if wait == NoWait {
					s.mu.Unlock()
					e.st.inflight.Add(1)
					return Result{Outcome: InProgress, OriginalRequestID: c.requestID}, nil
				}
				e.st.waits.Add(1)
			}
			s.mu.Unlock()
			select {
			case <-c.wait():
			case <-ctx.Done():
				return Result{}, ctx.Err()
			}
			switch c.res {
			case stored:
				if res, ok := e.answerStored(c.rec, req, e.clock.Now()); ok {
					return res, nil
				}
			case closing:
				return Result{}, ErrClosed
			}
			continue
		}
		ek := string(*kb)
		lc := newCall(lookupCall)
		s.calls[ek] = lc
		s.mu.Unlock()
		return e.lead(s, lc, ek, h, req, now)
	}
}

// lead runs the storage lookup for a key on behalf of every request that
// arrives meanwhile (they wait on lc), and answers for itself.
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
	f, err := e.lookup(ek, h, now)
	if err != nil {
		s.abandon(ek, lc)
		e.st.errors.Add(1)
		return Result{}, err
	}
	var prev *record.Record
	if f.found {
		m := f.meta
		switch {
		case m.State == record.Completed && m.Expired(now):
			// Expired: the key is fresh again.
		case m.State == record.Completed:
			r := f.rec
			s.mu.Lock()
			delete(s.calls, ek)
			s.cache.put(ek, r)
			s.mu.Unlock()
			lc.resolve(stored, r)
			res, _ := e.answerStored(r, req, now)
			return res, nil
		default:
			// An in-flight record with no claim in memory: its holder is
			// gone (an earlier process, or a claim that lost its lease).
			prev = f.rec
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
	c, err := e.claim(ek, h, req, now, f, prev)
	if err != nil {
		s.abandon(ek, lc)
		e.st.errors.Add(1)
		return Result{}, err
	}
	s.mu.Lock()
	s.calls[ek] = c.c
	s.mu.Unlock()
	lc.resolve(retry, nil)
	e.st.proceeds.Add(1)
	e.st.claims.Add(1)
	if prev != nil {
		e.st.recovered.Add(1)
	}
	return Result{Outcome: Proceed, Claim: c, Recovered: prev != nil, Record: prev}, nil
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
// found describes what storage held (an interrupted claim, or an expired
// record, or nothing).
func (e *Engine) claim(ek string, h uint64, req Request, now time.Time, f found, prev *record.Record) (*Claim, error) {
	token := e.tokens.Add(1)
	cl := &Claim{
		e: e, ek: ek, h: h, key: req.Key, fp: req.Fingerprint, requestID: req.RequestID,
		token: token, attempt: 1, createdAt: now,
	}
	if prev != nil {
		cl.attempt = prev.Attempt + 1
		cl.createdAt = prev.CreatedAt
		cl.checkpoint = prev.Checkpoint
	}
	lease := &record.Record{
		State: record.Claimed, RequestID: req.RequestID, Fingerprint: req.Fingerprint,
		Attempt: cl.attempt, CreatedAt: cl.createdAt, ExpiresAt: now.Add(e.ttl),
		Lease:      record.Lease{Owner: e.incarnation, Token: token, ExpiresAt: now.Add(e.opts.Lease)},
		Checkpoint: cl.checkpoint,
	}
	cl.gen = e.gens.Of(lease.ExpiresAt)
	if err := e.writeRecord(ek, h, lease, cl.gen, f, false); err != nil {
		return nil, err
	}
	cl.c = &call{
		kind: claimCall, fp: req.Fingerprint, requestID: req.RequestID, token: token,
		leaseUntil: lease.Lease.ExpiresAt.UnixNano(),
	}
	return cl, nil
}

// writeRecord stores r under ek (whose hash is h) in generation gen,
// deleting the copy that f found in another generation, and waits for
// durability if durable.
func (e *Engine) writeRecord(ek string, h uint64, r *record.Record, gen uint32, f found, durable bool) error {
	vb := getBuf()
	defer putBuf(vb)
	val, err := record.Append((*vb)[:0], r, e.bodyMethod(len(r.Body)))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	*vb = val
	b := e.db.NewBatch()
	defer b.Close()
	kb := getBuf()
	defer putBuf(kb)
	*kb = append(expiry.AppendPrefix((*kb)[:0], gen), ek...)
	_ = b.Set(*kb, val, nil)
	e.filt.add(gen, h)
	if f.found && f.gen != gen {
		*kb = append(expiry.AppendPrefix((*kb)[:0], f.gen), ek...)
		_ = b.Delete(*kb, nil)
	}
	if err := e.commit(b, durable); err != nil {
		return err
	}
	e.noteGen(gen)
	return nil
}

// commit applies b. A durable commit in the Synced mode returns once
// Pebble has fsynced the log (pebble.Sync: Pebble's log writer serves every
// commit waiting for a sync with one fsync, so concurrent completions share
// them). Every other commit returns once the batch is in Pebble's log
// buffer and memtable (pebble.NoSync), and kicks the background log syncer,
// which has it on disk within about one fsync (see syncLoop).
//
// Pebble does every fsync of its log itself; the engine's syncer proves
// each one in the log (see walcheck.go), so that Open can tell a torn tail
// from damage to acknowledged bytes. See "Durability modes" in the package
// doc.
//
// A commit whose log write failed (see package walfs) is visible in
// Pebble's memtable but not in its log; the engine stops (ErrFailed) at
// once so that nothing after it is acknowledged. The stopped engine goes
// on replaying what it stored, but never the keys of a failed commit
// (markUnwritten, before commit returns; until then the key stays claimed,
// so Begin and Get do not read it; a Scan may list it).
func (e *Engine) commit(b *pebble.Batch, durable bool) (err error) {
	defer func() {
		if err != nil {
			e.markUnwritten(b)
		}
	}()
	defer e.guard(&err)
	synced := durable && e.opts.Durability == Synced
	wo := pebble.NoSync
	if synced {
		wo = pebble.Sync
	}
	if err := e.db.Apply(b, wo); err != nil {
		if ferr := e.Err(); ferr != nil {
			return ferr
		}
		return storageErr("write", err)
	}
	if err := e.Err(); err != nil {
		return err
	}
	e.commits.Add(1)
	if !synced {
		e.unsynced.Store(true)
		e.kickSync()
	}
	return nil
}

func (e *Engine) noteGen(gen uint32) {
	for {
		m := e.maxGen.Load()
		if gen <= m || e.maxGen.CompareAndSwap(m, gen) {
			return
		}
	}
}

// Claim is the exclusive right to run a request for a key, returned with
// Proceed. Exactly one of Complete or Release must follow. A Claim's
// methods are safe to call from any goroutine, but not concurrently with
// each other.
type Claim struct {
	e          *Engine
	c          *call
	ek         string
	h          uint64 // hash of ek
	key        record.Key
	fp         record.Fingerprint
	requestID  string
	token      uint64
	attempt    uint32
	gen        uint32 // generation of the lease record
	createdAt  time.Time
	checkpoint *record.Checkpoint
	finished   atomic.Bool
	ext        ClaimBackend // set for claims of other stores (NewClaim)
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

// Response is what Complete stores for replay.
type Response struct {
	Status int
	Header []record.Header
	Body   []byte
	// RequestID, if set, replaces the claim's request id in the stored
	// record (for example the id the handler itself assigned).
	RequestID string
}

// Complete stores resp as the key's record and releases the claim. Every
// request waiting on the key then gets Replay (or Conflict). In the Synced
// mode it returns once the record is fsynced; the key stays locked until
// then, so no one can see a record that a crash could still lose. The
// caller may reuse resp's slices after the call. ctx is not used to
// interrupt the write, which cannot be undone halfway.
func (c *Claim) Complete(ctx context.Context, resp Response) error {
	if c.ext != nil {
		if c.finished.Swap(true) {
			return ErrClaimDone
		}
		err := c.ext.Complete(ctx, resp)
		if errors.Is(err, ErrInvalid) || errors.Is(err, ErrTooLarge) {
			c.finished.Store(false) // refused, nothing written: the claim is still held
		}
		return err
	}
	e := c.e
	if resp.Status < 100 || resp.Status > 999 {
		return fmt.Errorf("%w: status %d", ErrInvalid, resp.Status)
	}
	if len(resp.Body) > e.opts.MaxBodySize {
		return fmt.Errorf("%w: body is %d bytes (max %d)", ErrTooLarge, len(resp.Body), e.opts.MaxBodySize)
	}
	reqID := c.requestID
	if resp.RequestID != "" {
		reqID = resp.RequestID
	}
	now := e.clock.Now()
	r := &record.Record{
		State: record.Completed, RequestID: reqID, Fingerprint: c.fp, Attempt: c.attempt,
		Status: resp.Status, Header: resp.Header, Body: resp.Body,
		CreatedAt: c.createdAt, CompletedAt: now, ExpiresAt: now.Add(e.ttl),
		Lease:      record.Lease{Owner: e.incarnation, Token: c.token},
		Checkpoint: c.checkpoint,
	}
	vb := getBuf()
	defer putBuf(vb)
	val, err := record.Append((*vb)[:0], r, e.bodyMethod(len(r.Body)))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	*vb = val // the batch copies it; the buffer goes back to the pool
	if err := c.start(); err != nil {
		return err
	}
	defer e.release()
	gen := e.gens.Of(r.ExpiresAt)
	b := e.db.NewBatch()
	defer b.Close()
	kb := getBuf()
	defer putBuf(kb)
	*kb = append(expiry.AppendPrefix((*kb)[:0], gen), c.ek...)
	_ = b.Set(*kb, val, nil)
	e.filt.add(gen, c.h)
	if c.gen != gen {
		*kb = append(expiry.AppendPrefix((*kb)[:0], c.gen), c.ek...)
		_ = b.Delete(*kb, nil)
	}
	if err := e.commit(b, true); err != nil {
		e.st.errors.Add(1)
		c.abort()
		return err
	}
	e.noteGen(gen)
	// What Begin hands out from now on: a copy that shares nothing with
	// the caller's resp.
	shared := r.Clone()
	s := e.stripeFor(c.ek)
	s.mu.Lock()
	if s.calls[c.ek] == c.c {
		delete(s.calls, c.ek)
		s.cache.put(c.ek, shared) // only with no call left for the key: see Begin
	}
	s.mu.Unlock()
	c.c.resolve(stored, shared)
	e.st.completes.Add(1)
	e.st.claims.Add(-1)
	return nil
}

// Release gives the claim up without storing a response, so that a retry
// runs the request again. Waiting requests wake and one of them proceeds.
func (c *Claim) Release(ctx context.Context) error {
	if c.ext != nil {
		if c.finished.Swap(true) {
			return ErrClaimDone
		}
		return c.ext.Release(ctx)
	}
	e := c.e
	if err := c.start(); err != nil {
		return err
	}
	defer e.release()
	b := e.db.NewBatch()
	defer b.Close()
	kb := getBuf()
	defer putBuf(kb)
	*kb = append(expiry.AppendPrefix((*kb)[:0], c.gen), c.ek...)
	_ = b.Delete(*kb, nil)
	err := e.commit(b, false)
	c.abort() // remove the claim and wake waiters either way
	if err != nil {
		// The lease stays in storage; the next Begin recovers it.
		e.st.errors.Add(1)
		return err
	}
	e.st.releases.Add(1)
	return nil
}

// start begins finishing the claim (see begin) and acquires the store;
// on success the caller must call e.release.
func (c *Claim) start() error {
	if err := c.begin(); err != nil {
		return err
	}
	if err := c.e.acquire(); err != nil {
		c.abort()
		return err
	}
	return nil
}

// begin marks the claim as finishing, so that its lease cannot be taken
// over while it writes, and checks that it is still held.
func (c *Claim) begin() error {
	if c.finished.Swap(true) {
		return ErrClaimDone
	}
	e := c.e
	if e.closed.Load() {
		return ErrClosed
	}
	s := e.stripeFor(c.ek)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.c.lost || s.calls[c.ek] != c.c {
		e.st.leasesLost.Add(1)
		return ErrLeaseLost
	}
	c.c.completing = true
	return nil
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
// Release. It fails with ErrInvalid for an empty phase, ErrLeaseLost if the claim was taken over, with
// ErrClaimDone after Complete or Release, and with ErrTooLarge for a
// phase over record.MaxPhaseLen or data over record.MaxCheckpointData
// bytes. The caller may reuse data after the call.
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
	if c.ext != nil {
		if err := c.ext.Checkpoint(ctx, *cp); err != nil {
			return err
		}
		c.checkpoint = cp
		return nil
	}
	e := c.e
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.release()
	now := e.clock.Now()
	s := e.stripeFor(c.ek)
	s.mu.Lock()
	if c.c.lost || s.calls[c.ek] != c.c || c.c.expiredLocked(now) {
		s.mu.Unlock()
		e.st.leasesLost.Add(1)
		return ErrLeaseLost
	}
	c.c.saving = true
	s.mu.Unlock()
	lease := &record.Record{
		State: record.Claimed, RequestID: c.requestID, Fingerprint: c.fp,
		Attempt: c.attempt, CreatedAt: c.createdAt, ExpiresAt: now.Add(e.ttl),
		Lease:      record.Lease{Owner: e.incarnation, Token: c.token, ExpiresAt: now.Add(e.opts.Lease)},
		Checkpoint: cp,
	}
	gen := e.gens.Of(lease.ExpiresAt)
	err := e.writeRecord(c.ek, c.h, lease, gen, found{found: true, gen: c.gen}, true)
	s.mu.Lock()
	c.c.saving = false
	if err == nil {
		c.c.leaseUntil = lease.Lease.ExpiresAt.UnixNano()
		c.gen, c.checkpoint = gen, cp
	}
	s.mu.Unlock()
	if err != nil {
		e.st.errors.Add(1)
	}
	return err
}

// LastCheckpoint returns the claim's last recovery point: the one this
// claim recorded, or else the one it recovered from an interrupted
// attempt; nil if there is none. It is read-only.
func (c *Claim) LastCheckpoint() *record.Checkpoint { return c.checkpoint }

// abort removes the claim from memory and wakes its waiters to look again.
func (c *Claim) abort() {
	e := c.e
	s := e.stripeFor(c.ek)
	s.mu.Lock()
	held := s.calls[c.ek] == c.c
	if held {
		delete(s.calls, c.ek)
	}
	s.mu.Unlock()
	if held {
		c.c.resolve(retry, nil)
		e.st.claims.Add(-1)
	}
}

// bufPool holds scratch buffers for keys and values. A buffer is never
// returned to the pool while anything still refers to it.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return
	}
	bufPool.Put(b)
}

// blockCompressBelow is the body size below which the default compression
// (codec.Auto) stores a body as it is and leaves it to Pebble, which
// compresses it with its neighbours in 32 KiB blocks (see Open).
const blockCompressBelow = 16 << 10

// bodyMethod returns how to store a body of n bytes.
func (e *Engine) bodyMethod(n int) codec.Method {
	if e.opts.Compression == codec.Auto && n < blockCompressBelow {
		return codec.None
	}
	return e.opts.Compression
}
