package idemhttp

import "errors"

var (
	// ErrInvalidKey is returned by ParseKey for a key that is empty,
	// longer than MaxKeyLen, not printable ASCII, or a malformed quoted
	// string.
	ErrInvalidKey = errors.New("idemhttp: invalid idempotency key")

	// ErrMultipleKeys is returned by ParseKey when a request carries more
	// than one idempotency key (the header repeated, or two aliases with
	// different values).
	ErrMultipleKeys = errors.New("idemhttp: more than one idempotency key")

	// ErrInvalidOptions is returned by New for options that cannot work.
	ErrInvalidOptions = errors.New("idemhttp: invalid options")

	// ErrNoClaim is returned by Checkpoint for a request that the
	// middleware did not let through with a claim (no idempotency key, a
	// route without one, or a context that is not the request's).
	ErrNoClaim = errors.New("idemhttp: the request holds no idempotency claim")
)
