package engine_test

// Tenant isolation in the engine: no choice of scope, endpoint and key
// bytes (record.Key with arbitrary bytes) may make one tenant's request
// replay another's record, before or after a restart.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/idemkv/idemkv/engine"
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

// isolationPairs are named pairs of keys that a careless encoding would
// confuse.
var isolationPairs = []struct {
	name string
	a, b record.Key
}{
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

// Each named pair: after a completes, b with the very same fingerprint
// proceeds (never a's replay, never a conflict), and each then replays
// its own response.
func TestIsolationNamedKeyPairs(t *testing.T) {
	ctx := context.Background()
	fp := record.Sum([]byte(`{"amount":100}`))
	for _, tc := range isolationPairs {
		t.Run(tc.name, func(t *testing.T) {
			if tc.a == tc.b {
				t.Fatal("the pair is one key")
			}
			e := openDiskEngine(t, t.TempDir(), &engine.Options{Durability: engine.Relaxed})
			ids := map[record.Key]string{tc.a: "req-a", tc.b: "req-b"}
			for _, k := range []record.Key{tc.a, tc.b} {
				res, err := e.Begin(ctx, engine.Request{Key: k, Fingerprint: fp, RequestID: ids[k]})
				if err != nil || res.Outcome != engine.Proceed {
					t.Fatalf("Begin(%s) = %v, %v; want proceed", k, res.Outcome, err)
				}
				if err := res.Claim.Complete(ctx, engine.Response{Status: 201, Body: []byte(k.String())}); err != nil {
					t.Fatal(err)
				}
			}
			for _, k := range []record.Key{tc.a, tc.b} {
				res, err := e.Begin(ctx, engine.Request{Key: k, Fingerprint: fp, RequestID: "retry"})
				if err != nil || res.Outcome != engine.Replay || string(res.Record.Body) != k.String() {
					t.Fatalf("retry of %s: %v %v; want its own replay", k, res.Outcome, err)
				}
				rec, err := e.Get(ctx, k)
				if err != nil || string(rec.Body) != k.String() || rec.RequestID != ids[k] {
					t.Fatalf("Get(%s) = %v; want its own record", k, err)
				}
			}
		})
	}
}

// The property over thousands of adversarial keys through a real engine:
// every key proceeds the first time although every other key was already
// completed with the same fingerprint; every retry replays its own
// response; every different request conflicts with its own original;
// scans by scope and endpoint select exactly their keys; and all of it
// again after a restart, from disk.
func TestIsolationAdversarialKeys(t *testing.T) {
	const bases = 250
	r := rand.New(rand.NewPCG(1, 2))
	index := map[record.Key]int{}
	var keys []record.Key
	add := func(k record.Key) {
		if _, dup := index[k]; !dup && k.Validate() == nil {
			index[k] = len(keys)
			keys = append(keys, k)
		}
	}
	for _, p := range isolationPairs {
		add(p.a)
		add(p.b)
	}
	for range bases {
		k := adversarialKey(r)
		add(k)
		for _, v := range keyVariants(r, k) {
			add(v)
		}
	}
	bodyOf := func(i int) []byte { return fmt.Appendf(nil, "record %d of %x", i, keys[i].Append(nil)) }
	reqID := func(i int) string { return fmt.Sprint("req-", i) }
	fp := record.Sum([]byte(`{"amount":100}`))
	other := record.Sum([]byte(`{"amount":999}`))
	ctx := context.Background()

	dir := t.TempDir()
	opts := &engine.Options{Durability: engine.Relaxed}
	e := openDiskEngine(t, dir, opts)
	for _, i := range r.Perm(len(keys)) {
		res, err := e.Begin(ctx, engine.Request{Key: keys[i], Fingerprint: fp, RequestID: reqID(i)})
		if err != nil || res.Outcome != engine.Proceed || res.Recovered {
			t.Fatalf("first Begin(%s) = %v (recovered %v, original %q), %v; want a fresh proceed",
				keys[i], res.Outcome, res.Recovered, res.OriginalRequestID, err)
		}
		if err := res.Claim.Complete(ctx, engine.Response{Status: 201, Body: bodyOf(i)}); err != nil {
			t.Fatal(err)
		}
	}
	replays := func(when string) {
		t.Helper()
		for _, i := range r.Perm(len(keys)) {
			res, err := e.Begin(ctx, engine.Request{Key: keys[i], Fingerprint: fp, RequestID: "retry"})
			if err != nil || res.Outcome != engine.Replay {
				t.Fatalf("%s: retry of %s = %v, %v; want replay", when, keys[i], res.Outcome, err)
			}
			if !bytes.Equal(res.Record.Body, bodyOf(i)) || res.Record.RequestID != reqID(i) {
				t.Fatalf("%s: retry of %s replayed %q (request %s); want its own %q", when, keys[i],
					res.Record.Body, res.Record.RequestID, bodyOf(i))
			}
			res, err = e.Begin(ctx, engine.Request{Key: keys[i], Fingerprint: other, RequestID: "other"})
			if err != nil || res.Outcome != engine.Conflict || res.OriginalRequestID != reqID(i) {
				t.Fatalf("%s: different request with %s = %v (original %q), %v; want a conflict with %s",
					when, keys[i], res.Outcome, res.OriginalRequestID, err, reqID(i))
			}
		}
	}
	replays("same process")

	// Scans: a scope (or endpoint) prefix selects its keys and no other.
	scan := func(p record.Prefix) map[record.Key]bool {
		got := map[record.Key]bool{}
		err := e.Scan(ctx, engine.ScanOptions{Prefix: p}, func(en engine.Entry) error {
			if en.Err != nil {
				return en.Err
			}
			got[en.Key] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if n := len(scan(record.AllKeys())); n != len(keys) {
		t.Fatalf("a scan of every key found %d; want %d", n, len(keys))
	}
	for _, i := range r.Perm(len(keys))[:150] {
		k := keys[i]
		for _, sel := range []struct {
			p    record.Prefix
			want func(record.Key) bool
		}{
			{record.ScopePrefix(k.Scope), func(o record.Key) bool { return o.Scope == k.Scope }},
			{record.EndpointPrefix(k.Scope, k.Endpoint), func(o record.Key) bool { return o.Scope == k.Scope && o.Endpoint == k.Endpoint }},
		} {
			got := scan(sel.p)
			for _, o := range keys {
				if got[o] != sel.want(o) {
					t.Fatalf("scan for the prefix of %s: selected(%s) = %v", k, o, got[o])
				}
			}
		}
	}

	// From disk: no cached records, key filters rebuilt.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openDiskEngine(t, dir, opts)
	for i, k := range keys {
		rec, err := e.Get(ctx, k)
		if err != nil || !bytes.Equal(rec.Body, bodyOf(i)) {
			t.Fatalf("after a restart, Get(%s) = %v; want its own record", k, err)
		}
	}
	replays("after a restart")
	t.Logf("%d adversarial keys (%d random bases and their variants, %d named pairs): each proceeded once, replayed and conflicted only with itself",
		len(keys), bases, len(isolationPairs))
}

// The engine's limits: empty or oversized parts are refused with
// ErrInvalidKey naming the part, never a panic; parts at the limit work.
func TestIsolationKeyLimits(t *testing.T) {
	ctx := context.Background()
	e := openDiskEngine(t, t.TempDir(), &engine.Options{Durability: engine.Relaxed})
	fp := record.Sum([]byte("x"))
	for _, tc := range []struct {
		name string
		key  record.Key
		part string // in the error; "" when the key is valid
	}{
		{"key of 1 byte", record.Key{Key: "k"}, ""},
		{"key of 255 bytes", record.Key{Key: strings.Repeat("k", record.MaxKeyLen)}, ""},
		{"scope of 1024 bytes", record.Key{Scope: strings.Repeat("s", record.MaxScopeLen), Key: "k"}, ""},
		{"endpoint of 1024 bytes", record.Key{Endpoint: strings.Repeat("e", record.MaxEndpointLen), Key: "k"}, ""},
		{"empty key", record.Key{Scope: "s", Endpoint: "e"}, "empty idempotency key"},
		{"key of 256 bytes", record.Key{Key: strings.Repeat("k", record.MaxKeyLen+1)}, "idempotency key is 256 bytes"},
		{"key of 64 KiB", record.Key{Key: strings.Repeat("k", 64<<10)}, "idempotency key is 65536 bytes"},
		{"scope of 1025 bytes", record.Key{Scope: strings.Repeat("s", record.MaxScopeLen+1), Key: "k"}, "scope is 1025 bytes"},
		{"scope of 1 MiB", record.Key{Scope: strings.Repeat("s", 1<<20), Key: "k"}, "scope is 1048576 bytes"},
		{"endpoint of 1025 bytes", record.Key{Endpoint: strings.Repeat("e", record.MaxEndpointLen+1), Key: "k"}, "endpoint is 1025 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.Begin(ctx, engine.Request{Key: tc.key, Fingerprint: fp, RequestID: "r"})
			_, gerr := e.Get(ctx, tc.key)
			if tc.part == "" {
				if err != nil || res.Outcome != engine.Proceed {
					t.Fatalf("Begin = %v, %v; want proceed", res.Outcome, err)
				}
				if err := res.Claim.Complete(ctx, engine.Response{Status: 200}); err != nil {
					t.Fatal(err)
				}
				if _, err := e.Get(ctx, tc.key); err != nil {
					t.Fatalf("Get: %v", err)
				}
				return
			}
			for _, err := range []error{err, gerr} {
				if !errors.Is(err, engine.ErrInvalidKey) || !strings.Contains(err.Error(), tc.part) {
					t.Fatalf("error %v; want ErrInvalidKey saying %q", err, tc.part)
				}
			}
		})
	}
}
