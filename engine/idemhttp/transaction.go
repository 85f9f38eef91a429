package idemhttp

import (
	"context"
	"errors"

	"github.com/idemkv/idemkv/engine"
)

// Transaction is a handler's open database transaction, handed to the
// middleware (HandOver) so that the request's response is stored inside
// it: the handler's writes and its stored response then commit together,
// or neither does. pgstore.Store.Transaction makes one of a pgx.Tx.
type Transaction interface {
	// Complete stores resp as c's completion inside the transaction and
	// commits it. If it fails, the transaction must be rolled back and c
	// released; except that a refusal before anything was written
	// (engine.ErrInvalid, engine.ErrTooLarge) leaves both open.
	Complete(ctx context.Context, c *engine.Claim, resp engine.Response) error
	// Rollback ends the transaction without committing it.
	Rollback(ctx context.Context) error
}

// ErrHandedOver is returned by HandOver for a request whose handler
// already handed over a transaction.
var ErrHandedOver = errors.New("idemhttp: a transaction was already handed over for this request")

// HandOver gives the middleware tx, the open transaction in which the
// handler of the request whose context ctx is made its writes. The
// handler does not commit it; it writes its response and returns. Then:
//
//   - a response the middleware stores (see Options.ShouldStore) is
//     stored inside tx, and tx committed, before the response is sent:
//     a retry replays it. If that fails (the database is down, the commit
//     fails, or the claim was taken over after its lease ran out), the
//     handler's writes are undone with it, so its response is not sent:
//     the client gets 503 idempotency_store_unavailable with Retry-After,
//     and a retry runs cleanly.
//   - a response that is not stored (a status ShouldStore refuses), a
//     handler that panics, and a response streamed or hijacked (which
//     cannot be stored) roll tx back and release the claim. So a handler
//     that hands over a transaction must not flush its response: the
//     client would see what it wrote while its writes are undone.
//
// If the process dies before the commit, the database rolls tx back: the
// retry finds no writes and no record, and runs (once the claim's lease
// has run out). HandOver returns ErrNoClaim for a request without a
// claim, and ErrHandedOver if the handler already handed one over.
func HandOver(ctx context.Context, tx Transaction) error {
	c, ok := FromContext(ctx)
	if !ok || c.claim == nil {
		return ErrNoClaim
	}
	if c.tx != nil {
		return ErrHandedOver
	}
	c.tx = tx
	return nil
}

// rollback ends the handed-over transaction of a response that is not
// stored.
func (m *Middleware) rollback(c *Call, why string) {
	if c.tx == nil {
		return
	}
	tx := c.tx
	c.tx = nil
	if err := tx.Rollback(context.Background()); err != nil {
		m.c.Logger.Warn("idemhttp: rolling back a handed-over transaction failed", "key", c.Key.Key, "why", why, "err", err)
	}
}

// completeTx stores a response inside the handed-over transaction and
// commits it; false if that failed (the transaction is rolled back and
// the claim released).
func (m *Middleware) completeTx(c *Call, status int, resp engine.Response) bool {
	tx := c.tx
	c.tx = nil
	err := tx.Complete(context.Background(), c.claim, resp)
	if err == nil {
		m.st.recorded.Add(1)
		return true
	}
	m.st.completeErrors.Add(1)
	m.c.Logger.Error("idemhttp: committing the handed-over transaction with the response failed; the handler's writes are undone",
		"endpoint", c.Key.Endpoint, "key", c.Key.Key, "status", status, "err", err)
	if errors.Is(err, engine.ErrInvalid) || errors.Is(err, engine.ErrTooLarge) {
		// Refused before anything was written: both are still open.
		if rerr := tx.Rollback(context.Background()); rerr != nil {
			m.c.Logger.Warn("idemhttp: rolling back a handed-over transaction failed", "key", c.Key.Key, "err", rerr)
		}
	}
	m.release(c.claim, "the handed-over transaction did not commit")
	return false
}
