package codec_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/idemkv/idemkv/codec"
)

func resealed(frame []byte) []byte {
	body := frame[:len(frame)-4]
	return binary.LittleEndian.AppendUint32(body, crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
}

// FuzzDecode feeds arbitrary bytes to the decoder, both as they are and
// re-sealed with a valid checksum so that the fuzzer reaches the payload
// decoders. Decoding must never panic, and must either fail with
// ErrCorrupt or return exactly DecodedLen bytes.
func FuzzDecode(f *testing.F) {
	for _, m := range []codec.Method{codec.None, codec.S2, codec.Zstd} {
		frame, _ := codec.Append(nil, []byte(`{"data":{"id":"call_1","status":"queued","note":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}`), m)
		f.Add(frame)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, in := range [][]byte{b, resealedOrNil(b)} {
			if in == nil {
				continue
			}
			n, lerr := codec.DecodedLen(in)
			out, err := codec.Decode(nil, in)
			if err != nil {
				if !errors.Is(err, codec.ErrCorrupt) {
					t.Fatalf("Decode error %v does not match ErrCorrupt", err)
				}
				continue
			}
			if lerr != nil || len(out) != n {
				t.Fatalf("Decode gave %d bytes, DecodedLen %d, %v", len(out), n, lerr)
			}
		}
	})
}

func resealedOrNil(b []byte) []byte {
	if len(b) < 6 {
		return nil
	}
	return resealed(bytes.Clone(b))
}

// FuzzRoundTrip checks decode(encode(x)) == x for every method.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte(""), uint8(0))
	f.Add([]byte(`{"a":1,"b":[true,false,null],"c":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`), uint8(2))
	f.Fuzz(func(t *testing.T, src []byte, m uint8) {
		method := codec.Method(m % 4)
		frame, err := codec.Append(nil, src, method)
		if err != nil {
			t.Fatal(err)
		}
		got, err := codec.Decode(nil, frame)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if !bytes.Equal(got, src) {
			t.Fatalf("%s: round trip changed %d bytes into %d", method, len(src), len(got))
		}
	})
}
