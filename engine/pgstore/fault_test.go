package pgstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/pgstore"
	"github.com/idemkv/idemkv/engine/pgtest"
)

// TestADeadServerGivesStorageErrorsAndRecovers: with PostgreSQL down
// (killed), Begin, Complete and Health fail with errors matching
// engine.ErrStorage instead of hanging (each call has 10 s; a hang would
// end in the context's error instead); once it is back, the same Store
// replays what was completed before, and a claim made before the outage
// can still complete.
func TestADeadServerGivesStorageErrorsAndRecovers(t *testing.T) {
	srv := pgtest.Launch(t, nil)
	store := openStore(t, srv.URL("postgres"), &pgstore.Options{ScopeSecret: testSecret})
	done := beginAs(t, store, txReq("done", "a"), engine.Proceed)
	if err := done.Claim.Complete(ctx, engine.Response{Status: 201, Body: []byte("stored")}); err != nil {
		t.Fatal(err)
	}
	held := beginAs(t, store, txReq("held", "a"), engine.Proceed)

	srv.Stop()
	call := func(name string, f func(context.Context) error) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := f(cctx); !errors.Is(err, engine.ErrStorage) {
			t.Fatalf("%s with the server down: %v, want ErrStorage", name, err)
		}
	}
	call("Begin", func(c context.Context) error { _, err := store.Begin(c, txReq("new", "a")); return err })
	call("Begin of a stored key", func(c context.Context) error { _, err := store.Begin(c, txReq("done", "a")); return err })
	call("Health", store.Health)
	call("Get", func(c context.Context) error { _, err := store.Get(c, txKey("done")); return err })

	srv.Start()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := store.Begin(ctx, txReq("done", "a"))
		if err == nil {
			if res.Outcome != engine.Replay || string(res.Record.Body) != "stored" {
				t.Fatalf("after the server came back: %v", res.Outcome)
			}
			break
		}
		if !errors.Is(err, engine.ErrStorage) || time.Now().After(deadline) {
			t.Fatalf("after the server came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := store.Health(ctx); err != nil {
		t.Fatalf("Health after the server came back: %v", err)
	}
	if err := held.Claim.Complete(ctx, engine.Response{Status: 201, Body: []byte("later")}); err != nil {
		t.Fatalf("completing a claim made before the outage: %v", err)
	}
	rep := beginAs(t, store, txReq("held", "a"), engine.Replay)
	if string(rep.Record.Body) != "later" {
		t.Fatalf("replay %q", rep.Record.Body)
	}
}

// TestMigrationIsRefusedOrCheckedAsAsked: NoMigrate on an empty database
// is refused with ErrSchema naming idemkv migrate; after Migrate (run
// twice, and by two stores at once) it opens; a schema of a later version
// is refused.
func TestMigrationIsRefusedOrCheckedAsAsked(t *testing.T) {
	url := pgtest.Start(t)
	o := pgstore.Options{ScopeSecret: testSecret, NoMigrate: true}
	if _, err := pgstore.Open(ctx, url, &o); !errors.Is(err, pgstore.ErrSchema) {
		t.Fatalf("NoMigrate on an empty database: %v, want ErrSchema", err)
	}
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			s, err := pgstore.Open(ctx, url, &pgstore.Options{ScopeSecret: testSecret})
			if err == nil {
				err = s.Migrate(ctx)
				s.Close()
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent migrations: %v", err)
		}
	}
	s := openStore(t, url, &o)
	beginAs(t, s, txReq("k", "a"), engine.Proceed)
	f := newTxFixture(t, pgstore.Options{})
	if _, err := f.pool.Exec(ctx, `CREATE TABLE future_meta (name text PRIMARY KEY, value text NOT NULL);
		INSERT INTO future_meta VALUES ('schema', '99')`); err != nil {
		t.Fatal(err)
	}
	if _, err := pgstore.Open(ctx, f.url, &pgstore.Options{ScopeSecret: testSecret, Table: "future"}); !errors.Is(err, pgstore.ErrSchema) {
		t.Fatalf("a schema of a later version: %v, want ErrSchema", err)
	}
}

// TestAnotherSecretIsRefused: a replica given another scope secret is
// refused (it would find none of the records); one given the old secret
// as a previous one, during a rotation, is not.
func TestAnotherSecretIsRefused(t *testing.T) {
	url := pgtest.Start(t)
	openStore(t, url, &pgstore.Options{ScopeSecret: testSecret})
	other := []byte("another team's secret, 32+ bytes long")
	if _, err := pgstore.Open(ctx, url, &pgstore.Options{ScopeSecret: other}); !errors.Is(err, pgstore.ErrScopeSecret) {
		t.Fatalf("another secret: %v, want ErrScopeSecret", err)
	}
	openStore(t, url, &pgstore.Options{ScopeSecret: other, PreviousScopeSecrets: [][]byte{testSecret}})
	// The rotation moved the check to the new secret: the old one alone
	// is now refused.
	if _, err := pgstore.Open(ctx, url, &pgstore.Options{ScopeSecret: testSecret}); !errors.Is(err, pgstore.ErrScopeSecret) {
		t.Fatalf("the old secret after the rotation: %v, want ErrScopeSecret", err)
	}
}

// TestADamagedRecordIsNeverReplayed: a stored record whose bytes were
// damaged (here by a statement behind the store's back) is refused with
// ErrCorrupt by Begin and Get, never replayed, nor taken for a new key;
// Delete removes it, after which the key runs again.
func TestADamagedRecordIsNeverReplayed(t *testing.T) {
	f := newTxFixture(t, pgstore.Options{})
	res := beginAs(t, f.store, txReq("k", "a"), engine.Proceed)
	if err := res.Claim.Complete(ctx, engine.Response{Status: 201, Body: []byte(`{"paid":true}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(ctx, `UPDATE `+f.o.Table+` SET rec = set_byte(rec, length(rec) / 2, get_byte(rec, length(rec) / 2) # 1)`); err != nil {
		t.Fatal(err)
	}
	if res, err := f.store.Begin(ctx, txReq("k", "a")); !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("Begin of a damaged record: %v, %v; want ErrCorrupt", res.Outcome, err)
	}
	if _, err := f.store.Get(ctx, txKey("k")); !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("Get of a damaged record: %v; want ErrCorrupt", err)
	}
	// A state that is neither claimed nor completed cannot be stored.
	if _, err := f.pool.Exec(ctx, `UPDATE `+f.o.Table+` SET st = 'z'`); err == nil {
		t.Fatal("the table took a row in an unknown state")
	}
	if err := f.store.Delete(ctx, txKey("k")); err != nil {
		t.Fatalf("Delete of a damaged record: %v", err)
	}
	beginAs(t, f.store, txReq("k", "a"), engine.Proceed)
}
