package record_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/idemkv/idemkv/codec"
	"github.com/idemkv/idemkv/record"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func TestKeyValidate(t *testing.T) {
	tests := []struct {
		name string
		key  record.Key
		ok   bool
	}{
		{"plain", record.Key{Scope: "t", Endpoint: "POST /v1/calls", Key: "k"}, true},
		{"empty scope and endpoint", record.Key{Key: "k"}, true},
		{"empty key", record.Key{Scope: "t", Endpoint: "e"}, false},
		{"longest key", record.Key{Key: strings.Repeat("k", record.MaxKeyLen)}, true},
		{"key too long", record.Key{Key: strings.Repeat("k", record.MaxKeyLen+1)}, false},
		{"scope too long", record.Key{Scope: strings.Repeat("s", record.MaxScopeLen+1), Key: "k"}, false},
		{"endpoint too long", record.Key{Endpoint: strings.Repeat("e", record.MaxEndpointLen+1), Key: "k"}, false},
		{"binary bytes", record.Key{Scope: "\x00\xff", Endpoint: "\x01", Key: "\x00"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.key.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v; want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, record.ErrInvalidKey) {
				t.Fatalf("error %v does not match ErrInvalidKey", err)
			}
			if !tt.ok {
				return
			}
			enc := tt.key.Append(nil)
			if len(enc) != tt.key.EncodedLen() {
				t.Errorf("EncodedLen = %d; encoding is %d bytes", tt.key.EncodedLen(), len(enc))
			}
			got, err := record.DecodeKey(enc)
			if err != nil || got != tt.key {
				t.Fatalf("DecodeKey = %v, %v; want %v", got, err, tt.key)
			}
		})
	}
}

// TestKeyEncodingUnambiguous moves bytes across the boundaries between the
// parts of a key, the way a hostile tenant would try separator injection,
// and checks that distinct keys never encode alike.
func TestKeyEncodingUnambiguous(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte{0, 1, 2, 3, '/', ':', 0x7f, 0x80, 0xff, 'a'}
	seen := map[string]record.Key{}
	for i := 0; i < 200000; i++ {
		var parts [3][]byte
		for j := range parts {
			n := rng.IntN(4)
			if j == 2 {
				n++
			}
			for range n {
				parts[j] = append(parts[j], alphabet[rng.IntN(len(alphabet))])
			}
		}
		k := record.Key{Scope: string(parts[0]), Endpoint: string(parts[1]), Key: string(parts[2])}
		enc := string(k.Append(nil))
		if prev, ok := seen[enc]; ok && prev != k {
			t.Fatalf("%v and %v both encode as %x", prev, k, enc)
		}
		seen[enc] = k
		// A scope's prefix selects only that scope's keys.
		if p := record.ScopePrefix(k.Scope).Append(nil); !strings.HasPrefix(enc, string(p)) {
			t.Fatalf("%v does not start with its scope prefix", k)
		}
	}
	for enc, k := range seen {
		for _, other := range []string{"", "\x00", "a", "\xff\x01"} {
			p := string(record.ScopePrefix(other).Append(nil))
			if strings.HasPrefix(enc, p) != (k.Scope == other) {
				t.Fatalf("scope prefix %q and key %v disagree", other, k)
			}
			p = string(record.EndpointPrefix(k.Scope, other).Append(nil))
			if strings.HasPrefix(enc, p) != (k.Endpoint == other) {
				t.Fatalf("endpoint prefix %q and key %v disagree", other, k)
			}
		}
	}
}

func TestFingerprint(t *testing.T) {
	// Frozen: changing the seed or the framing changes this value and
	// breaks every stored record.
	if got, want := record.Sum([]byte(`{"amount":100}`)), (record.Fingerprint{Version: 1, Sum: 0x16616d64334c1145}); got != want {
		t.Errorf("Sum = %#x; want %#x (the fingerprint algorithm changed)", got.Sum, want.Sum)
	}
	fields := func(fs ...string) record.Fingerprint {
		h := record.NewHasher()
		for _, f := range fs {
			h.FieldString(f)
		}
		return h.Sum()
	}
	if fields("ab", "c") == fields("a", "bc") {
		t.Error(`fields "ab","c" and "a","bc" have one fingerprint`)
	}
	if fields("POST", "/a") == fields("POST", "/b") {
		t.Error("different fields, same fingerprint")
	}
	h1 := record.NewHasher()
	h1.FieldString("POST")
	h2 := record.NewHasher()
	h2.Field([]byte("POST"))
	body := []byte(strings.Repeat("0123456789", 100))
	_, _ = h1.Write(body)
	for i := 0; i < len(body); i += 7 {
		_, _ = h2.Write(body[i:min(i+7, len(body))])
	}
	if h1.Sum() != h2.Sum() {
		t.Error("the fingerprint depends on how the body was chunked")
	}
	h3 := record.NewHasher()
	h3.FieldString("POST")
	_, _ = h3.Write(body[:len(body)-1])
	if h3.Sum() == h1.Sum() {
		t.Error("a shorter body has the same fingerprint")
	}
	if s1, s2 := h1.Sum(), h1.Sum(); s1 != s2 {
		t.Error("Sum changes the hasher's state")
	}
}

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)

