package pgstore_test

import (
	"testing"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/pgstore"
	"github.com/idemkv/idemkv/record"
)

// TestListSelectsByPrefix: List with every key, a scope and an endpoint
// prefix returns exactly the records under it, claims included, without
// their bodies.
func TestListSelectsByPrefix(t *testing.T) {
	f := newTxFixture(t, pgstore.Options{})
	keys := []record.Key{
		{Scope: "a", Endpoint: "POST /x", Key: "1"},
		{Scope: "a", Endpoint: "POST /x", Key: "2"},
		{Scope: "a", Endpoint: "POST /y", Key: "1"},
		{Scope: "b", Endpoint: "POST /x", Key: "1"},
	}
	for i, k := range keys {
		res := beginAs(t, f.store, engine.Request{Key: k, Fingerprint: record.Sum([]byte("b"))}, engine.Proceed)
		if i == len(keys)-1 {
			continue // left claimed
		}
		if err := res.Claim.Complete(ctx, engine.Response{Status: 201, Body: []byte("body")}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		prefix record.Prefix
		want   int
	}{
		{record.AllKeys(), 4},
		{record.ScopePrefix("a"), 3},
		{record.EndpointPrefix("a", "POST /x"), 2},
		{record.ScopePrefix("c"), 0},
	} {
		n := 0
		err := f.store.List(ctx, tc.prefix, func(k record.Key, r *record.Record) error {
			n++
			if r.Body != nil {
				t.Errorf("List gave %v with its body", k)
			}
			return nil
		})
		if err != nil || n != tc.want {
			t.Errorf("List(%v) = %d records, %v; want %d", tc.prefix, n, err, tc.want)
		}
	}
}
