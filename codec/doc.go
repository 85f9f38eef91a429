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
// compresses the rest with s2. Measured on realistic JSON API responses
// (bench/payload) on a 2-core x86-64 machine, go1.26, klauspost/compress
// v1.20:
//
//	body      s2 ratio  s2 encode   zstd-fastest ratio  zstd encode
//	200 B     1.02      0.2 µs      0.86                5.8 µs
//	600 B     0.81      0.6 µs      0.64                6.3 µs
//	2 KB      0.49      1.7 µs      0.38                10.6 µs
//	64 KB     0.27      42 µs       0.19                152 µs
//	1 MB      0.25      1.1 ms      0.18                3.1 ms
//
// zstd has a fixed cost of about 6 µs a call for small inputs (entropy table
// construction) and decodes 3-10x slower, while s2 decodes at 4-12 GB/s. On
// the hot path of an idempotency store, where a fresh request must cost a
// few tens of microseconds of CPU in all, s2 is the right default; [Zstd]
// is there for deployments that value disk over CPU (it reaches the 40 %
// mark at 2 KB where s2 does not). Neither shrinks bodies under about 256
// bytes without a dictionary, hence [MinCompressSize].
//
// The encoder and decoder are shared by the whole process and safe for
// concurrent use (zstd's EncodeAll/DecodeAll, s2's stateless block API).
package codec
