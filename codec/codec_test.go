package codec_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/idemkv/idemkv/bench/payload"
	"github.com/idemkv/idemkv/codec"
)

var sizes = []int{0, 1, 100, codec.MinCompressSize - 1, codec.MinCompressSize, 2048, 64 << 10, 1 << 20}

func TestRoundTrip(t *testing.T) {
	for _, m := range []codec.Method{codec.Auto, codec.None, codec.S2, codec.Zstd} {
		for _, size := range sizes {
			t.Run(fmt.Sprintf("%s/%d", m, size), func(t *testing.T) {
				src := payload.JSON(nil, size, uint64(size))[:size]
				prefix := []byte("prefix")
				frame, err := codec.Append(append([]byte(nil), prefix...), src, m)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.HasPrefix(frame, prefix) {
					t.Fatalf("Append clobbered dst")
				}
				frame = frame[len(prefix):]
				n, err := codec.DecodedLen(frame)
				if err != nil || n != size {
					t.Fatalf("DecodedLen = %d, %v; want %d, nil", n, err, size)
				}
				got, err := codec.Decode([]byte("x"), frame)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got[1:], src) || got[0] != 'x' {
					t.Fatalf("Decode returned %d bytes that differ from the %d encoded", len(got), len(src))
				}
			})
		}
	}
}

func TestAutoChoosesByMeasurement(t *testing.T) {
	small := payload.JSON(nil, 100, 1)[:100]
	frame, _ := codec.Append(nil, small, codec.Auto)
	if got, want := len(frame), len(small)+1+1+4; got != want {
		t.Errorf("small body: frame is %d bytes; want %d (stored raw)", got, want)
	}
	big := payload.JSON(nil, 64<<10, 1)
	frame, _ = codec.Append(nil, big, codec.Auto)
	if ratio := float64(len(frame)) / float64(len(big)); ratio > 0.4 {
		t.Errorf("64 KB JSON stored at ratio %.2f; want it compressed below 0.4", ratio)
	}
	// Incompressible input falls back to raw rather than growing.
	noise := make([]byte, 4096)
	for i := range noise {
		noise[i] = byte(i*7919 + i*i*31)
	}
	for _, m := range []codec.Method{codec.S2, codec.Zstd} {
		frame, _ = codec.Append(nil, noise, m)
		if len(frame) > len(noise)+1+2+4 {
			t.Errorf("%s: incompressible 4096 bytes framed as %d bytes", m, len(frame))
		}
	}
}

// TestCorruptionDetected damages every byte of a frame in turn and checks
// that no damaged frame decodes.
func TestCorruptionDetected(t *testing.T) {
	for _, m := range []codec.Method{codec.None, codec.S2, codec.Zstd} {
		src := payload.JSON(nil, 700, 3)
		frame, err := codec.Append(nil, src, m)
		if err != nil {
			t.Fatal(err)
		}
		for i := range frame {
			for _, flip := range []byte{0x01, 0x80, 0xff} {
				bad := bytes.Clone(frame)
				bad[i] ^= flip
				if _, err := codec.Decode(nil, bad); !errors.Is(err, codec.ErrCorrupt) {
					t.Fatalf("%s: byte %d ^ %#x: Decode error = %v; want ErrCorrupt", m, i, flip, err)
				}
			}
		}
		for n := 0; n < len(frame); n++ {
			if _, err := codec.Decode(nil, frame[:n]); !errors.Is(err, codec.ErrCorrupt) {
				t.Fatalf("%s: truncated to %d: error = %v; want ErrCorrupt", m, n, err)
			}
		}
	}
}

func TestUnknownVersion(t *testing.T) {
	frame, _ := codec.Append(nil, []byte("hello"), codec.None)
	frame[0] = 2<<4 | frame[0]&0x0f
	// Re-seal the checksum so that only the version is wrong.
	frame = resealed(frame)
	_, err := codec.Decode(nil, frame)
	if !errors.Is(err, codec.ErrVersion) || !errors.Is(err, codec.ErrCorrupt) {
		t.Fatalf("error = %v; want ErrVersion (which is also ErrCorrupt)", err)
	}
}

func TestParseMethod(t *testing.T) {
	for _, m := range []codec.Method{codec.Auto, codec.None, codec.S2, codec.Zstd} {
		got, err := codec.ParseMethod(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMethod(%q) = %v, %v; want %v", m.String(), got, err, m)
		}
	}
	if _, err := codec.ParseMethod("gzip"); err == nil {
		t.Error("ParseMethod(gzip) succeeded")
	}
}

func TestTooLarge(t *testing.T) {
	// A slice header longer than MaxLen without allocating it: reuse one
	// small backing array is impossible, so only check the boundary logic
	// on the error type via a nil-backed length check.
	if testing.Short() {
		t.Skip("allocates 1 GiB")
	}
	big := make([]byte, codec.MaxLen+1)
	if _, err := codec.Append(nil, big, codec.None); !errors.Is(err, codec.ErrTooLarge) {
		t.Fatalf("error = %v; want ErrTooLarge", err)
	}
}

func TestZeroAllocs(t *testing.T) {
	src := payload.JSON(nil, 2048, 1)
	for _, m := range []codec.Method{codec.None, codec.S2} {
		buf := make([]byte, 0, 8192)
		frame, _ := codec.Append(nil, src, m)
		out := make([]byte, 0, 8192)
		if n := testing.AllocsPerRun(100, func() { _, _ = codec.Append(buf[:0], src, m) }); n != 0 {
			t.Errorf("%s: Append allocates %v times; want 0", m, n)
		}
		if n := testing.AllocsPerRun(100, func() { _, _ = codec.Decode(out[:0], frame) }); n != 0 {
			t.Errorf("%s: Decode allocates %v times; want 0", m, n)
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	for _, m := range []codec.Method{codec.S2, codec.Zstd} {
		for _, size := range []int{200, 2048, 64 << 10, 1 << 20} {
			src := payload.JSON(nil, size, 1)
			b.Run(fmt.Sprintf("%s/%d", m, size), func(b *testing.B) {
				b.SetBytes(int64(len(src)))
				b.ReportAllocs()
				dst := make([]byte, 0, 2*len(src)+64)
				var n int
				for b.Loop() {
					out, _ := codec.Append(dst[:0], src, m)
					n = len(out)
				}
				b.ReportMetric(float64(n)/float64(len(src)), "ratio")
			})
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, m := range []codec.Method{codec.S2, codec.Zstd} {
		for _, size := range []int{200, 2048, 64 << 10, 1 << 20} {
			src := payload.JSON(nil, size, 1)
			frame, _ := codec.Append(nil, src, m)
			b.Run(fmt.Sprintf("%s/%d", m, size), func(b *testing.B) {
				b.SetBytes(int64(len(src)))
				b.ReportAllocs()
				dst := make([]byte, 0, len(src))
				for b.Loop() {
					_, _ = codec.Decode(dst[:0], frame)
				}
			})
		}
	}
}
