package engine_test

import (
	"testing"

	"github.com/idemkv/idemkv/engine"
)

// openDiskEngine opens an engine on a real directory. Close is idempotent,
// so a test may close it early to inspect or reopen the directory.
func openDiskEngine(t testing.TB, dir string, o *engine.Options) *engine.Engine {
	t.Helper()
	e, err := engine.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}
