package engine

import (
	"context"

	"github.com/idemkv/idemkv/record"
)

// Store is what every idemkv store offers: the embedded Engine and the
// Redis store (package engine/redisstore) alike, so that the middleware,
// the proxy, metrics and tools work on any of them. Begin answers a
// request with exactly one of the four outcomes; with Proceed it hands out
// a Claim that the caller must Complete or Release. Package storetest
// checks that a store keeps this contract.
type Store interface {
	// Begin asks whether a request may run (see Engine.Begin).
	Begin(ctx context.Context, req Request) (Result, error)
	// Get returns the current record of a key: a completed record with
	// its body, or the lease of a claim. ErrNotFound if there is none.
	Get(ctx context.Context, key record.Key) (*record.Record, error)
	// Delete removes a key's record so that the next request with it runs
	// as new; ErrInProgress while a live claim holds it, ErrNotFound if
	// there was none.
	Delete(ctx context.Context, key record.Key) error
	// Stats returns the store's counters. A store leaves zero the fields
	// it does not keep (the storage gauges are the embedded engine's).
	Stats() Stats
	// Health returns nil while the store can take requests, and otherwise
	// why not (ErrClosed, ErrFailed, a storage error). It is what a
	// health check reports.
	Health(ctx context.Context) error
	// Scoper returns what turns credentials into the scopes of this
	// store's records: keyed digests under the deployment's secret, the
	// same on every replica that shares the store.
	Scoper() *Scoper
	// Close releases the store; it is idempotent. Every method returns
	// ErrClosed after it.
	Close() error
}

var _ Store = (*Engine)(nil)
