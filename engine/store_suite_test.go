package engine_test

import (
	"testing"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/storetest"
)

// TestStoreSuite runs the behaviour suite shared with the Redis backend
// against the embedded engine.
func TestStoreSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s storetest.Settings) storetest.Deployment {
		d := &engineDeployment{t: t, dir: t.TempDir(), o: engine.Options{TTL: s.TTL, Lease: s.Lease, Logger: quietLogger()}}
		d.open()
		t.Cleanup(func() { _ = d.e.Close() })
		return d
	})
}

// engineDeployment is one engine on a temporary directory; a crash closes
// it with its claims unfinished and opens the directory again, as a
// restarted process would.
type engineDeployment struct {
	t   *testing.T
	dir string
	o   engine.Options
	e   *engine.Engine
}

func (d *engineDeployment) open() {
	e, err := engine.Open(d.dir, &d.o)
	if err != nil {
		d.t.Fatal(err)
	}
	d.e = e
}

func (d *engineDeployment) Store() engine.Store   { return d.e }
func (d *engineDeployment) Replica() engine.Store { return nil }
func (d *engineDeployment) Crash() engine.Store {
	_ = d.e.Close()
	d.open()
	return d.e
}
