package pgstore

import (
	"context"

	"github.com/idemkv/idemkv/engine"
	"github.com/jackc/pgx/v5"
)

// CompleteTx stores resp as the completion of c (a claim this Store made)
// inside tx, and commits tx: the handler's writes in tx and the stored
// response become visible together, or neither does.
//
//   - It returns nil once tx has committed: retries of the key replay
//     resp, and the waiting duplicates wake.
//   - If the claim was taken over meanwhile (its lease ran out), it rolls
//     tx back and returns engine.ErrLeaseLost: the handler's writes are
//     undone, and the request that took the key over runs instead.
//   - If writing the record or the commit fails, tx is rolled back (as
//     far as the server is concerned) and the claim released, so that a
//     retry runs cleanly; the error matches engine.ErrStorage. (A commit
//     whose answer was lost may have committed: then the record is
//     stored, the fenced release does nothing, and a retry replays.)
//   - A response it refuses before writing (engine.ErrInvalid: a status
//     outside 100-999, or a claim of another store, ErrNotOurClaim;
//     engine.ErrTooLarge: a body over MaxBodySize) leaves both tx and the
//     claim as they were: the caller rolls back and releases, or
//     completes with another response.
//
// If the process dies before the commit, the server rolls tx back: neither
// the handler's writes nor the record exist, and the claim's lease runs
// out, after which a retry runs the handler again. tx must be a
// transaction on the Store's database (any pool or connection to it).
func (s *Store) CompleteTx(ctx context.Context, tx pgx.Tx, c *engine.Claim, resp engine.Response) error {
	return c.CompleteWith(resp, func(b engine.ClaimBackend) error {
		pc, ok := b.(*claim)
		if !ok || pc.s != s {
			return ErrNotOurClaim
		}
		return pc.completeTx(ctx, tx, resp)
	})
}

// Transaction is a pgx.Tx of the Store's database made ready for
// idemhttp.HandOver (it implements idemhttp.Transaction): the middleware
// completes the request's claim inside it with CompleteTx, which commits
// it, or rolls it back.
type Transaction struct {
	s  *Store
	tx pgx.Tx
}

// Transaction returns tx, a transaction on the Store's database, as an
// idemhttp.Transaction:
//
//	tx, err := pool.Begin(ctx)
//	... the handler's writes in tx ...
//	if err := idemhttp.HandOver(r.Context(), store.Transaction(tx)); err != nil { ... }
//	w.WriteHeader(http.StatusCreated) // stored inside tx, committed, then sent
func (s *Store) Transaction(tx pgx.Tx) Transaction { return Transaction{s, tx} }

// Complete is CompleteTx in the transaction.
func (t Transaction) Complete(ctx context.Context, c *engine.Claim, resp engine.Response) error {
	return t.s.CompleteTx(ctx, t.tx, c, resp)
}

// Rollback rolls the transaction back.
func (t Transaction) Rollback(ctx context.Context) error { return t.tx.Rollback(ctx) }
