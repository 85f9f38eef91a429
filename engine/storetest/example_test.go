package storetest_test

import (
	"testing"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/storetest"
)

// A store's tests run the suite with a Factory that opens the store on
// fresh data for each case. This one runs it against the embedded engine
// in memory, which has no replicas and whose crash is a reopen (the
// engine's own suite uses a directory on disk, so that a crash keeps the
// data). Run needs the test's *testing.T, so this example is compiled,
// not run: put the function body in a TestXxx of your store's package.
func ExampleRun() {
	_ = func(t *testing.T) {
		storetest.Run(t, func(t *testing.T, s storetest.Settings) storetest.Deployment {
			d := &memDeployment{t: t, o: engine.Options{TTL: s.TTL, Lease: s.Lease, InMemory: true}}
			d.open()
			t.Cleanup(func() { _ = d.e.Close() })
			return d
		})
	}
}

type memDeployment struct {
	t *testing.T
	o engine.Options
	e *engine.Engine
}

func (d *memDeployment) open() {
	e, err := engine.Open("data", &d.o)
	if err != nil {
		d.t.Fatal(err)
	}
	d.e = e
}

func (d *memDeployment) Store() engine.Store   { return d.e }
func (d *memDeployment) Replica() engine.Store { return nil }
func (d *memDeployment) Crash() engine.Store {
	_ = d.e.Close()
	d.open()
	return d.e
}
