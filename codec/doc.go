// Package codec compresses stored response bodies and frames them with a
// checksum. It knows nothing of records: it turns a byte slice into a
// self-describing, checksummed frame and back.
//
// # Frame layout (version 1)
//
// These constants are part of the on-disk format.
//
//	+-----------+----------------+-----------------+-----------------+
//	| head (1)  | rawLen uvarint | payload         | crc32c (4, LE)  |
//	+-----------+----------------+-----------------+-----------------+
//	head   = version<<4 | kind; version is 1
//	kind   = 0 raw (payload is the body), 1 s2 block, 2 zstd frame
//	rawLen = length of the body after decompression
//	crc32c = Castagnoli CRC of every preceding byte of the frame
//
// The checksum covers the stored (compressed) bytes, so damage is detected
// before any decompression is attempted, and a frame whose decompressed
// length differs from rawLen is rejected too. Every malformed or damaged
// frame yields an error matching [ErrCorrupt]; a frame from a newer version
// yields [ErrVersion].
//
// # Choosing a method
//
// [Auto], the default, stores bodies shorter than [MinCompressSize] raw and
// compresses the rest with s2.
//
// zstd has a fixed cost of some microseconds a call for small inputs
// (entropy table construction) and decodes several times slower than s2. On
// the hot path of an idempotency store, where a fresh request must cost a
// few tens of microseconds of CPU in all, s2 is the right default; [Zstd]
// is there for deployments that value disk over CPU: it compresses JSON
// about a fifth smaller (bench/README.md, Compression, has the table).
// Neither shrinks bodies under about 256 bytes without a dictionary, hence
// [MinCompressSize].
//
// The encoder and decoder are shared by the whole process and safe for
// concurrent use (zstd's EncodeAll/DecodeAll, s2's stateless block API).
package codec
