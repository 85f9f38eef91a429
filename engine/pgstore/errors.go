package pgstore

import (
	"errors"
	"fmt"

	"github.com/idemkv/idemkv/engine"
)

// ErrSchema is returned when the database's idemkv schema is missing (and
// Options.NoMigrate forbids creating it) or of another version.
var ErrSchema = errors.New("pgstore: the database's idemkv schema is missing or of another version")

// ErrScopeSecret is returned by Open (and CheckScopeSecret) when
// Options.ScopeSecret is not the secret that the table's records are
// stored under, nor one of Options.PreviousScopeSecrets: this replica
// would find none of them, and every retry it took would run its handler
// again. Every replica must be given the same secret.
var ErrScopeSecret = errors.New("pgstore: the scope secret differs from the one the table's records are stored under (every replica needs the same ScopeSecret; during a rotation, the old one in PreviousScopeSecrets)")

// ErrNotOurClaim is returned by CompleteTx for a claim that another store
// made: only a claim of this Store can complete in its database. It
// matches engine.ErrInvalid (the claim stays held).
var ErrNotOurClaim = fmt.Errorf("pgstore: the claim was not made by this Store: %w", engine.ErrInvalid)

// storageErr wraps an error from PostgreSQL for op so that it matches
// engine.ErrStorage (the middleware answers 503).
func storageErr(op string, err error) error {
	return fmt.Errorf("pgstore: %s: %w: %w", op, engine.ErrStorage, err)
}
