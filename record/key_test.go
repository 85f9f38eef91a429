package record_test

// Key encoding isolation: no choice of scope, endpoint and key bytes may
// give two keys one encoding, or make one encoding a prefix of another.

import (
	"bytes"
	mrand "math/rand"
	"math/rand/v2"
	"reflect"
	"testing"
	"testing/quick"

	"github.com/idemkv/idemkv/record"
	"github.com/idemkv/idemkv/record/recordtest"
)

// keyPair is a testing/quick argument: two adversarial keys, usually one
// a variant of the other.
type keyPair struct{ A, B record.Key }

func (keyPair) Generate(src *mrand.Rand, _ int) reflect.Value {
	r := rand.New(rand.NewPCG(src.Uint64(), src.Uint64()))
	p := keyPair{A: recordtest.AdversarialKey(r)}
	switch vs := recordtest.KeyVariants(r, p.A); {
	case r.IntN(10) == 0:
		p.B = p.A
	case r.IntN(10) == 0 || len(vs) == 0:
		p.B = recordtest.AdversarialKey(r)
	default:
		p.B = vs[r.IntN(len(vs))]
	}
	return reflect.ValueOf(p)
}

// The key encoding is injective and prefix-free, decodes back to its key,
// and the scan prefixes select exactly the keys of their scope (endpoint).
func TestIsolationKeyEncodingProperty(t *testing.T) {
	prop := func(p keyPair) bool {
		a, b := p.A.Append(nil), p.B.Append(nil)
		same := p.A == p.B
		switch {
		case bytes.Equal(a, b) != same:
			t.Logf("distinct keys, same encoding (or the reverse): %s %s", p.A, p.B)
			return false
		case !same && (bytes.HasPrefix(a, b) || bytes.HasPrefix(b, a)):
			t.Logf("one encoding is a prefix of the other: %s %s", p.A, p.B)
			return false
		case len(a) != p.A.EncodedLen():
			t.Logf("EncodedLen %d, encoding %d bytes: %s", p.A.EncodedLen(), len(a), p.A)
			return false
		case bytes.HasPrefix(b, record.ScopePrefix(p.A.Scope).Append(nil)) != (p.A.Scope == p.B.Scope):
			t.Logf("ScopePrefix(%q) selects wrongly: %s", p.A.Scope, p.B)
			return false
		case bytes.HasPrefix(b, record.EndpointPrefix(p.A.Scope, p.A.Endpoint).Append(nil)) !=
			(p.A.Scope == p.B.Scope && p.A.Endpoint == p.B.Endpoint):
			t.Logf("EndpointPrefix(%q, %q) selects wrongly: %s", p.A.Scope, p.A.Endpoint, p.B)
			return false
		}
		d, err := record.DecodeKey(a)
		if err != nil || d != p.A {
			t.Logf("DecodeKey(%s) = %s, %v", p.A, d, err)
			return false
		}
		return true
	}
	cfg := &quick.Config{MaxCount: 20000, Rand: mrand.New(mrand.NewSource(5))}
	if err := quick.Check(prop, cfg); err != nil {
		t.Fatal(err)
	}
}