func goldenRecords() map[string]*record.Record {
	return map[string]*record.Record{
		"inflight": {
			State: record.Claimed, RequestID: "req_01", Fingerprint: record.Sum([]byte("body")),
			Attempt: 1, CreatedAt: t0, ExpiresAt: t0.Add(24 * time.Hour),
			Lease: record.Lease{Owner: 7, Token: 42, ExpiresAt: t0.Add(5 * time.Minute)},
		},
		"completed": {
			State: record.Completed, RequestID: "req_02", Fingerprint: record.Sum([]byte(`{"to":"+4420"}`)),
			Attempt: 2, Status: 201,
			Header:    []record.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Location", Value: "/v1/calls/call_1"}},
			Body:      []byte(`{"data":{"id":"call_1","object":"call","status":"queued"}}`),
			CreatedAt: t0, CompletedAt: t0.Add(time.Second), ExpiresAt: t0.Add(24*time.Hour + time.Second),
			Lease: record.Lease{Owner: 8, Token: 43},
		},
		"checkpoint": {
			State: record.Claimed, RequestID: "req_03", Fingerprint: record.Sum(nil), Attempt: 3,
			CreatedAt: t0, ExpiresAt: t0.Add(time.Hour),
			Lease:      record.Lease{Owner: 9, Token: 44, ExpiresAt: t0.Add(time.Minute)},
			Checkpoint: &record.Checkpoint{Phase: "charged", Data: []byte(`{"charge":"ch_1"}`)},
		},
		"empty-body": {State: record.Completed, Status: 204, Fingerprint: record.Sum(nil), CreatedAt: t0, CompletedAt: t0, ExpiresAt: t0.Add(time.Hour)},
	}
}

func TestRoundTrip(t *testing.T) {
	for name, r := range goldenRecords() {
		for _, m := range []codec.Method{codec.None, codec.S2, codec.Zstd} {
			t.Run(fmt.Sprintf("%s/%s", name, m), func(t *testing.T) {
				enc, err := record.Append([]byte("pfx"), r, m)
				if err != nil {
					t.Fatal(err)
				}
				got, err := record.Decode(enc[3:])
				if err != nil {
					t.Fatal(err)
				}
				assertEqual(t, got, r)
				meta, err := record.DecodeMeta(enc[3:])
				if err != nil {
					t.Fatal(err)
				}
				if meta.Body != nil {
					t.Error("DecodeMeta returned a body")
				}
				meta.Body = r.Body
				assertEqual(t, meta, r)
			})
		}
	}
}

func assertEqual(t *testing.T, got, want *record.Record) {
	t.Helper()
	g, w := *got, *want
	for _, p := range []*record.Record{&g, &w} {
		if len(p.Body) == 0 {
			p.Body = nil
		}
		if len(p.Header) == 0 {
			p.Header = nil
		}
		if p.Checkpoint != nil && len(p.Checkpoint.Data) == 0 {
			c := *p.Checkpoint
			c.Data = nil
			p.Checkpoint = &c
		}
	}
	for _, ts := range [][2]*time.Time{{&g.CreatedAt, &w.CreatedAt}, {&g.CompletedAt, &w.CompletedAt}, {&g.ExpiresAt, &w.ExpiresAt}, {&g.Lease.ExpiresAt, &w.Lease.ExpiresAt}} {
		if !ts[0].Equal(*ts[1]) {
			t.Fatalf("time %v; want %v", *ts[0], *ts[1])
		}
		*ts[0], *ts[1] = time.Time{}, time.Time{}
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got  %+v\nwant %+v", g, w)
	}
}

// TestGolden freezes the on-disk format: records encoded by this build
// must be byte-identical to the files in testdata/golden, and those files
// must decode to the records they were made from.
func TestGolden(t *testing.T) {
	for name, r := range goldenRecords() {
		path := filepath.Join("testdata", "golden", "v1-"+name+".bin")
		enc, err := record.Append(nil, r, codec.None)
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			if err := os.WriteFile(path, enc, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./record -update to create it)", err)
		}
		if !bytes.Equal(enc, want) {
			t.Errorf("%s: encoding changed:\n got  %x\n want %x", name, enc, want)
		}
		got, err := record.Decode(want)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		assertEqual(t, got, r)
	}
	// A compressed golden record is only decoded: compressors may change
	// their output between releases without changing the format.
	r := goldenRecords()["completed"]
	r.Body = bytes.Repeat(r.Body, 20)
	path := filepath.Join("testdata", "golden", "v1-completed-s2.bin")
	if *update {
		enc, _ := record.Append(nil, r, codec.S2)
		_ = os.WriteFile(path, enc, 0o644)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := record.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, got, r)
}

