package record_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/idemkv/idemkv/codec"
	"github.com/idemkv/idemkv/record"
)

func headerRecord(nHeaders, bodyLen int) *record.Record {
	now := time.Unix(1_700_000_000, 0)
	r := &record.Record{
		State: record.Completed, RequestID: "req-1", Fingerprint: record.Fingerprint{Version: 1, Sum: 42},
		Attempt: 1, Status: 201, CreatedAt: now, CompletedAt: now, ExpiresAt: now.Add(time.Hour),
		Lease:      record.Lease{Owner: 3, Token: 9},
		Checkpoint: &record.Checkpoint{Phase: "charged", Data: []byte("ch_1")},
	}
	for i := range nHeaders {
		r.Header = append(r.Header, record.Header{Name: fmt.Sprint("H", i), Value: fmt.Sprint("v", i)})
	}
	if bodyLen > 0 {
		r.Body = bytes.Repeat([]byte{'b'}, bodyLen)
	}
	return r
}

// TestDecodeHeaderCounts decodes records with 0, 1, 4, 5 and
// MaxHeaders headers and checks the headers, their capacity (an append by
// the caller must not write into memory shared with anything else), and
// that Clone and WithoutBody behave.
func TestDecodeHeaderCounts(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 4, 5, 17, record.MaxHeaders} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			in := headerRecord(n, 100)
			for _, m := range []codec.Method{codec.None, codec.S2} {
				enc, err := record.Append(nil, in, m)
				if err != nil {
					t.Fatal(err)
				}
				for _, dec := range []func([]byte) (*record.Record, error){record.Decode, record.DecodeMeta} {
					r, err := dec(enc)
					if err != nil {
						t.Fatal(err)
					}
					if len(r.Header) != n || cap(r.Header) != n {
						t.Fatalf("len %d cap %d; want %d", len(r.Header), cap(r.Header), n)
					}
					if n == 0 && r.Header != nil {
						t.Fatalf("no headers decode to a non-nil slice")
					}
					for i, h := range r.Header {
						if h != in.Header[i] {
							t.Fatalf("header %d = %v; want %v", i, h, in.Header[i])
						}
					}
					// Appending to the decoded headers must not touch a
					// copy's headers.
					wb := r.WithoutBody()
					cl := r.Clone()
					r.Header = append(r.Header, record.Header{Name: "X", Value: "y"})
					if len(wb.Header) != n || len(cl.Header) != n {
						t.Fatal("a copy's headers changed length")
					}
					if n > 0 {
						r.Header[0].Name = "changed"
						if cl.Header[0].Name == "changed" {
							t.Fatal("Clone shares headers with the original")
						}
					}
					if wb.Body != nil {
						t.Fatal("WithoutBody kept the body")
					}
					if r.MemSize() <= 0 || cl.MemSize() <= 0 {
						t.Fatal("MemSize not positive")
					}
				}
			}
		})
	}
}

// TestDecodeHeaderCountCorrupt: header counts that lie (more than
// MaxHeaders, more than the bytes hold, a huge varint) are ErrCorrupt,
// never a panic or an allocation of the claimed size.
func TestDecodeHeaderCountCorrupt(t *testing.T) {
	for _, n := range []uint64{1, 4, 5, record.MaxHeaders, record.MaxHeaders + 1, 1 << 40, 1<<64 - 1} {
		enc := encodeWithHeaderCount(t, n)
		r, err := record.Decode(enc)
		if err == nil {
			t.Fatalf("count %d: decoded %+v; want ErrCorrupt", n, r)
		}
		if !errors.Is(err, record.ErrCorrupt) {
			t.Fatalf("count %d: %v does not match ErrCorrupt", n, err)
		}
	}
}

// encodeWithHeaderCount builds a record whose header claims n headers but
// holds none, with a valid checksum.
func encodeWithHeaderCount(t *testing.T, n uint64) []byte {
	t.Helper()
	r := &record.Record{State: record.Completed, Fingerprint: record.Fingerprint{Version: 1}, RequestID: "r"}
	enc, err := record.Append(nil, r, codec.None)
	if err != nil {
		t.Fatal(err)
	}
	// Layout: magic, version, hdrLen uvarint, header, crc, frame.
	hdrLen, w := binary.Uvarint(enc[2:])
	hdr := append([]byte(nil), enc[2+w:2+w+int(hdrLen)]...)
	frame := enc[2+w+int(hdrLen)+4:]
	// The header ends with the request id ("\x01r") and the header count 0.
	if hdr[len(hdr)-1] != 0 {
		t.Fatalf("unexpected header layout %x", hdr)
	}
	hdr = binary.AppendUvarint(hdr[:len(hdr)-1], n)
	out := []byte{enc[0], enc[1]}
	out = binary.AppendUvarint(out, uint64(len(hdr)))
	out = append(out, hdr...)
	out = binary.LittleEndian.AppendUint32(out, crc32c(out))
	return append(out, frame...)
}

// TestWithoutBodyReleasesBody: WithoutBody is what the engine hands to a
// conflicting request ("without a body"). Holding that copy must not keep
// the original's body alive. A record decoded with one to four headers
// holds them in the same allocation as the record itself
// (recordWithHeaders), which also holds the original's Body field, so the
// copy must not share that Header slice.
func TestWithoutBodyReleasesBody(t *testing.T) {
	for _, n := range []int{0, 1, 4, 5} {
		t.Run(fmt.Sprintf("%d headers", n), func(t *testing.T) {
			enc, err := record.Append(nil, headerRecord(n, 1<<20), codec.None)
			if err != nil {
				t.Fatal(err)
			}
			r, err := record.Decode(enc)
			if err != nil {
				t.Fatal(err)
			}
			body := weak.Make(&r.Body[0])
			wb := r.WithoutBody()
			r = nil
			for range 3 {
				runtime.GC()
			}
			alive := body.Value() != nil
			runtime.KeepAlive(wb)
			if alive {
				t.Fatalf("with %d headers, a WithoutBody copy keeps the original's 1 MiB body reachable", n)
			}
		})
	}
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }
