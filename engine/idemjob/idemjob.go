// Package idemjob runs a function once per idempotency key, for queue
// consumers, webhook processors and scheduled jobs: what idemhttp does for
// an HTTP handler, for a Go function with a typed result.
//
//	res, err := idemjob.Do(ctx, store, idemjob.Call{Name: "send-invoice", Key: msg.ID, Input: msg.Body},
//		func(ctx context.Context, run *idemjob.Run) (Receipt, error) {
//			return sendInvoice(ctx, msg.Body)
//		})
//
// A redelivered message (the same Call) gets the stored result without
// running the function again (Result.Replayed); the same key with another
// Input is ErrConflict; a redelivery that arrives while the first runs
// waits for it (or, under NoWait, gets ErrInProgress). A function that
// returns an error is not recorded: the claim is released and the next
// delivery runs it again, unless the error is wrapped with Permanent,
// which records it so that every redelivery gets it back (as a *Failed)
// without running.
//
// A job interrupted by a crash is run again by the next delivery once its
// claim's lease is over (at once after a restart of the embedded engine),
// with Run.Recovered set and the last recovery point that the interrupted
// run saved (Run.Save), so that it can resume rather than start over.
//
// Results are encoded as JSON (Options.Codec replaces it) and stored with
// the store's TTL. Every engine.Store works: the embedded engine, Redis.
package idemjob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// Call names a job run: its record is (Scope, Name, Key), and Input is
// what a redelivery must repeat (its digest is the fingerprint).
type Call struct {
	// Scope is the tenant, if jobs of several tenants share a store; it
	// may be empty.
	Scope string
	// Name is the kind of job ("send-invoice"); it plays the part of an
	// HTTP endpoint: one key under two names is two jobs. Required.
	Name string
	// Key is the idempotency key: a message id, an event id, the date of
	// a daily job. Required; at most record.MaxKeyLen bytes.
	Key string
	// Input identifies the job's content: []byte and string are taken as
	// they are, anything else is encoded as JSON. nil is no content.
	Input any
	// RequestID names this delivery in the store (reported to conflicting
	// calls as the original); default a random id.
	RequestID string
}

// Result is what Do returns.
type Result[T any] struct {
	Value T
	// Replayed is set when Value is a stored result: the function did not
	// run for this call.
	Replayed bool
	// Attempt is the attempt that produced Value (1 for the first run; more
	// after interrupted runs).
	Attempt uint32
}

// Run is handed to the function: what it needs to resume an interrupted
// run, and a way to save recovery points.
type Run struct {
	// Recovered is set when an earlier run of the job was interrupted
	// (crashed, or its lease expired); Checkpoint is the last recovery
	// point it saved, nil if none.
	Recovered  bool
	Checkpoint *record.Checkpoint
	// Attempt numbers the runs of the job, from 1.
	Attempt uint32

	claim *engine.Claim
}

// Save records a recovery point durably in the job's claim (see
// engine.Claim.Checkpoint): a run that takes over after a crash finds it in
// Run.Checkpoint. phase names the step done (at most record.MaxPhaseLen
// bytes), data is what the next step needs (at most
// record.MaxCheckpointData).
func (r *Run) Save(ctx context.Context, phase string, data []byte) error {
	return r.claim.Checkpoint(ctx, phase, data)
}

// Codec encodes and decodes results. JSON is the default.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// JSON is the default Codec.
var JSON Codec = jsonCodec{}

// Options configure Do. The zero value (and nil) gives the defaults.
type Options struct {
	// Codec encodes results. Default JSON.
	Codec Codec
	// TTL is how long the result is replayed, from the job's end, if not
	// the store's TTL (at most the store's; see engine.Response.TTL).
	TTL time.Duration
	// WhenInProgress is what a call does while another run of the job
	// holds its key: engine.Wait (the default; bounded by ctx) or
	// engine.NoWait (ErrInProgress at once).
	WhenInProgress engine.WaitPolicy
}

// The statuses results are stored with (the store records an HTTP-like
// status with every result).
const (
	statusOK     = 200
	statusFailed = 422
)