func TestCorruptRecordDetected(t *testing.T) {
	for name, r := range goldenRecords() {
		enc, _ := record.Append(nil, r, codec.S2)
		for i := range enc {
			bad := bytes.Clone(enc)
			bad[i] ^= 0x10
			if _, err := record.Decode(bad); !errors.Is(err, record.ErrCorrupt) {
				t.Fatalf("%s: byte %d damaged: Decode error = %v; want ErrCorrupt", name, i, err)
			}
		}
		for n := 0; n < len(enc); n++ {
			if _, err := record.Decode(enc[:n]); !errors.Is(err, record.ErrCorrupt) {
				t.Fatalf("%s: truncated to %d bytes: error = %v; want ErrCorrupt", name, n, err)
			}
		}
	}
}

func TestNewerVersionRefused(t *testing.T) {
	enc, _ := record.Append(nil, goldenRecords()["completed"], codec.None)
	enc[1] = 2
	_, err := record.Decode(enc)
	if !errors.Is(err, record.ErrVersion) {
		t.Fatalf("error = %v; want ErrVersion", err)
	}
}

func TestLimits(t *testing.T) {
	base := func() *record.Record { return &record.Record{State: record.Completed, Status: 200} }
	tests := []struct {
		name   string
		modify func(r *record.Record)
	}{
		{"request id", func(r *record.Record) { r.RequestID = strings.Repeat("x", record.MaxRequestIDLen+1) }},
		{"header count", func(r *record.Record) { r.Header = make([]record.Header, record.MaxHeaders+1) }},
		{"header bytes", func(r *record.Record) {
			r.Header = []record.Header{{Name: "X", Value: strings.Repeat("v", record.MaxHeaderBytes)}}
		}},
		{"phase", func(r *record.Record) { r.Checkpoint = &record.Checkpoint{Phase: strings.Repeat("p", 256)} }},
		{"checkpoint data", func(r *record.Record) {
			r.Checkpoint = &record.Checkpoint{Data: make([]byte, record.MaxCheckpointData+1)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base()
			tt.modify(r)
			if _, err := record.Append(nil, r, codec.Auto); !errors.Is(err, record.ErrTooLarge) {
				t.Fatalf("error = %v; want ErrTooLarge", err)
			}
		})
	}
	if _, err := record.Append(nil, &record.Record{State: 9}, codec.Auto); err == nil {
		t.Error("unknown state encoded")
	}
}

func TestDecodeAllocs(t *testing.T) {
	r := goldenRecords()["completed"]
	r.Body = bytes.Repeat(r.Body, 40)
	enc, _ := record.Append(nil, r, codec.S2)
	if n := testing.AllocsPerRun(200, func() { _, _ = record.Decode(enc) }); n > 4 {
		t.Errorf("Decode allocates %v times; want at most 4 (record, strings, headers, body)", n)
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, size := range []int{200, 2048, 64 << 10} {
		r := goldenRecords()["completed"]
		r.Body = bytes.Repeat([]byte(`{"k":"v","n":12345}`), size/19+1)[:size]
		enc, _ := record.Append(nil, r, codec.Auto)
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = record.Decode(enc)
			}
		})
	}
}

func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{200, 2048, 64 << 10} {
		r := goldenRecords()["completed"]
		r.Body = bytes.Repeat([]byte(`{"k":"v","n":12345}`), size/19+1)[:size]
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			dst := make([]byte, 0, 2*size+512)
			for b.Loop() {
				_, _ = record.Append(dst[:0], r, codec.Auto)
			}
		})
	}
}

func TestPeek(t *testing.T) {
	for name, r := range goldenRecords() {
		enc, _ := record.Append(nil, r, codec.S2)
		m, err := record.Peek(enc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m.State != r.State || m.Fingerprint != r.Fingerprint || m.Attempt != r.Attempt ||
			!m.ExpiresAt.Equal(r.ExpiresAt) || m.Lease.Owner != r.Lease.Owner || m.Lease.Token != r.Lease.Token ||
			!m.Lease.ExpiresAt.Equal(r.Lease.ExpiresAt) {
			t.Errorf("%s: Peek = %+v; record %+v", name, m, r)
		}
		if n := testing.AllocsPerRun(100, func() { _, _ = record.Peek(enc) }); n != 0 {
			t.Errorf("Peek allocates %v times; want 0", n)
		}
		bad := bytes.Clone(enc)
		bad[5] ^= 1
		if _, err := record.Peek(bad); !errors.Is(err, record.ErrCorrupt) {
			t.Errorf("%s: Peek of a damaged header = %v; want ErrCorrupt", name, err)
		}
	}
}
