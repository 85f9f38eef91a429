package record

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// FingerprintSeed is the xxhash64 seed of fingerprint version 1 ("idemkv"
// followed by 0x00 0x01). It is part of the on-disk format: changing it
// would make every stored fingerprint mismatch.
const FingerprintSeed uint64 = 0x6964656d6b760001

// FingerprintV1 is the version of the fingerprints that Hasher computes.
const FingerprintV1 = 1

// Fingerprint identifies the content of a request, so that a retry can be
// told from a different request that reuses a key. Two fingerprints match
// only if both version and sum are equal.
type Fingerprint struct {
	Version uint8
	Sum     uint64
}

// Hasher computes a Fingerprint incrementally: first any number of
// length-prefixed fields (Field, FieldString), then a streamed tail
// (Write), whose chunking does not matter. Fields written after the tail
// has begun are still hashed, but then the result depends on where the
// stream was split, so call them first. A Hasher must be created with
// NewHasher (or Reset); it is not safe for concurrent use.
type Hasher struct {
	d       xxhash.Digest
	tailLen uint64
}

// NewHasher returns a Hasher for a version 1 fingerprint.
func NewHasher() Hasher {
	var h Hasher
	h.Reset()
	return h
}

// Reset makes h ready to compute a new fingerprint.
func (h *Hasher) Reset() {
	h.d.ResetWithSeed(FingerprintSeed)
	h.tailLen = 0
}

// Field hashes b as one length-prefixed field.
func (h *Hasher) Field(b []byte) {
	var n [binary.MaxVarintLen64]byte
	_, _ = h.d.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))])
	_, _ = h.d.Write(b)
}

// FieldString hashes s as one length-prefixed field.
func (h *Hasher) FieldString(s string) {
	var n [binary.MaxVarintLen64]byte
	_, _ = h.d.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
	_, _ = h.d.WriteString(s)
}

// Write hashes p as part of the streamed tail. It never fails.
func (h *Hasher) Write(p []byte) (int, error) {
	h.tailLen += uint64(len(p))
	return h.d.Write(p)
}

// Sum returns the fingerprint of everything written so far. It does not
// change the state of h.
func (h *Hasher) Sum() Fingerprint {
	d := h.d // Sum64 does not modify, but hash the tail length on a copy.
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], h.tailLen)
	_, _ = d.Write(n[:])
	return Fingerprint{Version: FingerprintV1, Sum: d.Sum64()}
}

// Sum returns the fingerprint of body alone, as a Hasher that was only
// written body.
func Sum(body []byte) Fingerprint {
	h := NewHasher()
	_, _ = h.Write(body)
	return h.Sum()
}
