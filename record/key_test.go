package record_test

// Key encoding isolation: no choice of scope, endpoint and key bytes may
// give two keys one encoding, or make one encoding a prefix of another.

import (
	"bytes"
	mrand "math/rand"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"testing/quick"

	"github.com/idemkv/idemkv/record"
)

// isolationAtoms are what adversarial key parts are made of: the bytes
// the key encoding itself uses (uvarint lengths, one- and two-byte),
// separators that other encodings use, and Unicode look-alikes.
var isolationAtoms = []string{
	"\x00", "\x01", "\x02", "\x03", "\x07", "\x7f", "\x80", "\x80\x01", "\x81\x08", "\xff", "\xff\x7f",
	"/", ":", "|", " ", "\t", "%00", "%2F", "\\", `"`,
	"a", "b", "c", "ab", "bc", "k", "K", "POST ", "/v1/calls",
	"\u0430",       // Cyrillic а
	"\u0435",       // Cyrillic е
	"\u00e9",       // é, NFC
	"e\u0301",      // é, NFD
	"\u212a",       // Kelvin sign
	"\u200b",       // zero-width space
	"\ufeff",       // byte order mark
	"\ufb01",       // ﬁ ligature
	"\uff21",       // fullwidth Ａ
	"\xc0\xaf",     // overlong '/', not UTF-8
	"\xed\xa0\x80", // a surrogate, not UTF-8
}

// lookAlikes print (or normalise) alike but are different bytes.
var lookAlikes = [][2]string{
	{"a", "\u0430"}, {"e", "\u0435"}, {"\u00e9", "e\u0301"}, {"K", "\u212a"}, {"k", "K"},
	{"fi", "\ufb01"}, {"A", "\uff21"}, {"/", "\xc0\xaf"}, {"/", "\u2215"}, {":", "\uff1a"},
	{"|", "\u01c0"}, {"", "\u200b"}, {"", "\x00"},
}

// adversarialPart returns up to about max bytes of atoms and random bytes;
// now and then a long run, so that two-byte length prefixes are exercised.
func adversarialPart(r *rand.Rand, max int) string {
	var b strings.Builder
	if r.IntN(10) == 0 {
		b.WriteString(strings.Repeat(isolationAtoms[r.IntN(len(isolationAtoms))], 60+r.IntN(80)))
	}
	for n := r.IntN(7); n > 0; n-- {
		if r.IntN(4) == 0 {
			b.WriteByte(byte(r.UintN(256)))
		} else {
			b.WriteString(isolationAtoms[r.IntN(len(isolationAtoms))])
		}
	}
	s := b.String()
	if len(s) > max {
		s = s[:max]
	}
	return s
}

func adversarialKey(r *rand.Rand) record.Key {
	k := record.Key{
		Scope:    adversarialPart(r, record.MaxScopeLen),
		Endpoint: adversarialPart(r, record.MaxEndpointLen),
		Key:      adversarialPart(r, record.MaxKeyLen),
	}
	if k.Key == "" {
		k.Key = isolationAtoms[r.IntN(len(isolationAtoms))]
	}
	return k
}

// keyVariants returns keys close to k that must all be different records:
// the same bytes split differently among the parts (scope "a" + endpoint
// "bc" against scope "ab" + endpoint "c"), k's own encoding injected into
// one part, look-alike substitutions and one-byte extensions. Keys that
// Validate refuses are left out.
func keyVariants(r *rand.Rand, k record.Key) []record.Key {
	var out []record.Key
	add := func(v record.Key) {
		if v.Validate() == nil {
			out = append(out, v)
		}
	}
	// Boundary shifts.
	all := k.Scope + k.Endpoint + k.Key
	for range 3 {
		i := r.IntN(len(all))
		j := i + r.IntN(len(all)-i)
		add(record.Key{Scope: all[:i], Endpoint: all[i:j], Key: all[j:]})
	}
	if n := len(k.Scope); n > 0 {
		add(record.Key{Scope: k.Scope[:n-1], Endpoint: k.Scope[n-1:] + k.Endpoint, Key: k.Key})
	}
	if n := len(k.Endpoint); n > 0 {
		add(record.Key{Scope: k.Scope + k.Endpoint[:1], Endpoint: k.Endpoint[1:], Key: k.Key})
		add(record.Key{Scope: k.Scope, Endpoint: k.Endpoint[:n-1], Key: k.Endpoint[n-1:] + k.Key})
	}
	if len(k.Key) > 1 {
		add(record.Key{Scope: k.Scope, Endpoint: k.Endpoint + k.Key[:1], Key: k.Key[1:]})
	}
	// The encoding, or the encoding of a prefix, injected as a part.
	enc := string(k.Append(nil))
	pre := string(record.EndpointPrefix(k.Scope, k.Endpoint).Append(nil))
	add(record.Key{Key: enc})
	add(record.Key{Scope: enc, Key: "k"})
	add(record.Key{Endpoint: enc, Key: "k"})
	add(record.Key{Scope: pre, Key: k.Key})
	add(record.Key{Endpoint: pre, Key: k.Key})
	add(record.Key{Scope: string(record.ScopePrefix(k.Scope).Append(nil)), Endpoint: k.Endpoint, Key: k.Key})
	if len(enc) > 1 {
		i := r.IntN(len(enc) - 1)
		j := i + r.IntN(len(enc)-1-i)
		add(record.Key{Scope: enc[:i], Endpoint: enc[i:j], Key: enc[j:]})
	}
	// Look-alikes and one-byte changes, in one part.
	part := func(v *record.Key) *string {
		return [...]*string{&v.Scope, &v.Endpoint, &v.Key}[r.IntN(3)]
	}
	for range 2 {
		la := lookAlikes[r.IntN(len(lookAlikes))]
		v := k
		p := part(&v)
		switch {
		case la[0] != "" && strings.Contains(*p, la[0]):
			*p = strings.Replace(*p, la[0], la[1], 1)
		case strings.Contains(*p, la[1]):
			*p = strings.Replace(*p, la[1], la[0], 1)
		default:
			w := k
			*part(&w) += la[0]
			add(w)
			*p += la[1]
		}
		add(v)
	}
	for _, suffix := range []string{"\x00", " ", "\x80"} {
		v := k
		*part(&v) += suffix
		add(v)
	}
	v := k
	if p := part(&v); len(*p) > 0 {
		*p = (*p)[:len(*p)-1]
		add(v)
	}
	return out
}

// keyPair is a testing/quick argument: two adversarial keys, usually one
// a variant of the other.
type keyPair struct{ A, B record.Key }

func (keyPair) Generate(src *mrand.Rand, _ int) reflect.Value {
	r := rand.New(rand.NewPCG(src.Uint64(), src.Uint64()))
	p := keyPair{A: adversarialKey(r)}
	switch vs := keyVariants(r, p.A); {
	case r.IntN(10) == 0:
		p.B = p.A
	case r.IntN(10) == 0 || len(vs) == 0:
		p.B = adversarialKey(r)
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
