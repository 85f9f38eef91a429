package codec

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Method selects how [Append] compresses a body.
type Method uint8

const (
	// Auto chooses per body, by its length, whether compressing it alone
	// pays: Append stores bodies shorter than MinCompressSize raw and
	// compresses the others with s2. A store whose storage compresses
	// small bodies itself may raise the threshold (the engine does; see
	// engine.Options.Compression). It is the zero value.
	Auto Method = iota
	// None stores every body raw.
	None
	// S2 compresses every body with s2 (klauspost/compress/s2).
	S2
	// Zstd compresses every body with zstd at its fastest level.
	Zstd
)

// String returns the method's name as accepted by [ParseMethod].
func (m Method) String() string {
	switch m {
	case Auto:
		return "auto"
	case None:
		return "none"
	case S2:
		return "s2"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("Method(%d)", uint8(m))
}

// ParseMethod parses a method name: auto, none, s2 or zstd.
func ParseMethod(s string) (Method, error) {
	for m := Auto; m <= Zstd; m++ {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("idemkv/codec: unknown compression method %q (want auto, none, s2 or zstd)", s)
}

const (
	// MinCompressSize is the body length below which Auto stores bodies
	// raw.
	MinCompressSize = 256

	// MaxLen is the largest body a frame may hold (1 GiB).
	MaxLen = 1 << 30

	// These constants are part of the on-disk format.
	frameVersion = 1
	kindRaw      = 0
	kindS2       = 1
	kindZstd     = 2
	crcLen       = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdDec  *zstd.Decoder
	zstdErr  error
)

// zstdCoders returns the process-wide zstd encoder and decoder, creating
// them on first use. Both are safe for concurrent use.
func zstdCoders() (*zstd.Encoder, *zstd.Decoder, error) {
	zstdOnce.Do(func() {
		zstdEnc, zstdErr = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderCRC(false), // the frame has its own checksum
			zstd.WithZeroFrames(true))
		if zstdErr != nil {
			return
		}
		zstdDec, zstdErr = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(MaxLen),
			zstd.IgnoreChecksum(true))
	})
	return zstdEnc, zstdDec, zstdErr
}

// Append compresses src according to m, appends the frame to dst and
// returns the extended slice. A compressed payload that is not smaller than
// src is stored raw instead. src is not retained and may be reused after
// the call.
func Append(dst, src []byte, m Method) ([]byte, error) {
	if len(src) > MaxLen {
		return dst, fmt.Errorf("%w: %d bytes (max %d)", ErrTooLarge, len(src), MaxLen)
	}
	kind := byte(kindRaw)
	switch m {
	case Auto:
		if len(src) >= MinCompressSize {
			kind = kindS2
		}
	case S2:
		kind = kindS2
	case Zstd:
		kind = kindZstd
	case None:
	default:
		return dst, fmt.Errorf("idemkv/codec: unknown compression method %d", m)
	}
	start := len(dst)
	dst = append(dst, 0)
	dst = binary.AppendUvarint(dst, uint64(len(src)))
	payloadStart := len(dst)
	switch kind {
	case kindS2:
		dst = grow(dst, s2.MaxEncodedLen(len(src)))
		out := s2.Encode(dst[payloadStart:cap(dst)], src)
		dst = dst[:payloadStart+len(out)]
	case kindZstd:
		enc, _, err := zstdCoders()
		if err != nil {
			return dst[:start], fmt.Errorf("idemkv/codec: zstd: %w", err)
		}
		dst = enc.EncodeAll(src, dst)
	}
	if kind != kindRaw && len(dst)-payloadStart >= len(src) {
		kind = kindRaw
		dst = dst[:payloadStart]
	}
	if kind == kindRaw {
		dst = append(dst, src...)
	}
	dst[start] = frameVersion<<4 | kind
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli)), nil
}

// grow makes room for n more bytes after len(b) without changing len(b).
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n)
	copy(nb, b)
	return nb
}

// frame is a parsed, checksum-verified frame.
type frame struct {
	kind    byte
	rawLen  int
	payload []byte
}

func parse(b []byte) (frame, error) {
	if len(b) < 1+1+crcLen {
		return frame{}, fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(b))
	}
	body, sum := b[:len(b)-crcLen], binary.LittleEndian.Uint32(b[len(b)-crcLen:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return frame{}, fmt.Errorf("%w: checksum %08x, want %08x", ErrCorrupt, got, sum)
	}
	if v := body[0] >> 4; v != frameVersion {
		return frame{}, fmt.Errorf("%w: version %d", ErrVersion, v)
	}
	kind := body[0] & 0x0f
	rawLen, n := binary.Uvarint(body[1:])
	if n <= 0 || rawLen > MaxLen {
		return frame{}, fmt.Errorf("%w: bad length", ErrCorrupt)
	}
	f := frame{kind: kind, rawLen: int(rawLen), payload: body[1+n:]}
	switch kind {
	case kindRaw:
		if len(f.payload) != f.rawLen {
			return frame{}, fmt.Errorf("%w: raw payload is %d bytes, header says %d", ErrCorrupt, len(f.payload), f.rawLen)
		}
	case kindS2:
		n, err := s2.DecodedLen(f.payload)
		if err != nil || n != f.rawLen {
			return frame{}, fmt.Errorf("%w: s2 payload does not match its length", ErrCorrupt)
		}
	case kindZstd:
	default:
		return frame{}, fmt.Errorf("%w: unknown kind %d", ErrCorrupt, kind)
	}
	return f, nil
}

// DecodedLen verifies frame's checksum and returns the length of the body
// it holds, without decompressing it.
func DecodedLen(frame []byte) (int, error) {
	f, err := parse(frame)
	return f.rawLen, err
}

// Decode verifies frame, appends the body it holds to dst and returns the
// extended slice. The result never aliases frame. On error dst is returned
// unchanged (its spare capacity may have been written).
func Decode(dst, frame []byte) ([]byte, error) {
	f, err := parse(frame)
	if err != nil {
		return dst, err
	}
	if f.rawLen > math.MaxInt-len(dst) {
		return dst, fmt.Errorf("%w: bad length", ErrCorrupt)
	}
	start := len(dst)
	switch f.kind {
	case kindRaw:
		return append(dst, f.payload...), nil
	case kindS2:
		dst = grow(dst, f.rawLen)
		out, err := s2.Decode(dst[start:start+f.rawLen], f.payload)
		if err != nil || len(out) != f.rawLen {
			return dst[:start], fmt.Errorf("%w: s2: %v", ErrCorrupt, err)
		}
		return dst[:start+f.rawLen], nil
	default: // kindZstd; parse rejects every other kind
		_, dec, err := zstdCoders()
		if err != nil {
			return dst, fmt.Errorf("idemkv/codec: zstd: %w", err)
		}
		dst = grow(dst, f.rawLen)
		out, err := dec.DecodeAll(f.payload, dst[start:start])
		if err != nil || len(out) != f.rawLen {
			return dst[:start], fmt.Errorf("%w: zstd payload does not match its length (%v)", ErrCorrupt, err)
		}
		if len(out) > 0 && &out[0] != &dst[start : start+1][0] {
			// The decoder outgrew the buffer it was given; copy back.
			dst = append(dst[:start], out...)
		}
		return dst[:start+f.rawLen], nil
	}
}
