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
	"github.com/idemkv/idemkv/engine/internal/idemtest"
	"github.com/idemkv/idemkv/record"
	"github.com/idemkv/idemkv/record/recordtest"
)

// Each named pair: after a completes, b with the very same fingerprint
// proceeds (never a's replay, never a conflict), and each then replays
// its own response.
func TestIsolationNamedKeyPairs(t *testing.T) {
	ctx := context.Background()
	fp := record.Sum([]byte(`{"amount":100}`))
	for _, tc := range recordtest.NamedPairs {
		t.Run(tc.Name, func(t *testing.T) {
			if tc.A == tc.B {
				t.Fatal("the pair is one key")
			}
			e := idemtest.OpenDiskEngine(t, t.TempDir(), &engine.Options{Durability: engine.Relaxed})
			ids := map[record.Key]string{tc.A: "req-a", tc.B: "req-b"}
			for _, k := range []record.Key{tc.A, tc.B} {
				res, err := e.Begin(ctx, engine.Request{Key: k, Fingerprint: fp, RequestID: ids[k]})
				if err != nil || res.Outcome != engine.Proceed {
					t.Fatalf("Begin(%s) = %v, %v; want proceed", k, res.Outcome, err)
				}
				if err := res.Claim.Complete(ctx, engine.Response{Status: 201, Body: []byte(k.String())}); err != nil {
					t.Fatal(err)
				}
			}
			for _, k := range []record.Key{tc.A, tc.B} {
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
	for _, p := range recordtest.NamedPairs {
		add(p.A)
		add(p.B)
	}
	for range bases {
		k := recordtest.AdversarialKey(r)
		add(k)
		for _, v := range recordtest.KeyVariants(r, k) {
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
	e := idemtest.OpenDiskEngine(t, dir, opts)
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
	e = idemtest.OpenDiskEngine(t, dir, opts)
	for i, k := range keys {
		rec, err := e.Get(ctx, k)
		if err != nil || !bytes.Equal(rec.Body, bodyOf(i)) {
			t.Fatalf("after a restart, Get(%s) = %v; want its own record", k, err)
		}
	}
	replays("after a restart")
	t.Logf("%d adversarial keys (%d random bases and their variants, %d named pairs): each proceeded once, replayed and conflicted only with itself",
		len(keys), bases, len(recordtest.NamedPairs))
}

// The engine's limits: empty or oversized parts are refused with
// ErrInvalidKey naming the part, never a panic; parts at the limit work.
func TestIsolationKeyLimits(t *testing.T) {
	ctx := context.Background()
	e := idemtest.OpenDiskEngine(t, t.TempDir(), &engine.Options{Durability: engine.Relaxed})
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
