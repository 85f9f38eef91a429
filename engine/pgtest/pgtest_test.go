package pgtest_test

import (
	"context"
	"os"
	"testing"

	"github.com/idemkv/idemkv/engine/pgtest"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestStartGivesEachTestItsOwnDatabase: two Starts give two empty
// databases of one server, each usable.
func TestStartGivesEachTestItsOwnDatabase(t *testing.T) {
	ctx := context.Background()
	a, b := pgtest.Start(t), pgtest.Start(t)
	if a == b {
		t.Fatalf("one database for two Starts: %s", a)
	}
	for _, u := range []string{a, b} {
		c, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		c.Close(ctx)
	}
}

// TestServerStopsAndStartsAgain: a launched server stops, as a crash
// would: a connection opened before fails (PostgreSQL's backends are in
// sessions of their own, so killing the postmaster's group alone left them
// answering for a moment, and holding the shared memory that the restart
// needs); new connections fail; it starts again with its data.
func TestServerStopsAndStartsAgain(t *testing.T) {
	ctx := context.Background()
	s := pgtest.Launch(t, nil)
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if _, err := c.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a connection made before Stop still answers")
	}
	c.Close(ctx)
	if c, err := pgx.Connect(ctx, s.URL("postgres")); err == nil {
		c.Close(ctx)
		t.Fatal("connected to a stopped server")
	}
	s.Start()
	c, err = pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var x int
	if err := c.QueryRow(ctx, "SELECT x FROM kept").Scan(&x); err != nil || x != 42 {
		t.Fatalf("after a restart: %d, %v", x, err)
	}
}
