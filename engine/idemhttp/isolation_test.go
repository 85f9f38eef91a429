package idemhttp_test

// Reliability campaign: tenant isolation. No choice of scope, endpoint
// and key bytes may make one tenant's request replay another's record,
// neither in the engine (record.Key with arbitrary bytes) nor through the
// middleware over HTTP; and the raw credential that selects a tenant is
// never written to the data directory.

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/quick"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/record"
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
func TestIsolationEngineNamedPairs(t *testing.T) {
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
func TestIsolationEngineProperty(t *testing.T) {
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
func TestIsolationEngineKeyLimits(t *testing.T) {
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

// isolationHandler answers 201 with a body naming its run, and remembers,
// for each run, the identity of the request it ran for.
type isolationHandler struct {
	ident func(*http.Request) string
	runs  atomic.Int64
	mu    sync.Mutex
	who   map[string]string // body -> identity
}

func newIsolationHandler(ident func(*http.Request) string) *isolationHandler {
	return &isolationHandler{ident: ident, who: map[string]string{}}
}

func (h *isolationHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	body := fmt.Sprintf(`{"run":%d}`, h.runs.Add(1))
	h.mu.Lock()
	h.who[body] = h.ident(r)
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, body)
}

// isolationReq is one request of an isolation run, and the identity of
// the record it must be answered from.
type isolationReq struct {
	ident          string
	method, target string
	hdr            []string // name, value pairs; "Host" sets Request.Host
}

// checkIsolation sends every request copies times, shuffled, from workers
// goroutines, all with the same body, and checks that each identity ran
// the handler once, that the run was its own, and that every other
// request of that identity replayed it.
func checkIsolation(t *testing.T, base string, h *isolationHandler, reqs []isolationReq, copies, workers int, seed uint64) {
	t.Helper()
	idents := map[string]bool{}
	var all []isolationReq
	for _, q := range reqs {
		if idents[q.ident] {
			t.Fatalf("identity %q listed twice", q.ident)
		}
		idents[q.ident] = true
		for range copies {
			all = append(all, q)
		}
	}
	rand.New(rand.NewPCG(seed, seed)).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })

	tr := &http.Transport{MaxIdleConns: workers, MaxIdleConnsPerHost: workers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	replies := make([]reply, len(all))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(all) {
					return
				}
				q := all[i]
				req, err := http.NewRequest(q.method, base+q.target, strings.NewReader(`{"amount":100}`))
				if err != nil {
					t.Error(err)
					return
				}
				for j := 0; j+1 < len(q.hdr); j += 2 {
					if q.hdr[j] == "Host" {
						req.Host = q.hdr[j+1]
						continue
					}
					req.Header.Set(q.hdr[j], q.hdr[j+1])
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Error(err)
					return
				}
				replies[i] = reply{resp.StatusCode, resp.Header, string(b)}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	first := map[string]string{} // identity -> body
	fresh := map[string]int{}    // identity -> first requests
	for i, q := range all {
		r := replies[i]
		if r.status != http.StatusCreated {
			t.Fatalf("%s %s (%s): %d %s", q.method, q.target, q.ident, r.status, r.body)
		}
		if r.header.Get("Idempotency-Replay") == "false" {
			fresh[q.ident]++
		}
		if body, ok := first[q.ident]; ok && body != r.body {
			t.Fatalf("%s was answered %s and %s", q.ident, body, r.body)
		}
		first[q.ident] = r.body
		h.mu.Lock()
		who := h.who[r.body]
		h.mu.Unlock()
		if who != q.ident {
			t.Fatalf("request of %q was answered with the record of %q", q.ident, who)
		}
	}
	for id := range idents {
		if fresh[id] != 1 {
			t.Errorf("%q: %d first requests; want 1", id, fresh[id])
		}
	}
	if n := h.runs.Load(); n != int64(len(idents)) {
		t.Fatalf("handler ran %d times for %d identities", n, len(idents))
	}
}

// Through the middleware with its defaults: tenants by Authorization,
// endpoints by method and path. Credentials, paths and keys are chosen to
// look alike; a sample of combinations, each with its neighbours that
// differ in one part, every one sent twice at once from several
// goroutines, with the same body: each combination runs once and gets
// only its own response.
func TestIsolationHTTPProperty(t *testing.T) {
	creds := []string{
		"", "Bearer a", "Bearer ab", "bearer a", "Bearer \u0430", "Bearer caf\u00e9", "Bearer cafe\u0301",
		"Bearer a:b", "Bearer a|b", "Bearer a/b", "Basic YTpi", "Bearer a\tb", "Bearer \u212a",
	}
	methods := []string{"POST", "PUT", "PATCH", "DELETE"}
	paths := []string{ // escaped targets; distinct once unescaped
		"/v1/calls", "/v1/calls/", "/v1/call", "/v1/a:b", "/v1/a%7Cb", "/v1/a/b", "/v1/caf%C3%A9",
		"/v1/cafe%CC%81", "/v1/%D0%B0", "/v1/a", "/v1/a%00b", "/v1/a%E2%88%95b", "/POST%20/v1/calls",
	}
	keys := []string{"k", "K", "k:1", "k|1", "k/1", "k%00", "a b", "a  b", `k"`, `k\`, "kk"}

	h := newIsolationHandler(func(r *http.Request) string {
		return strings.Join([]string{r.Header.Get("Authorization"), r.Method, r.URL.Path, r.Header.Get("Idempotency-Key")}, "\n")
	})
	e := openDiskEngine(t, t.TempDir(), &engine.Options{Durability: engine.Relaxed})
	srv, m := newServer(t, e, &idemhttp.Options{Logger: quietLogger()}, h)

	r := rand.New(rand.NewPCG(3, 4))
	seen := map[[4]int]bool{}
	var reqs []isolationReq
	add := func(c [4]int) {
		if seen[c] {
			return
		}
		seen[c] = true
		path, err := url.PathUnescape(paths[c[2]])
		if err != nil {
			t.Fatal(err)
		}
		q := isolationReq{
			ident:  strings.Join([]string{creds[c[0]], methods[c[1]], path, keys[c[3]]}, "\n"),
			method: methods[c[1]], target: paths[c[2]],
			hdr: []string{"Idempotency-Key", keys[c[3]]},
		}
		if creds[c[0]] != "" {
			q.hdr = append(q.hdr, "Authorization", creds[c[0]])
		}
		reqs = append(reqs, q)
	}
	sizes := [4]int{len(creds), len(methods), len(paths), len(keys)}
	for range 150 {
		var c [4]int
		for i := range c {
			c[i] = r.IntN(sizes[i])
		}
		add(c)
		for i := range c { // its neighbours: one part changed
			n := c
			n[i] = r.IntN(sizes[i])
			add(n)
		}
	}
	checkIsolation(t, srv.URL, h, reqs, 2, 8, 5)
	if s := m.Stats(); s.Conflicts != 0 || s.Proceeded != uint64(len(reqs)) {
		t.Fatalf("stats %+v; want %d proceeded, no conflicts", s, len(reqs))
	}
	t.Logf("%d combinations of %d credentials, %d endpoints and %d keys: %d requests, each answered from its own record",
		len(reqs), len(creds), len(methods)*len(paths), len(keys), 2*len(reqs))
}

// A custom Scope and RoutePattern that return adversarial strings: scope
// "a" + route "bc" is not scope "ab" + route "c", and so on for every
// pair of tenants and routes.
func TestIsolationHTTPCustomScopeAndRoute(t *testing.T) {
	// (Header values lose leading and trailing blanks on the way, so
	// none has them.)
	tenants := []string{"", "a", "ab", "a:", "a|", "a/", "a b", "\u0430", "ab:c"}
	routes := []string{"", "c", "bc", "b", ":b", "|b", "/b", "b c", "POST /c"}
	h := newIsolationHandler(func(r *http.Request) string {
		return r.Header.Get("X-Tenant") + "\n" + r.Header.Get("X-Route") + "\n" + r.Header.Get("Idempotency-Key")
	})
	e := openDiskEngine(t, t.TempDir(), &engine.Options{Durability: engine.Relaxed})
	srv, _ := newServer(t, e, &idemhttp.Options{
		Scope:        func(r *http.Request) string { return r.Header.Get("X-Tenant") },
		RoutePattern: func(r *http.Request) string { return r.Header.Get("X-Route") },
		Logger:       quietLogger(),
	}, h)
	var reqs []isolationReq
	for _, tn := range tenants {
		for _, rt := range routes {
			for _, k := range []string{"c", "k"} {
				reqs = append(reqs, isolationReq{
					ident:  tn + "\n" + rt + "\n" + k,
					method: "POST", target: "/same/path",
					hdr: []string{"X-Tenant", tn, "X-Route", rt, "Idempotency-Key", k},
				})
			}
		}
	}
	checkIsolation(t, srv.URL, h, reqs, 2, 8, 6)
}

// Routes of a ServeMux: the same key on different routes (and methods)
// never crosses; the same key on two resources of one route is a
// conflict that names the same tenant's original, never the other
// tenant's; two paths that unescape alike are one endpoint, and a
// conflict, not a replay.
func TestIsolationHTTPRoutes(t *testing.T) {
	h := newIsolationHandler(func(r *http.Request) string {
		return r.Header.Get("Authorization") + "\n" + r.Pattern + "\n" + r.Header.Get("Idempotency-Key")
	})
	e := openDiskEngine(t, t.TempDir(), &engine.Options{Durability: engine.Relaxed})
	m, err := idemhttp.New(e, &idemhttp.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	patterns := [][2]string{ // a pattern, and a target it matches
		{"POST /v1/calls", "/v1/calls"},
		{"POST /v1/calls/{id}", "/v1/calls/1"},
		{"PUT /v1/calls/{id}", "/v1/calls/1"},
		{"PATCH /v1/calls/{id}", "/v1/calls/1"},
		{"DELETE /v1/calls/{id}", "/v1/calls/1"},
		{"POST /v1/calls/{id}/hangup", "/v1/calls/1/hangup"},
		{"POST /v1/agents/{id}", "/v1/agents/1"},
		{"POST /v1/{kind}/1/x", "/v1/agents/1/x"},
		{"POST /files/{path...}", "/files/a/b"},
		{"POST api.example.com/v1/host", "/v1/host"},
	}
	mux := http.NewServeMux()
	for _, p := range patterns {
		mux.Handle(p[0], m.Handler(h))
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	var reqs []isolationReq
	for _, cred := range []string{"Bearer A", "Bearer B"} {
		for _, pt := range patterns {
			p, target := pt[0], pt[1]
			method, _, _ := strings.Cut(p, " ")
			hdr := []string{"Idempotency-Key", "k", "Authorization", cred}
			if strings.Contains(p, "api.example.com") {
				hdr = append(hdr, "Host", "api.example.com")
			}
			reqs = append(reqs, isolationReq{ident: cred + "\n" + p + "\n" + "k", method: method, target: target, hdr: hdr})
		}
	}
	checkIsolation(t, srv.URL, h, reqs, 3, 8, 7)

	// One route, another resource, same key: a conflict with the same
	// tenant's original request.
	ids := map[string]string{}
	for _, cred := range []string{"Bearer A", "Bearer B"} {
		orig := do(t, "POST", srv.URL+"/v1/calls/1", "k", `{"amount":100}`, "Authorization", cred)
		if orig.header.Get("Idempotency-Replay") != "true" {
			t.Fatalf("%s: retry on /v1/calls/1 not replayed", cred)
		}
		ids[cred] = orig.header.Get("X-Request-Id")
	}
	if ids["Bearer A"] == ids["Bearer B"] {
		t.Fatalf("two tenants share the request id %q", ids["Bearer A"])
	}
	for _, cred := range []string{"Bearer A", "Bearer B"} {
		r := do(t, "POST", srv.URL+"/v1/calls/2", "k", `{"amount":100}`, "Authorization", cred)
		p := problemOf(t, r)
		if r.status != 409 || p.Code != idemhttp.CodeConflict || p.Fields["conflicts_with"] != ids[cred] {
			t.Fatalf("%s on another resource: %d %+v; want a conflict with its own %s", cred, r.status, p, ids[cred])
		}
	}

	// Without a pattern the endpoint is the unescaped path: /v1/a%2Fb is
	// the endpoint of /v1/a/b, but not its request, so it conflicts.
	h2 := newIsolationHandler(func(r *http.Request) string { return r.URL.RawPath })
	srv2, _ := newServer(t, openDiskEngine(t, t.TempDir(), &engine.Options{Durability: engine.Relaxed}),
		&idemhttp.Options{Logger: quietLogger()}, h2)
	a := do(t, "POST", srv2.URL+"/v1/a/b", "k", "x")
	b := do(t, "POST", srv2.URL+"/v1/a%2Fb", "k", "x")
	if a.status != 201 || b.status != 409 || problemOf(t, b).Fields["conflicts_with"] != a.header.Get("X-Request-Id") {
		t.Fatalf("/v1/a/b then /v1/a%%2Fb with one key: %d, %d %s; want 201, then 409 naming the first", a.status, b.status, b.body)
	}
}

// The limits over HTTP: a key over 255 bytes or not printable ASCII, an
// endpoint (method, space and route) over 1024 bytes, a custom scope over
// 1024 bytes get 400 idempotency_key_invalid with a detail that says
// what, and the handler does not run; at the limits requests work. A
// credential of any size is a 32-byte digest, so long credentials work
// and stay distinct.
func TestIsolationHTTPLimits(t *testing.T) {
	var runs atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := runs.Add(1)
		w.WriteHeader(201)
		fmt.Fprint(w, n)
	})
	e := openDiskEngine(t, t.TempDir(), &engine.Options{Durability: engine.Relaxed})
	plain, _ := newServer(t, e, &idemhttp.Options{Logger: quietLogger()}, h)
	custom, _ := newServer(t, e, &idemhttp.Options{Logger: quietLogger(),
		Scope: func(r *http.Request) string { return r.Header.Get("X-Tenant") }}, h)
	longCred := "Bearer " + strings.Repeat("c", 64<<10)
	for _, tc := range []struct {
		name   string
		srv    *httptest.Server
		path   string
		hdr    []string
		detail string // in the 400's detail; "" for a 201
	}{
		{"key of 255 bytes", plain, "/x", []string{"Idempotency-Key", strings.Repeat("k", 255)}, ""},
		{"key of 256 bytes", plain, "/x", []string{"Idempotency-Key", strings.Repeat("k", 256)}, "256 bytes long (max 255)"},
		{"quoted key of 256 bytes", plain, "/x", []string{"Idempotency-Key", `"` + strings.Repeat("k", 256) + `"`}, "256 bytes long (max 255)"},
		{"Cyrillic key", plain, "/x", []string{"Idempotency-Key", "p\u0430y"}, "not printable ASCII"},
		{"unterminated quoted key", plain, "/x", []string{"Idempotency-Key", `"a\"`}, "unterminated"},
		{"endpoint of 1024 bytes", plain, "/" + strings.Repeat("p", 1024-len("POST /")), []string{"Idempotency-Key", "k"}, ""},
		{"endpoint of 1025 bytes", plain, "/" + strings.Repeat("p", 1025-len("POST /")), []string{"Idempotency-Key", "k"}, "endpoint is 1025 bytes (max 1024)"},
		{"endpoint of 8 KiB", plain, "/" + strings.Repeat("p", 8<<10), []string{"Idempotency-Key", "k"}, "endpoint is 8198 bytes (max 1024)"},
		{"credential of 64 KiB", plain, "/x", []string{"Idempotency-Key", "long", "Authorization", longCred}, ""},
		{"another credential of 64 KiB", plain, "/x", []string{"Idempotency-Key", "long", "Authorization", longCred[:len(longCred)-1] + "d"}, ""},
		{"custom scope of 1024 bytes", custom, "/x", []string{"Idempotency-Key", "k", "X-Tenant", strings.Repeat("t", 1024)}, ""},
		{"custom scope of 1025 bytes", custom, "/x", []string{"Idempotency-Key", "k", "X-Tenant", strings.Repeat("t", 1025)}, "scope is 1025 bytes (max 1024)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for try := range 2 { // nothing is recorded for a refused request
				before := runs.Load()
				r := do(t, "POST", tc.srv.URL+tc.path, "", "body", tc.hdr...)
				if tc.detail == "" {
					want := "false"
					if try > 0 {
						want = "true"
					}
					if r.status != 201 || r.header.Get("Idempotency-Replay") != want {
						t.Fatalf("try %d: %d, Idempotency-Replay %q: %s; want 201, %s", try, r.status, r.header.Get("Idempotency-Replay"), r.body, want)
					}
					continue
				}
				p := problemOf(t, r)
				if r.status != 400 || p.Code != idemhttp.CodeKeyInvalid || !strings.Contains(p.Detail, tc.detail) {
					t.Fatalf("try %d: %d %+v; want 400 %s saying %q", try, r.status, p, idemhttp.CodeKeyInvalid, tc.detail)
				}
				if runs.Load() != before {
					t.Fatal("the handler ran for a refused request")
				}
			}
		})
	}
}

