package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/internal/sharedstore"
	"github.com/idemkv/idemkv/record"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// claim is the PostgreSQL side of an engine.Claim: it renews the lease
// until Complete or Release (or MaxHold), which are fenced by the claim
// id.
type claim struct {
	s     *Store
	ek    []byte // the row's key
	cid   string // the claim id in the row (see schema.go)
	info  engine.ClaimInfo
	start time.Time
	stop  func() // ends the renewals (nil if there are none)
}

// newClaim registers a claim made by the begin function and starts
// renewing it. It returns nil if the Store was closed meanwhile: the
// caller gives the claim back and answers engine.ErrClosed.
func (s *Store) newClaim(ek []byte, cid string, info engine.ClaimInfo) *claim {
	c := &claim{s: s, ek: ek, cid: cid, info: info, start: time.Now()}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return nil
	}
	if s.opts.RenewEvery > 0 {
		c.stop = c.renewal().Begin(s.ctx, s.enter, s.work.Done)
	}
	return c
}

// renewal renews the lease until the claim ends (see sharedstore.Renewal).
// While a CompleteTx transaction holds the row's lock, a renewal waits for
// it (up to RenewEvery), then finds the claim completed and stops.
func (c *claim) renewal() sharedstore.Renewal {
	s := c.s
	return sharedstore.Renewal{Every: s.opts.RenewEvery, MaxHold: s.opts.MaxHold, Start: c.start,
		Renew: func(ctx context.Context) (bool, error) {
			tag, err := s.pool.Exec(ctx, s.sql.renew, c.ek, c.cid, s.opts.Lease.Milliseconds(), s.opts.TTL.Milliseconds())
			return tag.RowsAffected() != 0, err
		},
	}
}

func (c *claim) stopRenewing() {
	if c.stop != nil {
		c.stop()
	}
}

// end counts the claim out of Stats.Claims. engine.Claim calls Complete
// (past its refusals) or Release at most once, so end runs once.
func (c *claim) end() { c.s.st.Claims.Add(-1) }

// encode returns the completed record of resp, and its TTL.
func (c *claim) encode(resp engine.Response) (val []byte, ttl time.Duration, rid string, err error) {
	s := c.s
	if len(resp.Body) > s.opts.MaxBodySize {
		return nil, 0, "", fmt.Errorf("%w: body is %d bytes (max %d)", engine.ErrTooLarge, len(resp.Body), s.opts.MaxBodySize)
	}
	rid = c.info.RequestID
	if resp.RequestID != "" {
		rid = resp.RequestID
	}
	now := time.Now()
	ttl = s.opts.TTL
	if resp.TTL > 0 && resp.TTL < ttl {
		ttl = resp.TTL // see engine.Response.TTL
	}
	r := &record.Record{
		State: record.Completed, RequestID: rid, Fingerprint: c.info.Fingerprint, Attempt: c.info.Attempt,
		Status: resp.Status, Header: resp.Header, Body: resp.Body,
		CreatedAt: c.info.CreatedAt, CompletedAt: now, ExpiresAt: now.Add(ttl),
		Lease:      record.Lease{Token: c.info.Token},
		Checkpoint: c.info.Checkpoint,
	}
	val, err = record.Append(nil, r, s.opts.Compression)
	return val, max(ttl, time.Millisecond), rid, err
}

