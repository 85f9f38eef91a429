package idemjob

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
)

var (
	// ErrConflict is matched by the error of a call whose key was used with
	// another Input (a *ConflictError).
	ErrConflict = errors.New("idemjob: the key was used with another input")

	// ErrInProgress is matched by the error of a call that found the job
	// running and did not wait for it (NoWait). A call whose context ends
	// while it waits returns the context's error.
	ErrInProgress = errors.New("idemjob: the job is running")
)

// ConflictError reports a key used with another Input.
type ConflictError struct {
	OriginalRequestID string // the request id of the call that holds the key
}

func (e *ConflictError) Error() string {
	return ErrConflict.Error() + " (by request " + e.OriginalRequestID + ")"
}

func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// InProgressError reports a job that another call is running.
type InProgressError struct {
	RequestID string // the running call's request id
}

func (e *InProgressError) Error() string {
	return ErrInProgress.Error() + " (request " + e.RequestID + ")"
}

func (e *InProgressError) Is(target error) bool { return target == ErrInProgress }

// Permanent wraps an error that Do records as the job's outcome: every
// later call with the key gets it back (as a *Failed) without running the
// function. Errors not wrapped release the claim, so that the next
// delivery runs the job again.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanent{err: err}
}

type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }

// Failed is the recorded outcome of a job whose function returned a
// Permanent error. Only its message is stored; the first call's Failed
// also unwraps to the error itself.
type Failed struct {
	Message  string
	Attempt  uint32
	Replayed bool // from the store: the function did not run for this call
	err      error
}

func (f *Failed) Error() string { return "idemjob: the job failed permanently: " + f.Message }
func (f *Failed) Unwrap() error { return f.err }

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return "job_" + hex.EncodeToString(b[:])
}
