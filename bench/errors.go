package bench

import "errors"

var (
	// ErrInvalid is returned by Run and ParseWorkload for an invalid
	// Config or workload name.
	ErrInvalid = errors.New("bench: invalid argument")

	// ErrUnexpectedOutcome is returned by Run when a system answers
	// differently from what the workload implies: idemkv answers anything
	// but Proceed to a fresh request, Replay to a retry or Conflict to a
	// different request, replays a wrong response, or a baseline finds a
	// fresh key or misses a stored one.
	ErrUnexpectedOutcome = errors.New("bench: unexpected outcome")
)