// Complete stores resp if the claim is still held (engine.ErrLeaseLost if
// not). A response it refuses (engine.ErrInvalid, engine.ErrTooLarge)
// leaves the claim held, to be completed or released. As with the
// embedded engine, ctx does not interrupt the write (its values are
// kept). If the write fails, the claim is given back, so that a retry
// runs at once rather than after the lease.
func (c *claim) Complete(ctx context.Context, resp engine.Response) error {
	s := c.s
	if s.closed.Load() {
		return engine.ErrClosed
	}
	val, ttl, rid, err := c.encode(resp)
	if err != nil {
		return err // ErrTooLarge: nothing was written
	}
	defer c.stopRenewing()
	defer c.end()
	ctx = context.WithoutCancel(ctx)
	n, err := c.store(ctx, s.pool, val, ttl, rid)
	return c.completed(ctx, n, err)
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// store writes the completed record val if the claim is still this
// one's: 1, or 0 if it is lost. The fast path is one update; a waiting
// Begin (w) is then notified by a second statement. Only if the update
// found no open claim of this claim id is the complete function asked
// (a repeat of this call finds its record completed, and answers 1).
func (c *claim) store(ctx context.Context, db execer, val []byte, ttl time.Duration, rid string) (int32, error) {
	s := c.s
	var waited bool
	err := db.QueryRow(ctx, s.sql.store, c.ek, c.cid, val, rid, ttl.Milliseconds()).Scan(&waited)
	switch {
	case err == nil && waited:
		_, err = db.Exec(ctx, s.sql.notify, s.channel(), notifyKey(c.ek))
		return 1, err
	case err == nil:
		return 1, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return 0, err
	}
	var n int32
	err = db.QueryRow(ctx, s.sql.complete, c.ek, c.cid, val, ttl.Milliseconds(), rid, s.channel()).Scan(&n)
	return n, err
}

// completed counts the end of a Complete whose function answered n, err;
// if it failed, it gives the claim back (fenced by the claim id: if the
// write did happen after all, the record is completed and the release
// does nothing).
func (c *claim) completed(ctx context.Context, n int32, err error) error {
	s := c.s
	switch {
	case err != nil:
		_, _ = s.pool.Exec(ctx, s.sql.release, c.ek, c.cid, s.channel())
		err = s.queryErr("complete", ctx, err)
		s.st.CountErr(err)
		return err
	case n == 0:
		s.st.LeasesLost.Add(1)
		return engine.ErrLeaseLost
	}
	s.st.Completes.Add(1)
	return nil
}

// completeTx is CompleteTx for this claim: the record is written inside
// tx, which is then committed.
func (c *claim) completeTx(ctx context.Context, tx pgx.Tx, resp engine.Response) error {
	s := c.s
	if s.closed.Load() {
		return engine.ErrClosed
	}
	val, ttl, rid, err := c.encode(resp)
	if err != nil {
		return err // ErrTooLarge: nothing was written; tx is the caller's still
	}
	defer c.stopRenewing()
	defer c.end()
	ctx = context.WithoutCancel(ctx)
	n, err := c.store(ctx, tx, val, ttl, rid)
	if err == nil && n == 0 {
		_ = tx.Rollback(ctx)
		s.st.LeasesLost.Add(1)
		return engine.ErrLeaseLost
	}
	if err == nil {
		err = tx.Commit(ctx)
	} else {
		_ = tx.Rollback(ctx)
	}
	// A failed commit may still have committed (the connection broke
	// after the server did): the fenced release then does nothing.
	return c.completed(ctx, 1, err)
}

// Checkpoint records cp in the claim's row if the claim is still held and
// its lease has not run out (engine.ErrLeaseLost if not); Complete then
// stores it with the response.
func (c *claim) Checkpoint(ctx context.Context, cp record.Checkpoint) error {
	s := c.s
	if s.closed.Load() {
		return engine.ErrClosed
	}
	ctx = context.WithoutCancel(ctx) // the step happened: record it
	tag, err := s.pool.Exec(ctx, s.sql.checkpoint, c.ek, c.cid, cp.Phase, cp.Data,
		s.opts.Lease.Milliseconds(), s.opts.TTL.Milliseconds())
	switch {
	case err != nil:
		err = s.queryErr("checkpoint", ctx, err)
		s.st.CountErr(err)
		return err
	case tag.RowsAffected() == 0:
		s.st.LeasesLost.Add(1)
		return engine.ErrLeaseLost
	}
	c.info.Checkpoint = &cp
	return nil
}

// Release deletes the claim if it is still held, so that a retry runs
// again. A record already gone (deleted, expired) counts as released.
func (c *claim) Release(ctx context.Context) error {
	defer c.stopRenewing()
	defer c.end()
	s := c.s
	if s.closed.Load() {
		return engine.ErrClosed
	}
	ctx = context.WithoutCancel(ctx)
	var n int32
	err := s.pool.QueryRow(ctx, s.sql.release, c.ek, c.cid, s.channel()).Scan(&n)
	switch {
	case err != nil:
		err = s.queryErr("release", ctx, err)
		s.st.CountErr(err)
		return err
	case n == 0:
		s.st.LeasesLost.Add(1)
		return engine.ErrLeaseLost
	}
	s.st.Releases.Add(1)
	return nil
}
