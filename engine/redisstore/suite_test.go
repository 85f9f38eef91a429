package redisstore_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/redisstore"
	"github.com/idemkv/idemkv/engine/redistest"
	"github.com/idemkv/idemkv/engine/storetest"
)

var prefixes atomic.Int64

// TestStoreSuite runs the behaviour suite shared with the embedded engine
// against a real redis-server. Each case gets its own key prefix; every
// replica has its own connection.
func TestStoreSuite(t *testing.T) {
	storetest.Run(t, deployments(redistest.Start(t, nil), false))
}

// TestStoreSuiteMixedLayouts runs the suite on replicas that write
// records in different layouts (the first in layout 1, the hashes of
// earlier versions; every other replica, and every restart, in the other
// one), as during the rolling upgrade that Options.Layout describes:
// each must answer from, wait for, take over and fence the other's
// records as from its own.
func TestStoreSuiteMixedLayouts(t *testing.T) {
	storetest.Run(t, deployments(redistest.Start(t, nil), true))
}

// deployments returns a storetest.Factory of replicas on the server (or
// cluster) at url, each case under a key prefix of its own; with mixed,
// replicas alternate between the two layouts.
func deployments(url string, mixed bool) storetest.Factory {
	return func(t *testing.T, s storetest.Settings) storetest.Deployment {
		o := redisstore.Options{TTL: s.TTL, Lease: s.Lease, Prefix: fmt.Sprintf("suite%d:", prefixes.Add(1)), ScopeSecret: testSecret}
		if s.NoRenew {
			o.RenewEvery = -1
		}
		d := &redisDeployment{t: t, url: url, o: o, mixed: mixed}
		d.first = d.open()
		return d
	}
}

// redisDeployment is replicas of redisstore on one server; a crash closes
// the first replica with its claims unfinished (their leases stop being
// renewed) and opens another.
type redisDeployment struct {
	t      *testing.T
	url    string
	o      redisstore.Options
	mixed  bool
	opened atomic.Int64
	first  *redisstore.Store
}

func (d *redisDeployment) open() *redisstore.Store {
	o := d.o
	if d.mixed {
		o.Layout = 1 + int(d.opened.Add(1)-1)%2
	}
	return openStore(d.t, d.url, o)
}

func (d *redisDeployment) Store() engine.Store   { return d.first }
func (d *redisDeployment) Replica() engine.Store { return d.open() }
func (d *redisDeployment) Crash() engine.Store {
	_ = d.first.Close()
	d.first = d.open()
	return d.first
}

// TestStoreSuiteCluster runs the shared suite against a real three-node
// Redis Cluster: every script touches one key, so it must work unchanged.
func TestStoreSuiteCluster(t *testing.T) {
	storetest.Run(t, deployments(redistest.StartCluster(t), false))
}
