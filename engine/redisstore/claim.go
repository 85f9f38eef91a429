package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/internal/sharedstore"
	"github.com/idemkv/idemkv/record"
)

// claim is the Redis side of an engine.Claim: it renews the lease until
// Complete or Release (or MaxHold), which are fenced by the claim id.
type claim struct {
	s     *Store
	rk    string
	cid   string // the claim id in the record (see scripts.go, layout.go)
	v     *value // the claim's record in layout 2; nil in layout 1
	two   bool   // layout 2 (v != nil): fixed at the claim, so that the renewals, which run beside Checkpoint's update of v, read it without a lock
	info  engine.ClaimInfo
	start time.Time
	stop  func() // ends the renewals (nil if there are none)
}

// newClaim registers a claim made by Begin (v is its record in layout 2,
// nil in layout 1) and starts renewing it. It returns nil if the Store
// was closed meanwhile: the caller gives the claim back and answers
// engine.ErrClosed.
func (s *Store) newClaim(rk, cid string, info engine.ClaimInfo, v *value) *claim {
	c := &claim{s: s, rk: rk, cid: cid, v: v, two: v != nil, info: info, start: time.Now()}
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
func (c *claim) renewal() sharedstore.Renewal {
	s := c.s
	return sharedstore.Renewal{Every: s.opts.RenewEvery, MaxHold: s.opts.MaxHold, Start: c.start,
		Renew: func(ctx context.Context) (bool, error) {
			var n int64
			var err error
			if c.two {
				n, err = renew2Script.Run(ctx, s.c, []string{c.rk}, c.cid, (s.opts.Lease + s.opts.TTL).Milliseconds()).Int64()
			} else {
				n, err = renewScript.Run(ctx, s.c, []string{c.rk}, c.cid,
					s.opts.Lease.Milliseconds(), s.opts.TTL.Milliseconds()).Int64()
			}
			return n != 0, err
		},
	}
}

func (c *claim) stopRenewing() {
	if c.stop != nil {
		c.stop()
	}
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
	if len(resp.Body) > s.opts.MaxBodySize {
		return fmt.Errorf("%w: body is %d bytes (max %d)", engine.ErrTooLarge, len(resp.Body), s.opts.MaxBodySize)
	}
	rid := c.info.RequestID
	if resp.RequestID != "" {
		rid = resp.RequestID
	}
	now := time.Now()
	ttl := s.opts.TTL
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
	ms := max(ttl.Milliseconds(), 1)
	var val []byte
	var err error
	if c.two {
		// The completed record in layout 2: the claim's fields, then
		// the record, in one buffer.
		cv := *c.v
		cv.state, cv.ttl, cv.rid, cv.prid, cv.cp = 'c', ms, rid, "", nil
		hdr := 0
		for _, h := range resp.Header {
			hdr += len(h.Name) + len(h.Value) + 4
		}
		// Room for the record as compressed (its worst case, which s2
		// bounds by the body and a sixth), so that it is written once.
		buf := getBuf(valueMinLen + len(cv.k) + 2*len(rid) + hdr + len(resp.Body)*5/4 + 512)
		defer func() { putBuf(val) }() // go-redis has written it when Run returns
		val = appendFields(buf, &cv)
		if val, err = record.Append(val, r, s.opts.Compression); err != nil {
			return err // ErrTooLarge: nothing was written
		}
		val = sealValue(val, 0)
	} else if val, err = record.Append(nil, r, s.opts.Compression); err != nil {
		return err
	}
	defer c.stopRenewing()
	defer c.end()
	ctx = context.WithoutCancel(ctx)
	var n int64
	if c.two {
		n, err = complete2Script.Run(ctx, s.c, []string{c.rk}, c.cid, val, ms, s.channel).Int64()
	} else {
		n, err = completeScript.Run(ctx, s.c, []string{c.rk}, c.cid, val, ms, rid, s.channel).Int64()
	}
	switch {
	case err != nil:
		// Fenced by the claim id: if the write did happen after all,
		// the record is completed and this does nothing.
		_, _ = s.release(ctx, c.rk, c.cid, c.two)
		err = s.scriptErr("complete", ctx, err)
		s.st.CountErr(err)
		return err
	case n == 0:
		s.st.LeasesLost.Add(1)
		return engine.ErrLeaseLost
	}
	s.st.Completes.Add(1)
	return nil
}

// end counts the claim out of Stats.Claims. engine.Claim calls Complete
// (past its refusals) or Release at most once, so end runs once.
func (c *claim) end() { c.s.st.Claims.Add(-1) }

// Checkpoint records cp in the claim's hash if the claim is still held
// and its lease has not run out (engine.ErrLeaseLost if not); Complete
// then stores it with the response.
func (c *claim) Checkpoint(ctx context.Context, cp record.Checkpoint) error {
	s := c.s
	if s.closed.Load() {
		return engine.ErrClosed
	}
	ctx = context.WithoutCancel(ctx) // the step happened: record it
	var n int64
	var err error
	if c.two {
		cv := *c.v
		cv.cp = &cp
		n, err = checkpoint2Script.Run(ctx, s.c, []string{c.rk}, c.cid, appendValue(nil, &cv),
			(s.opts.Lease + s.opts.TTL).Milliseconds()).Int64()
		if n != 0 {
			c.v = &cv
		}
	} else {
		n, err = checkpointScript.Run(ctx, s.c, []string{c.rk}, c.cid, cp.Phase, cp.Data,
			s.opts.Lease.Milliseconds(), s.opts.TTL.Milliseconds()).Int64()
	}
	switch {
	case err != nil:
		err = s.scriptErr("checkpoint", ctx, err)
		s.st.CountErr(err)
		return err
	case n == 0:
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
	n, err := s.release(ctx, c.rk, c.cid, c.two)
	switch {
	case err != nil:
		err = s.scriptErr("release", ctx, err)
		s.st.CountErr(err)
		return err
	case n == 0:
		s.st.LeasesLost.Add(1)
		return engine.ErrLeaseLost
	}
	s.st.Releases.Add(1)
	return nil
}

// release runs the release script of the claim's layout (layout2, or 1):
// 1 if the claim is given back or gone, 0 if another holds the key.
func (s *Store) release(ctx context.Context, rk, cid string, layout2 bool) (int64, error) {
	if layout2 {
		return release2Script.Run(ctx, s.c, []string{rk}, cid, s.channel).Int64()
	}
	return releaseScript.Run(ctx, s.c, []string{rk}, cid, s.channel).Int64()
}
