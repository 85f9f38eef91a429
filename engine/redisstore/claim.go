package redisstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// claim is the Redis side of an engine.Claim: it renews the lease until
// Complete or Release, which are fenced by the token.
type claim struct {
	s    *Store
	rk   string
	info engine.ClaimInfo
	done chan struct{} // closed to stop renewing
	once sync.Once
}

func (s *Store) newClaim(rk string, info engine.ClaimInfo) *claim {
	c := &claim{s: s, rk: rk, info: info, done: make(chan struct{})}
	if s.opts.RenewEvery > 0 {
		s.claims.Add(1)
		go c.renew()
	}
	return c
}

// renew extends the lease every RenewEvery until the claim ends, the lease
// is lost or the Store closes. A failed renewal is retried at the next
// tick; if the lease runs out meanwhile, another replica may take the key
// over and Complete will fail with engine.ErrLeaseLost.
func (c *claim) renew() {
	defer c.s.claims.Done()
	t := time.NewTicker(c.s.opts.RenewEvery)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-c.s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), c.s.opts.RenewEvery)
			n, err := renewScript.Run(ctx, c.s.c, []string{c.rk}, c.info.Token, c.s.opts.Lease.Milliseconds()).Int64()
			cancel()
			if err == nil && n == 0 {
				return // lost: someone took the key over
			}
		}
	}
}

func (c *claim) stopRenewing() { c.once.Do(func() { close(c.done) }) }

// Complete stores resp if the claim is still held (engine.ErrLeaseLost if
// not).
func (c *claim) Complete(ctx context.Context, resp engine.Response) error {
	defer c.stopRenewing()
	s := c.s
	if s.closed.Load() {
		return engine.ErrClosed
	}
	if resp.Status < 100 || resp.Status > 999 {
		return fmt.Errorf("%w: status %d", engine.ErrInvalid, resp.Status)
	}
	if len(resp.Body) > s.opts.MaxBodySize {
		return fmt.Errorf("%w: body is %d bytes (max %d)", engine.ErrTooLarge, len(resp.Body), s.opts.MaxBodySize)
	}
	rid := c.info.RequestID
	if resp.RequestID != "" {
		rid = resp.RequestID
	}
	now := time.Now()
	r := &record.Record{
		State: record.Completed, RequestID: rid, Fingerprint: c.info.Fingerprint, Attempt: c.info.Attempt,
		Status: resp.Status, Header: resp.Header, Body: resp.Body,
		CreatedAt: c.info.CreatedAt, CompletedAt: now, ExpiresAt: now.Add(s.opts.TTL),
		Lease:      record.Lease{Token: c.info.Token},
		Checkpoint: c.info.Checkpoint,
	}
	val, err := record.Append(nil, r, s.opts.Compression)
	if err != nil {
		return fmt.Errorf("%w: %w", engine.ErrTooLarge, err)
	}
	n, err := completeScript.Run(ctx, s.c, []string{c.rk}, c.info.Token, val, s.opts.TTL.Milliseconds(), rid).Int64()
	switch {
	case err != nil:
		return storageErr("complete", err)
	case n == 0:
		return engine.ErrLeaseLost
	}
	return nil
}

// Checkpoint records cp in the claim's hash if the claim is still held
// (engine.ErrLeaseLost if not); Complete then stores it with the
// response.
func (c *claim) Checkpoint(ctx context.Context, cp record.Checkpoint) error {
	if c.s.closed.Load() {
		return engine.ErrClosed
	}
	n, err := checkpointScript.Run(ctx, c.s.c, []string{c.rk}, c.info.Token, cp.Phase, cp.Data, c.s.opts.Lease.Milliseconds()).Int64()
	switch {
	case err != nil:
		return storageErr("checkpoint", err)
	case n == 0:
		return engine.ErrLeaseLost
	}
	c.info.Checkpoint = &cp
	return nil
}

// Release deletes the claim if it is still held, so that a retry runs
// again.
func (c *claim) Release(ctx context.Context) error {
	defer c.stopRenewing()
	if c.s.closed.Load() {
		return engine.ErrClosed
	}
	n, err := releaseScript.Run(ctx, c.s.c, []string{c.rk}, c.info.Token).Int64()
	switch {
	case err != nil:
		return storageErr("release", err)
	case n == 0:
		return engine.ErrLeaseLost
	}
	return nil
}
