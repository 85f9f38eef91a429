package bench

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/pgtest"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestPostgresBaseline measures the fresh, replay and conflict workloads
// with the PostgreSQL baseline and idemkv's PostgreSQL backend on a real
// server, and checks their answers, the reported settings and that the
// run drops its tables.
func TestPostgresBaseline(t *testing.T) {
	url := pgtest.Start(t)
	const ops = 200
	for _, wl := range []Workload{Fresh, Replay, Conflict} {
		rep, err := Run(context.Background(), Config{
			Workload: wl, Durability: engine.Relaxed, BodySize: 300, Ops: ops, Concurrency: 8,
			Dir: t.TempDir(), Postgres: url, Backend: "postgres", Records: 50,
		})
		if err != nil {
			t.Fatalf("%v: %v", wl, err)
		}
		for _, sys := range []string{"postgres", "idemkv-postgres"} {
			r, ok := rep.Result(sys)
			if !ok {
				t.Fatalf("%v: no %s result in %+v", wl, sys, rep.Results)
			}
			if r.Ops != ops || r.OpsPerSec <= 0 {
				t.Errorf("%v: %s did %d operations at %v ops/s; want %d", wl, sys, r.Ops, r.OpsPerSec, ops)
			}
		}
		if !strings.Contains(rep.PostgresSettings, "fsync=on") || !strings.Contains(rep.PostgresSettings, "synchronous_commit=on") {
			t.Errorf("settings %q", rep.PostgresSettings)
		}
	}
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(context.Background(), `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("after the runs the database holds %d tables (%v); want none", n, err)
	}
}
