// Package recordtest generates adversarial record keys for the isolation
// tests of anything that stores records by key (the key encoding, the
// engine, the middleware, a store): keys made of the encoding's own length
// bytes, other encodings' separators and Unicode look-alikes, and for a key
// the variants that must all be different records. Generation is
// deterministic for a given random source.
package recordtest

import (
	"math/rand/v2"
	"strings"

	"github.com/idemkv/idemkv/record"
)

// A Pair is two keys that must be different records.
type Pair struct {
	Name string
	A, B record.Key
}

// Atoms are what adversarial key parts are made of: the bytes
// the key encoding itself uses (uvarint lengths, one- and two-byte),
// separators that other encodings use, and Unicode look-alikes.
var Atoms = []string{
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

// LookAlikes print (or normalise) alike but are different bytes.
var LookAlikes = [][2]string{
	{"a", "\u0430"}, {"e", "\u0435"}, {"\u00e9", "e\u0301"}, {"K", "\u212a"}, {"k", "K"},
	{"fi", "\ufb01"}, {"A", "\uff21"}, {"/", "\xc0\xaf"}, {"/", "\u2215"}, {":", "\uff1a"},
	{"|", "\u01c0"}, {"", "\u200b"}, {"", "\x00"},
}

// adversarialPart returns up to about max bytes of atoms and random bytes;
// now and then a long run, so that two-byte length prefixes are exercised.
func adversarialPart(r *rand.Rand, max int) string {
	var b strings.Builder
	if r.IntN(10) == 0 {
		b.WriteString(strings.Repeat(Atoms[r.IntN(len(Atoms))], 60+r.IntN(80)))
	}
	for n := r.IntN(7); n > 0; n-- {
		if r.IntN(4) == 0 {
			b.WriteByte(byte(r.UintN(256)))
		} else {
			b.WriteString(Atoms[r.IntN(len(Atoms))])
		}
	}
	s := b.String()
	if len(s) > max {
		s = s[:max]
	}
	return s
}

func AdversarialKey(r *rand.Rand) record.Key {
	k := record.Key{
		Scope:    adversarialPart(r, record.MaxScopeLen),
		Endpoint: adversarialPart(r, record.MaxEndpointLen),
		Key:      adversarialPart(r, record.MaxKeyLen),
	}
	if k.Key == "" {
		k.Key = Atoms[r.IntN(len(Atoms))]
	}
	return k
}

// KeyVariants returns keys close to k that must all be different records:
// the same bytes split differently among the parts (scope "a" + endpoint
// "bc" against scope "ab" + endpoint "c"), k's own encoding injected into
// one part, look-alike substitutions and one-byte extensions. Keys that
// Validate refuses are left out.
func KeyVariants(r *rand.Rand, k record.Key) []record.Key {
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
		la := LookAlikes[r.IntN(len(LookAlikes))]
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

// NamedPairs are named pairs of keys that a careless encoding would
// confuse.
var NamedPairs = []Pair{
	{"scope/endpoint boundary", record.Key{Scope: "a", Endpoint: "bc", Key: "k"}, record.Key{Scope: "ab", Endpoint: "c", Key: "k"}},
	{"endpoint/key boundary", record.Key{Scope: "t", Endpoint: "POST /a", Key: "b"}, record.Key{Scope: "t", Endpoint: "POST /", Key: "ab"}},
	{"scope/key boundary", record.Key{Scope: "tk", Key: "1"}, record.Key{Scope: "t", Key: "k1"}},
	{"NUL separator", record.Key{Scope: "a\x00b", Endpoint: "c", Key: "k"}, record.Key{Scope: "a", Endpoint: "b\x00c", Key: "k"}},
	{"slash separator", record.Key{Scope: "a/b", Endpoint: "c", Key: "k"}, record.Key{Scope: "a", Endpoint: "b/c", Key: "k"}},
	{"colon separator", record.Key{Scope: "a:b", Endpoint: "c", Key: "k"}, record.Key{Scope: "a", Endpoint: "b:c", Key: "k"}},
	{"pipe separator", record.Key{Scope: "a", Endpoint: "b|c", Key: "k"}, record.Key{Scope: "a", Endpoint: "b", Key: "c|k"}},
	{"forged length prefix", record.Key{Scope: "a\x01b", Endpoint: "", Key: "k"}, record.Key{Scope: "a", Endpoint: "b", Key: "k"}},
	{"encoded prefix in scope", record.Key{Scope: "\x01a\x02bc", Endpoint: "", Key: "k"}, record.Key{Scope: "a", Endpoint: "bc", Key: "k"}},
	{"whole encoding as key", record.Key{Scope: "t1", Endpoint: "POST /x", Key: "k"}, record.Key{Key: "\x02t1\x07POST /x\x01k"}},
	{"anonymous vs NUL scope", record.Key{Scope: "", Endpoint: "e", Key: "k"}, record.Key{Scope: "\x00", Endpoint: "e", Key: "k"}},
	{"trailing NUL in key", record.Key{Scope: "t", Endpoint: "e", Key: "k"}, record.Key{Scope: "t", Endpoint: "e", Key: "k\x00"}},
	{"trailing space in key", record.Key{Scope: "t", Endpoint: "e", Key: "k"}, record.Key{Scope: "t", Endpoint: "e", Key: "k "}},
	{"one- vs two-byte length", record.Key{Scope: strings.Repeat("a", 128), Key: "k"}, record.Key{Scope: strings.Repeat("a", 127), Endpoint: "a", Key: "k"}},
	{"two-byte length bytes in scope", record.Key{Scope: "\x80\x01", Endpoint: "x", Key: "k"}, record.Key{Scope: "", Endpoint: "\x80\x01x", Key: "k"}},
	{"at the limits", record.Key{Scope: strings.Repeat("s", 1024), Endpoint: strings.Repeat("e", 1024), Key: strings.Repeat("k", 255)},
		record.Key{Scope: strings.Repeat("s", 1023), Endpoint: "s" + strings.Repeat("e", 1023), Key: "e" + strings.Repeat("k", 254)}},
	{"Cyrillic а in key", record.Key{Scope: "t", Endpoint: "e", Key: "pay-a"}, record.Key{Scope: "t", Endpoint: "e", Key: "pay-\u0430"}},
	{"Cyrillic а in scope", record.Key{Scope: "acme", Endpoint: "e", Key: "k"}, record.Key{Scope: "\u0430cme", Endpoint: "e", Key: "k"}},
	{"NFC vs NFD key", record.Key{Scope: "t", Endpoint: "e", Key: "caf\u00e9"}, record.Key{Scope: "t", Endpoint: "e", Key: "cafe\u0301"}},
	{"NFC vs NFD endpoint", record.Key{Scope: "t", Endpoint: "POST /caf\u00e9", Key: "k"}, record.Key{Scope: "t", Endpoint: "POST /cafe\u0301", Key: "k"}},
	{"Kelvin sign", record.Key{Scope: "t", Endpoint: "e", Key: "K"}, record.Key{Scope: "t", Endpoint: "e", Key: "\u212a"}},
	{"case", record.Key{Scope: "t", Endpoint: "e", Key: "key"}, record.Key{Scope: "t", Endpoint: "e", Key: "KEY"}},
	{"zero-width space", record.Key{Scope: "t", Endpoint: "e", Key: "ab"}, record.Key{Scope: "t", Endpoint: "e", Key: "a\u200bb"}},
	{"fullwidth", record.Key{Scope: "t", Endpoint: "e", Key: "A"}, record.Key{Scope: "t", Endpoint: "e", Key: "\uff21"}},
	{"overlong slash", record.Key{Scope: "t", Endpoint: "POST /a/b", Key: "k"}, record.Key{Scope: "t", Endpoint: "POST /a\xc0\xafb", Key: "k"}},
}
