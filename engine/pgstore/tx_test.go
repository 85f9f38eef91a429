package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/pgstore"
	"github.com/idemkv/idemkv/engine/pgtest"
	"github.com/idemkv/idemkv/record"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

var ctx = context.Background()

var txTables atomic.Int64

// txFixture is a Store on a fresh database with a ledger table, as a
// service keeps its business rows beside idemkv's.
type txFixture struct {
	url   string
	pool  *pgxpool.Pool
	store *pgstore.Store
	o     pgstore.Options
}

func newTxFixture(t *testing.T, o pgstore.Options) *txFixture {
	t.Helper()
	f := &txFixture{url: pgtest.Start(t), o: o}
	if f.o.ScopeSecret == nil {
		f.o.ScopeSecret = testSecret
	}
	f.o.Table = fmt.Sprintf("tx%d", txTables.Add(1))
	pool, err := pgxpool.New(ctx, f.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// pgxpool's Close waits for every connection to come back: a
		// transaction left open would hang the test instead of failing it.
		closed := make(chan struct{})
		go func() { pool.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Error("a connection of the ledger's pool is still held 10s after the test: a transaction was left open")
		}
	})
	f.pool = pool
	// The unique constraint is checked at commit (deferred), so a test
	// can make a commit fail.
	if _, err := pool.Exec(ctx, `CREATE TABLE ledger (
		id bigserial PRIMARY KEY, ref text NOT NULL,
		CONSTRAINT ledger_ref UNIQUE (ref) DEFERRABLE INITIALLY DEFERRED)`); err != nil {
		t.Fatal(err)
	}
	f.store = openStore(t, f.url, &f.o)
	return f
}

func (f *txFixture) ledger(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := f.pool.Query(ctx, `SELECT ref FROM ledger ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return refs
}

func txKey(k string) record.Key {
	return record.Key{Scope: "tenant-a", Endpoint: "POST /v1/payments", Key: k}
}

func txReq(k, body string) engine.Request {
	return engine.Request{Key: txKey(k), Fingerprint: record.Sum([]byte(body)), RequestID: "req-" + k}
}

func beginAs(t *testing.T, s engine.Store, r engine.Request, want engine.Outcome) engine.Result {
	t.Helper()
	res, err := s.Begin(ctx, r)
	if err != nil || res.Outcome != want {
		t.Fatalf("Begin(%s) = %v, %v; want %v", r.Key.Key, res.Outcome, err, want)
	}
	return res
}

// insert begins a transaction and inserts a ledger row in it.
func (f *txFixture) insert(t *testing.T, ref string) pgx.Tx {
	t.Helper()
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO ledger (ref) VALUES ($1)`, ref); err != nil {
		t.Fatal(err)
	}
	return tx
}

// TestCompleteTxCommitsTheRecordWithTheWrites: after CompleteTx, the
// handler's row and the record are both there, and a retry replays.
func TestCompleteTxCommitsTheRecordWithTheWrites(t *testing.T) {
	f := newTxFixture(t, pgstore.Options{})
	res := beginAs(t, f.store, txReq("k", "a"), engine.Proceed)
	tx := f.insert(t, "pay-1")
	if err := f.store.CompleteTx(ctx, tx, res.Claim, engine.Response{Status: 201, Body: []byte(`{"id":"pay-1"}`)}); err != nil {
		t.Fatal(err)
	}
	if got := f.ledger(t); len(got) != 1 || got[0] != "pay-1" {
		t.Fatalf("ledger %v, want [pay-1]", got)
	}
	rep := beginAs(t, f.store, txReq("k", "a"), engine.Replay)
	if rep.Record.Status != 201 || string(rep.Record.Body) != `{"id":"pay-1"}` {
		t.Fatalf("replay %d %q", rep.Record.Status, rep.Record.Body)
	}
	if err := res.Claim.Release(ctx); !errors.Is(err, engine.ErrClaimDone) {
		t.Fatalf("Release after CompleteTx: %v, want ErrClaimDone", err)
	}
	if st := f.store.Stats(); st.Completes != 1 || st.Claims != 0 {
		t.Fatalf("stats: %d completes, %d claims; want 1, 0", st.Completes, st.Claims)
	}
}

// TestAFailedCommitLeavesNeitherAndReleases: a commit that fails (here a
// deferred constraint) leaves neither the row nor the record, and the
// claim is released: the retry runs at once.
func TestAFailedCommitLeavesNeitherAndReleases(t *testing.T) {
	f := newTxFixture(t, pgstore.Options{})
	res := beginAs(t, f.store, txReq("k", "a"), engine.Proceed)
	tx := f.insert(t, "dup")
	if _, err := tx.Exec(ctx, `INSERT INTO ledger (ref) VALUES ('dup')`); err != nil {
		t.Fatal(err) // deferred: the commit fails
	}
	err := f.store.CompleteTx(ctx, tx, res.Claim, engine.Response{Status: 201, Body: []byte("ok")})
	if !errors.Is(err, engine.ErrStorage) {
		t.Fatalf("CompleteTx with a failing commit: %v, want ErrStorage", err)
	}
	if got := f.ledger(t); len(got) != 0 {
		t.Fatalf("ledger %v after a failed commit", got)
	}
	retry := beginAs(t, f.store, txReq("k", "a"), engine.Proceed)
	if retry.Recovered {
		t.Fatal("the retry recovered a claim: it was not released")
	}
	_ = retry.Claim.Release(ctx)
}

