package pgstore_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/pgstore"
	"github.com/idemkv/idemkv/engine/pgtest"
	"github.com/idemkv/idemkv/engine/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var testSecret = []byte("pgstore test scope secret, 32+ bytes long")

var tables atomic.Int64

// TestStoreSuite runs the behaviour suite shared with the embedded engine
// and Redis against a real PostgreSQL server. Each case gets a table of
// its own; every replica has its own pool.
func TestStoreSuite(t *testing.T) {
	url := pgtest.Start(t)
	storetest.Run(t, func(t *testing.T, s storetest.Settings) storetest.Deployment {
		o := pgstore.Options{TTL: s.TTL, Lease: s.Lease, Table: fmt.Sprintf("suite%d", tables.Add(1)), ScopeSecret: testSecret}
		if s.NoRenew {
			o.RenewEvery = -1
		}
		d := &pgDeployment{t: t, url: url, o: o}
		d.first = d.open()
		return d
	})
}

// pgDeployment is replicas of pgstore on one database; a crash closes
// the first replica with its claims unfinished (their leases stop being
// renewed) and opens another.
type pgDeployment struct {
	t     *testing.T
	url   string
	o     pgstore.Options
	first *pgstore.Store
}

func (d *pgDeployment) open() *pgstore.Store { return openStore(d.t, d.url, &d.o) }

func (d *pgDeployment) Store() engine.Store   { return d.first }
func (d *pgDeployment) Replica() engine.Store { return d.open() }
func (d *pgDeployment) Crash() engine.Store {
	_ = d.first.Close()
	d.first = d.open()
	return d.first
}

// openStore opens a Store on url that t's cleanup closes.
func openStore(t testing.TB, url string, o *pgstore.Options) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