// The raw credential never reaches the data directory. A run through
// the middleware with a distinctive credential — first requests, replays,
// conflicts, released 5xx answers, stored 4xx answers, every method —
// then the engine is closed and every byte of every file under the data
// directory is searched for the secret (raw, hex and base64). The same
// again after a restart that replays everything from disk. The keys are
// found in the files, so the search does look where the records are.
func TestIsolationCanaryCredentialNeverStored(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header string
		opts   idemhttp.Options
	}{
		{"Authorization", "Authorization", idemhttp.Options{}},
		{"X-Api-Key", "X-Api-Key", idemhttp.Options{ScopeHeader: "X-Api-Key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var nonce [16]byte
			crand.Read(nonce[:])
			secret := "sk_live_ISOLATION_CANARY_" + hex.EncodeToString(nonce[:])
			cred := "Bearer " + secret
			keyMark := "canary-key-" + hex.EncodeToString(nonce[:4])
			needles := map[string][]byte{
				"raw":    []byte(secret),
				"hex":    []byte(hex.EncodeToString([]byte(secret))),
				"base64": []byte(base64.StdEncoding.EncodeToString([]byte(cred))),
			}

			var runs atomic.Int64
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get(tc.header) != cred {
					t.Errorf("handler saw %s %q", tc.header, r.Header.Get(tc.header))
				}
				runs.Add(1)
				switch r.URL.Path {
				case "/fail":
					if runs.Load()%2 == 1 {
						w.WriteHeader(503) // released; the retry runs again
						return
					}
				case "/invalid":
					w.WriteHeader(422) // recorded
					io.WriteString(w, `{"error":"invalid"}`)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Location", "/v1/things/"+r.Header.Get("Idempotency-Key"))
				w.WriteHeader(201)
				fmt.Fprintf(w, `{"id":%d}`, runs.Load())
			})
			opts := tc.opts
			opts.Logger = quietLogger()
			dir := t.TempDir()
			run := func(wantReplay bool) {
				e := openDiskEngine(t, dir, nil) // the defaults: Synced
				srv, m := newServer(t, e, &opts, h)
				for i := range 30 {
					key := fmt.Sprintf("%s-%d", keyMark, i)
					path := [...]string{"/v1/payments", "/fail", "/invalid"}[i%3]
					method := [...]string{"POST", "PUT", "PATCH", "DELETE"}[i%4]
					first := do(t, method, srv.URL+path, key, `{"amount":100}`, tc.header, cred)
					again := do(t, method, srv.URL+path, key, `{"amount":100}`, tc.header, cred)
					if path == "/fail" && !wantReplay {
						continue // 503, then a run that is recorded
					}
					if wantReplay && first.header.Get("Idempotency-Replay") != "true" {
						t.Fatalf("%s after a restart: %d, not replayed", key, first.status)
					}
					if again.header.Get("Idempotency-Replay") != "true" || again.body != first.body {
						t.Fatalf("%s: retry %d %q; want the replay of %q", key, again.status, again.body, first.body)
					}
					if !wantReplay {
						c := do(t, method, srv.URL+path, key, `{"amount":200}`, tc.header, cred)
						if c.status != 409 {
							t.Fatalf("%s: different body: %d; want 409", key, c.status)
						}
					}
				}
				if s := m.Stats(); s.Replayed == 0 || (!wantReplay && (s.Conflicts == 0 || s.Released == 0)) {
					t.Fatalf("the run did not exercise replays, conflicts and releases: %+v", s)
				}
				// What is stored under the tenant is its digest.
				scope := idemhttp.CredentialScope(cred)
				n := 0
				err := e.Scan(context.Background(), engine.ScanOptions{}, func(en engine.Entry) error {
					n++
					if en.Key.Scope != scope {
						return fmt.Errorf("record %s is not under the credential's digest", en.Key)
					}
					return nil
				})
				if err != nil || n == 0 {
					t.Fatalf("scan: %d records, %v", n, err)
				}
				srv.Close()
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
			}
			scanDir := func(when string) {
				files, size, foundKey := 0, 0, false
				var walk func(string)
				walk = func(d string) {
					ents, err := os.ReadDir(d)
					if err != nil {
						t.Fatal(err)
					}
					for _, ent := range ents {
						p := filepath.Join(d, ent.Name())
						if ent.IsDir() {
							walk(p)
							continue
						}
						b, err := os.ReadFile(p)
						if err != nil {
							t.Fatal(err)
						}
						files++
						size += len(b)
						foundKey = foundKey || bytes.Contains(b, []byte(keyMark))
						for form, needle := range needles {
							if i := bytes.Index(b, needle); i >= 0 {
								t.Errorf("%s: %s holds the credential (%s) at offset %d", when, ent.Name(), form, i)
							}
						}
					}
				}
				walk(dir)
				if files == 0 || (when == "first run" && !foundKey) {
					t.Fatalf("%s: %d files, %d bytes, idempotency keys found: %v; the search missed the records", when, files, size, foundKey)
				}
				t.Logf("%s: %d files, %d bytes searched; the credential is in none", when, files, size)
			}
			run(false)
			scanDir("first run")
			run(true)
			scanDir("after a restart")
		})
	}
}

// The middleware's scope for a credential is a 32-byte digest that
// depends on every byte of it, look-alikes and normalisation forms
// included; no credential is the anonymous scope "".
func TestIsolationCredentialScopes(t *testing.T) {
	creds := []string{"Bearer a", "Bearer \u0430", "Bearer caf\u00e9", "Bearer cafe\u0301", "bearer a", "Bearer a ", "Bearer a\x00", "Bearer a\tb", "Bearer a b"}
	if s := idemhttp.CredentialScope(""); s != "" {
		t.Fatalf("scope of no credential %x; want the anonymous scope", s)
	}
	seen := map[string]string{}
	for _, c := range creds {
		s := idemhttp.CredentialScope(c)
		if len(s) != 32 {
			t.Fatalf("scope of %q is %d bytes; want a 32-byte digest", c, len(s))
		}
		if o, dup := seen[s]; dup {
			t.Fatalf("credentials %q and %q share a scope", o, c)
		}
		seen[s] = c
	}
}
