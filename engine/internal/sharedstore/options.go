package sharedstore

import (
	"fmt"
	"time"

	"github.com/idemkv/idemkv/codec"
	"github.com/idemkv/idemkv/engine"
)

// Common points at the options that every shared store has, under the
// same names and with the same defaults (each store documents them on its
// own Options), for Defaults to fill in.
type Common struct {
	TTL, Lease, RenewEvery, MaxHold *time.Duration
	WhenInProgress                  *engine.WaitPolicy
	PollInterval, MaxPollInterval   *time.Duration
	MaxBodySize                     *int
	ScopeSecret                     []byte
}

// Defaults fills in the defaults of c and checks it: TTL 24h, Lease 30s,
// RenewEvery Lease/3, MaxHold 5m, WhenInProgress engine.Wait,
// PollInterval 2ms, MaxPollInterval 1s, MaxBodySize 16 MiB; ScopeSecret is
// required. Errors match engine.ErrInvalid.
func (c Common) Defaults() error {
	if *c.TTL == 0 {
		*c.TTL = 24 * time.Hour
	}
	if *c.Lease == 0 {
		*c.Lease = 30 * time.Second
	}
	if *c.RenewEvery == 0 {
		*c.RenewEvery = *c.Lease / 3
	}
	if *c.MaxHold == 0 {
		*c.MaxHold = 5 * time.Minute
	}
	if *c.WhenInProgress == engine.DefaultWait {
		*c.WhenInProgress = engine.Wait
	}
	if *c.PollInterval == 0 {
		*c.PollInterval = 2 * time.Millisecond
	}
	if *c.MaxPollInterval == 0 {
		*c.MaxPollInterval = time.Second
	}
	if *c.MaxBodySize == 0 {
		*c.MaxBodySize = 16 << 20
	}
	switch {
	case *c.TTL < time.Millisecond || *c.Lease < 3*time.Millisecond:
		return fmt.Errorf("%w: TTL %v and Lease %v must be at least 1ms and 3ms", engine.ErrInvalid, *c.TTL, *c.Lease)
	case *c.RenewEvery > *c.Lease/2:
		return fmt.Errorf("%w: RenewEvery %v must be at most half of Lease %v", engine.ErrInvalid, *c.RenewEvery, *c.Lease)
	case *c.MaxHold < 0:
		return fmt.Errorf("%w: MaxHold %v", engine.ErrInvalid, *c.MaxHold)
	case *c.WhenInProgress > engine.NoWait:
		return fmt.Errorf("%w: unknown wait policy %d", engine.ErrInvalid, *c.WhenInProgress)
	case *c.PollInterval < 0 || *c.MaxPollInterval < *c.PollInterval:
		return fmt.Errorf("%w: PollInterval %v, MaxPollInterval %v", engine.ErrInvalid, *c.PollInterval, *c.MaxPollInterval)
	case *c.MaxBodySize < 0 || *c.MaxBodySize > codec.MaxLen:
		return fmt.Errorf("%w: MaxBodySize %d", engine.ErrInvalid, *c.MaxBodySize)
	case c.ScopeSecret == nil:
		return fmt.Errorf("%w: ScopeSecret is required: a secret of at least %d bytes, the same on every replica (the credentials of requests are stored as digests keyed with it)", engine.ErrInvalid, engine.MinScopeSecretLen)
	}
	return nil
}