// TestALostLeaseRollsTheWritesBack: a holder whose lease ran out and was
// taken over gets ErrLeaseLost from CompleteTx, and its writes are rolled
// back; the new holder's completion stands.
func TestALostLeaseRollsTheWritesBack(t *testing.T) {
	f := newTxFixture(t, pgstore.Options{Lease: 60 * time.Millisecond, RenewEvery: -1})
	stale := beginAs(t, f.store, txReq("k", "a"), engine.Proceed)
	tx := f.insert(t, "stale")
	time.Sleep(120 * time.Millisecond) // the lease runs out; no renewals
	other := openStore(t, f.url, &f.o)
	taker := beginAs(t, other, txReq("k", "a"), engine.Proceed)
	if !taker.Recovered {
		t.Fatal("the takeover is not marked recovered")
	}
	if err := f.store.CompleteTx(ctx, tx, stale.Claim, engine.Response{Status: 201, Body: []byte("stale")}); !errors.Is(err, engine.ErrLeaseLost) {
		t.Fatalf("CompleteTx of a lost lease: %v, want ErrLeaseLost", err)
	}
	if got := f.ledger(t); len(got) != 0 {
		t.Fatalf("ledger %v: the stale holder's writes were kept", got)
	}
	tx2 := f.insert(t, "new")
	if err := other.CompleteTx(ctx, tx2, taker.Claim, engine.Response{Status: 201, Body: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	rep := beginAs(t, f.store, txReq("k", "a"), engine.Replay)
	if string(rep.Record.Body) != "new" {
		t.Fatalf("replay %q, want the new holder's", rep.Record.Body)
	}
}

// TestATransactionThatNeverCommitsLeavesACleanRetry: the process dies
// before the commit (its connection closes with the transaction open):
// neither the row nor the record exists, and once the lease runs out the
// retry runs, as a recovered claim.
func TestATransactionThatNeverCommitsLeavesACleanRetry(t *testing.T) {
	f := newTxFixture(t, pgstore.Options{Lease: 80 * time.Millisecond})
	dying := openStore(t, f.url, &f.o)
	res := beginAs(t, dying, txReq("k", "a"), engine.Proceed)
	conn, err := pgx.Connect(ctx, f.url)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO ledger (ref) VALUES ('lost')`); err != nil {
		t.Fatal(err)
	}
	// The crash: the connection goes, the claim's renewals stop.
	if err := conn.PgConn().Conn().Close(); err != nil {
		t.Fatal(err)
	}
	_ = dying.Close()
	_ = res
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := f.store.Begin(ctx, txReq("k", "a"))
		if err != nil {
			t.Fatal(err)
		}
		if r.Outcome == engine.Proceed {
			if !r.Recovered {
				t.Fatal("the retry after a crash is not marked recovered")
			}
			_ = r.Claim.Release(ctx)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the retry still gets %v after 5s", r.Outcome)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := f.ledger(t); len(got) != 0 {
		t.Fatalf("ledger %v: an uncommitted write survived", got)
	}
}

// TestAWaitingDuplicateWakesAtTheCommit: a duplicate waiting for the
// claim gets the replay once CompleteTx commits.
func TestAWaitingDuplicateWakesAtTheCommit(t *testing.T) {
	f := newTxFixture(t, pgstore.Options{})
	res := beginAs(t, f.store, txReq("k", "a"), engine.Proceed)
	other := openStore(t, f.url, &f.o)
	got := make(chan engine.Result, 1)
	go func() {
		r := txReq("k", "a")
		r.WhenInProgress = engine.Wait
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		res, err := other.Begin(wctx, r)
		if err != nil {
			res.Outcome = engine.InProgress
		}
		got <- res
	}()
	for other.Stats().Waits == 0 {
		time.Sleep(time.Millisecond)
	}
	tx := f.insert(t, "pay")
	if err := f.store.CompleteTx(ctx, tx, res.Claim, engine.Response{Status: 201, Body: []byte("paid")}); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.Outcome != engine.Replay || string(r.Record.Body) != "paid" {
		t.Fatalf("the waiter got %v", r.Outcome)
	}
}

// TestCompleteTxRefusesAnotherStoresClaim: a claim of another Store is
// refused before anything is written; the claim and the transaction stay
// open.
func TestCompleteTxRefusesAnotherStoresClaim(t *testing.T) {
	f := newTxFixture(t, pgstore.Options{})
	o := f.o
	o.Table = o.Table + "_other"
	other := openStore(t, f.url, &o)
	res := beginAs(t, other, txReq("k", "a"), engine.Proceed)
	tx := f.insert(t, "x")
	err := f.store.CompleteTx(ctx, tx, res.Claim, engine.Response{Status: 201})
	if !errors.Is(err, pgstore.ErrNotOurClaim) || !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("another store's claim: %v, want ErrNotOurClaim", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("the transaction was not left open: %v", err)
	}
	if err := other.CompleteTx(ctx, f.insert(t, "y"), res.Claim, engine.Response{Status: 201}); err != nil {
		t.Fatalf("the claim was not left held: %v", err)
	}
}
