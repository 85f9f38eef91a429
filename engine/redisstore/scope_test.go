package redisstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/redisstore"
	"github.com/idemkv/idemkv/engine/redistest"
)

// TestReplicasMustShareTheScopeSecret: a replica whose secret is not the
// one the server's records are stored under would find none of them (and
// run every retry again): Open refuses it. A rotation (the new secret,
// the old one as previous) is accepted, finds the old digests, and from
// then on the old secret alone is refused.
func TestReplicasMustShareTheScopeSecret(t *testing.T) {
	url := redistest.Start(t, nil)
	ctx := context.Background()
	const cred = "Bearer x"
	first := openStore(t, url, redisstore.Options{Prefix: "sec:"})
	if !first.Scoper().Upgrading() {
		t.Fatal("no upgrade window after the first start with keyed digests")
	}
	oldScope := first.Scoper().Scope(cred)
	other := []byte("another team's secret, 32 bytes")
	if _, err := redisstore.Open(ctx, url, &redisstore.Options{Prefix: "sec:", ScopeSecret: other}); !errors.Is(err, redisstore.ErrScopeSecret) {
		t.Fatalf("a replica with another secret: %v; want ErrScopeSecret", err)
	}
	if s, err := redisstore.Open(ctx, url, &redisstore.Options{Prefix: "other:", ScopeSecret: other}); err != nil {
		t.Fatalf("another prefix is another deployment: %v", err)
	} else {
		s.Close()
	}
	rotated := openStore(t, url, redisstore.Options{Prefix: "sec:", ScopeSecret: other, PreviousScopeSecrets: [][]byte{testSecret}})
	if got := rotated.Scoper().Earlier(nil, cred, cred); len(got) == 0 || got[0] != oldScope {
		t.Fatal("after the rotation, the old secret's digest is not looked up")
	}
	if _, err := redisstore.Open(ctx, url, &redisstore.Options{Prefix: "sec:", ScopeSecret: testSecret}); !errors.Is(err, redisstore.ErrScopeSecret) {
		t.Fatalf("the old secret alone after the rotation: %v; want ErrScopeSecret", err)
	}
	if _, err := redisstore.New(nil, &redisstore.Options{}); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("no secret: %v; want ErrInvalid", err)
	}
}
