package record_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/idemkv/idemkv/codec"
	"github.com/idemkv/idemkv/record"
)

// FuzzDecode: decoding arbitrary bytes never panics, fails only with
// ErrCorrupt, and whatever decodes re-encodes to a record that decodes to
// the same thing.
func FuzzDecode(f *testing.F) {
	for _, r := range goldenRecords() {
		enc, _ := record.Append(nil, r, codec.S2)
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := record.Decode(b)
		if err != nil {
			if !errors.Is(err, record.ErrCorrupt) {
				t.Fatalf("error %v does not match ErrCorrupt", err)
			}
			return
		}
		enc, err := record.Append(nil, r, codec.None)
		if err != nil {
			t.Fatalf("a decoded record does not re-encode: %v", err)
		}
		r2, err := record.Decode(enc)
		if err != nil {
			t.Fatal(err)
		}
		assertEqual(t, r2, r)
	})
}

// FuzzDecodeKey: decoding never panics, and keys round-trip exactly.
func FuzzDecodeKey(f *testing.F) {
	f.Add([]byte("\x01t\x0ePOST /v1/calls\x03abc"))
	f.Add([]byte("\x00\x00\x01k"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := record.DecodeKey(b)
		if err != nil {
			if !errors.Is(err, record.ErrCorrupt) {
				t.Fatalf("error %v does not match ErrCorrupt", err)
			}
			return
		}
		if enc := k.Append(nil); !bytes.Equal(enc, b) {
			// Non-minimal varints decode but re-encode differently; the
			// key they decode to must still be one that round-trips.
			k2, err := record.DecodeKey(enc)
			if err != nil || k2 != k {
				t.Fatalf("%v re-encodes to %x which decodes to %v, %v", k, enc, k2, err)
			}
		}
	})
}

// FuzzKeyInjective: two different keys never share an encoding.
func FuzzKeyInjective(f *testing.F) {
	f.Add("a", "b", "c", "a", "b", "c")
	f.Add("a\x01", "b", "c", "a", "\x01b", "c")
	f.Fuzz(func(t *testing.T, s1, e1, k1, s2, e2, k2 string) {
		a := record.Key{Scope: s1, Endpoint: e1, Key: k1}
		b := record.Key{Scope: s2, Endpoint: e2, Key: k2}
		if a != b && bytes.Equal(a.Append(nil), b.Append(nil)) {
			t.Fatalf("%v and %v encode alike", a, b)
		}
	})
}
