package engine

import (
	"context"
	"time"

	"github.com/idemkv/idemkv/record"
)

// Store is the contract every idemkv store keeps: the embedded Engine and
// the Redis backend (package engine/redisstore) alike. Begin answers a
// request with exactly one of the four outcomes; with Proceed it hands
// out a Claim that the caller must Complete or Release. The HTTP layer
// (package idemhttp) and the proxy take a Store.
type Store interface {
	Begin(ctx context.Context, req Request) (Result, error)
}

var _ Store = (*Engine)(nil)

// ClaimBackend is the store side of a Claim made by a store other than
// Engine. Complete and Release have the meaning documented on Claim; they
// are called at most once in total per claim (Claim enforces it), and
// Checkpoint only before them. The one exception: a Complete that refuses
// the response with an error matching ErrInvalid or ErrTooLarge must have
// changed nothing, and the claim stays open for another Complete or a
// Release. A backend fences its claims itself: Complete, Release and
// Checkpoint of a claim whose lease was taken over fail with ErrLeaseLost,
// even if the record was deleted and claimed again since.
type ClaimBackend interface {
	Complete(ctx context.Context, resp Response) error
	Release(ctx context.Context) error
	// Checkpoint records cp durably in the claim (see Claim.Checkpoint);
	// Complete must store the last one with the response.
	Checkpoint(ctx context.Context, cp record.Checkpoint) error
}

// ClaimInfo describes a claim that another store made (see NewClaim).
type ClaimInfo struct {
	Key         record.Key
	Fingerprint record.Fingerprint
	RequestID   string
	Attempt     uint32
	Token       uint64
	CreatedAt   time.Time
	Checkpoint  *record.Checkpoint
}

// NewClaim returns a Claim whose Complete and Release are b's, for a
// store other than Engine to hand out in Result.Claim.
func NewClaim(b ClaimBackend, info ClaimInfo) *Claim {
	return &Claim{
		ext: b, key: info.Key, fp: info.Fingerprint, requestID: info.RequestID,
		attempt: info.Attempt, token: info.Token, createdAt: info.CreatedAt, checkpoint: info.Checkpoint,
	}
}