// Do runs fn once for c, or returns what the run stored: see the package
// documentation. Errors: ErrConflict (a *ConflictError) for the same key
// with another Input; ErrInProgress under NoWait; a *Failed for a stored
// Permanent error; fn's own error (the claim released); a result that
// cannot be encoded or decoded; and the store's errors (engine.ErrStorage,
// engine.ErrCorrupt, engine.ErrClosed, a ctx error).
func Do[T any](ctx context.Context, store engine.Store, c Call, fn func(ctx context.Context, run *Run) (T, error), o *Options) (Result[T], error) {
	var zero Result[T]
	var opts Options
	if o != nil {
		opts = *o
	}
	if opts.Codec == nil {
		opts.Codec = JSON
	}
	if c.Name == "" {
		return zero, fmt.Errorf("idemjob: %w: Call.Name is required", engine.ErrInvalid)
	}
	fp, err := fingerprint(c)
	if err != nil {
		return zero, err
	}
	if c.RequestID == "" {
		c.RequestID = newRequestID()
	}
	res, err := store.Begin(ctx, engine.Request{
		Key:            record.Key{Scope: c.Scope, Endpoint: c.Name, Key: c.Key},
		Fingerprint:    fp,
		RequestID:      c.RequestID,
		WhenInProgress: opts.WhenInProgress,
	})
	if err != nil {
		return zero, err
	}
	switch res.Outcome {
	case engine.Replay:
		return decode[T](opts.Codec, res.Record)
	case engine.Conflict:
		return zero, &ConflictError{OriginalRequestID: res.OriginalRequestID}
	case engine.InProgress:
		return zero, &InProgressError{RequestID: res.OriginalRequestID}
	case engine.Proceed:
	default:
		return zero, fmt.Errorf("idemjob: the store answered %v", res.Outcome)
	}
	claim := res.Claim
	run := &Run{Recovered: res.Recovered, Checkpoint: claim.LastCheckpoint(), Attempt: claim.Attempt(), claim: claim}
	v, ferr := call(ctx, fn, run)
	var perm *permanent
	switch {
	case errors.As(ferr, &perm):
		msg := perm.err.Error()
		if err := claim.Complete(context.WithoutCancel(ctx), engine.Response{Status: statusFailed, Body: []byte(msg), TTL: opts.TTL}); err != nil {
			return zero, errors.Join(ferr, fmt.Errorf("idemjob: the failure was not recorded: %w", err))
		}
		return zero, &Failed{Message: msg, Attempt: run.Attempt, err: perm.err}
	case ferr != nil:
		if err := claim.Release(context.WithoutCancel(ctx)); err != nil {
			return zero, errors.Join(ferr, fmt.Errorf("idemjob: the claim was not released (the next delivery recovers it once its lease is over): %w", err))
		}
		return zero, ferr
	}
	body, err := opts.Codec.Marshal(v)
	if err != nil {
		_ = claim.Release(context.WithoutCancel(ctx))
		return zero, fmt.Errorf("idemjob: the result cannot be encoded (the job ran, and will run again): %w", err)
	}
	if err := claim.Complete(context.WithoutCancel(ctx), engine.Response{Status: statusOK, Body: body, TTL: opts.TTL}); err != nil {
		return zero, fmt.Errorf("idemjob: the job ran but its result was not recorded: %w", err)
	}
	return Result[T]{Value: v, Attempt: run.Attempt}, nil
}

// call runs fn, turning a panic into an error (the claim is then
// released) and re-panicking after.
func call[T any](ctx context.Context, fn func(context.Context, *Run) (T, error), run *Run) (v T, err error) {
	defer func() {
		if p := recover(); p != nil {
			_ = run.claim.Release(context.WithoutCancel(ctx))
			panic(p)
		}
	}()
	return fn(ctx, run)
}

func decode[T any](codec Codec, rec *record.Record) (Result[T], error) {
	var r Result[T]
	r.Replayed, r.Attempt = true, rec.Attempt
	switch rec.Status {
	case statusOK:
		if err := codec.Unmarshal(rec.Body, &r.Value); err != nil {
			return Result[T]{}, fmt.Errorf("idemjob: the stored result cannot be decoded: %w", err)
		}
		return r, nil
	case statusFailed:
		return Result[T]{}, &Failed{Message: string(rec.Body), Attempt: rec.Attempt, Replayed: true}
	}
	return Result[T]{}, fmt.Errorf("%w: the key holds a record of status %d, not a job's result", ErrConflict, rec.Status)
}

func fingerprint(c Call) (record.Fingerprint, error) {
	h := record.NewHasher()
	h.FieldString("idemjob")
	h.FieldString(c.Name)
	switch in := c.Input.(type) {
	case nil:
	case []byte:
		h.Write(in)
	case string:
		h.Write([]byte(in))
	default:
		b, err := json.Marshal(in)
		if err != nil {
			return record.Fingerprint{}, fmt.Errorf("idemjob: Call.Input cannot be encoded as JSON: %w", err)
		}
		h.Write(b)
	}
	return h.Sum(), nil
}
