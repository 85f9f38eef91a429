package redistest_test

import (
	"context"
	"testing"

	"github.com/idemkv/idemkv/engine/redisstore"
	"github.com/idemkv/idemkv/engine/redistest"
)

// A test that needs Redis asks Start for a server: CI's, or a
// redis-server of the test's own, or none (then the test is skipped with
// a message saying what to install). Start needs the test's testing.TB, so
// this example is compiled, not run: put the function body in a TestXxx.
func ExampleStart() {
	_ = func(t *testing.T) {
		url := redistest.Start(t, nil)
		st, err := redisstore.Open(context.Background(), url, &redisstore.Options{Prefix: "test:" + t.Name() + ":", ScopeSecret: []byte("the tests' scope secret, 32 B..")})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
	}
}
