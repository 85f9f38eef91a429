package engine

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/idemkv/idemkv/record"
)

var (
	// ErrClosed is returned by every method of an Engine after Close, and
	// by waits that Close interrupted.
	ErrClosed = errors.New("idemkv: engine closed")

	// ErrNotFound is returned by Get and Delete when no live record exists
	// for the key.
	ErrNotFound = errors.New("idemkv: record not found")

	// ErrLeaseLost is returned by Claim.Complete and Claim.Release when the
	// claim is no longer held: its lease expired and another request took
	// the key over, or the engine was closed. Nothing is written.
	ErrLeaseLost = errors.New("idemkv: claim lease lost")

	// ErrClaimDone is returned when Complete or Release is called on a
	// claim that was already completed or released.
	ErrClaimDone = errors.New("idemkv: claim already completed or released")

	// ErrInProgress is returned by Delete when a request holds a claim on
	// the key.
	ErrInProgress = errors.New("idemkv: request in flight")

	// ErrTooLarge is returned when a response exceeds Options.MaxBodySize
	// or the record limits of package record. It is record.ErrTooLarge
	// (and codec.ErrTooLarge).
	ErrTooLarge = record.ErrTooLarge

	// ErrInvalid is returned for an invalid argument: a bad status code or
	// fingerprint, or invalid Options.
	ErrInvalid = errors.New("idemkv: invalid argument")

	// ErrCorrupt is matched by every error caused by damaged stored bytes.
	// A damaged record is reported, never replayed. It is
	// record.ErrCorrupt (and codec.ErrCorrupt).
	ErrCorrupt = record.ErrCorrupt

	// ErrInvalidKey is returned for an empty or oversized key. It is
	// record.ErrInvalidKey.
	ErrInvalidKey = record.ErrInvalidKey

	// ErrStorage is matched by every error caused by the storage under the
	// engine failing: an I/O error, a full disk, a fatal error in Pebble.
	// The request was not answered from storage; retrying later is safe.
	// Damaged bytes match ErrCorrupt instead.
	ErrStorage = errors.New("idemkv: storage failed")

	// ErrFailed is returned by every operation once the engine has
	// stopped because of a storage failure it cannot undo in place: a
	// failed write or fsync of the write-ahead log, or a fatal error in
	// Pebble (a failed MANIFEST write). Nothing is acknowledged after it;
	// replays of completed records that were acknowledged go on (Begin,
	// Get and Scan read on), everything else is refused. Everything
	// acknowledged before it is in the directory, which the engine leaves
	// untouched from then on: Close the engine and restart the process
	// once the fault is fixed (after a fatal error in Pebble the stopped
	// store keeps the directory locked until the process exits; after a
	// failed log write Close releases it and an Open in the same process
	// works). (A data directory removed or replaced while open also stops the
	// engine; then the directory at that path does not have what was
	// written.) It also matches ErrStorage; Engine.Err reports it.
	ErrFailed = errors.New("idemkv: engine stopped after a storage failure (restart the process once the fault is fixed)")

	// ErrReadOnly is returned for every write to an engine opened with
	// Options.ReadOnly.
	ErrReadOnly = errors.New("idemkv: engine opened read-only")

	// ErrNoData is returned by a read-only Open of a directory that does
	// not exist or holds no idemkv data (a Pebble store of another program
	// included).
	ErrNoData = errors.New("idemkv: no idemkv data in the directory")

	// ErrLocked is returned by Open when another process (or another
	// Engine in this one) has the directory open.
	ErrLocked = errors.New("idemkv: data directory in use by another process")

	// ErrVersion is returned when the data directory or a record was
	// written by a newer, unknown format version. It also matches
	// ErrCorrupt.
	ErrVersion = record.ErrVersion
)

// storageErr wraps an error from Pebble for op ("read", "write", "scan").
// Damage that Pebble detected itself — a checksum mismatch in a table, a
// blob file or the log — matches ErrCorrupt; anything else ErrStorage.
func storageErr(op string, err error) error {
	if errors.Is(err, ErrFailed) {
		return err
	}
	if pebble.IsCorruptionError(err) {
		return damaged(op, err)
	}
	return fmt.Errorf("idemkv: %s: %w: %w", op, ErrStorage, err)
}

// failedError is the error of a stopped engine: it matches ErrFailed,
// ErrStorage and its cause.
type failedError struct{ cause error }

func (e *failedError) Error() string { return ErrFailed.Error() + ": " + e.cause.Error() }
func (e *failedError) Unwrap() []error {
	return []error{ErrFailed, ErrStorage, e.cause}
}

// damageError reports damaged bytes found below the record layer (in the
// log, a table, a blob file, the metadata). It matches ErrCorrupt (and
// its cause) but names its own layer rather than the record codec's.
type damageError struct {
	what  string
	cause error
}

// damaged returns a damageError for what ("write-ahead log 000012.log",
// "read") caused by cause (nil if none).
func damaged(what string, cause error) error {
	return &damageError{what: what, cause: cause}
}

func (e *damageError) Error() string {
	if e.cause == nil {
		return "idemkv: damaged data: " + e.what
	}
	return "idemkv: damaged data: " + e.what + ": " + e.cause.Error()
}

func (e *damageError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrCorrupt}
	}
	return []error{ErrCorrupt, e.cause}
}
