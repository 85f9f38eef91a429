// Package record defines what idemkv stores: the [Key] that names a record
// (scope, endpoint, idempotency key), the [Record] itself, their versioned
// binary encodings, and request [Fingerprint]s.
//
// # Key encoding
//
// A key is encoded as three length-prefixed parts:
//
//	+----------------+-------+-------------------+----------+--------------+-----+
//	| uvarint len(S) | scope | uvarint len(E)    | endpoint | uvarint len(K)| key |
//	+----------------+-------+-------------------+----------+--------------+-----+
//
// Because every part carries its length, the encoding is prefix-free per
// part: no choice of bytes in one part can make two different keys encode
// alike, so one tenant's key can never address another tenant's record
// (there is no separator to inject). The encodings of the keys of one scope,
// and of one endpoint within a scope, share a common prefix ([Prefix]),
// which is what prefix scans use.
//
// # Record layout (version 1)
//
// These constants are part of the on-disk format.
//
//	+-------+---------+----------------+--------------------+------------+------------+
//	| magic | version | hdrLen uvarint | header (hdrLen B)  | crc32c (4) | body frame |
//	+-------+---------+----------------+--------------------+------------+------------+
//	magic   = 0x1D, version = 1
//	crc32c  = Castagnoli CRC (little endian) of magic through header
//	body    = a codec frame (codec.Append), with its own checksum
//
//	header:
//	  state        1 byte     1 claimed, 2 completed
//	  flags        1 byte     bit 0: checkpoint present; other bits zero
//	  fp version   1 byte     fingerprint algorithm (1: xxhash64, FingerprintSeed)
//	  fp sum       8 bytes    little endian
//	  attempt      uvarint    1 for the first claim, +1 for each recovery
//	  status       uvarint    response status (0 while claimed)
//	  created      varint     unix nanoseconds; 0 means unset
//	  completed    varint     unix nanoseconds; 0 means unset
//	  expires      varint     unix nanoseconds; 0 means unset
//	  lease owner  uvarint    the process incarnation holding the claim
//	  lease token  uvarint    fencing token of the claim
//	  lease expiry varint     unix nanoseconds; 0 means unset
//	  request id   uvarint length, bytes
//	  headers      uvarint count, then per header: uvarint length, name,
//	               uvarint length, value
//	  checkpoint   (if flag bit 0) uvarint length, phase, uvarint length, data
//
// The header has its own checksum so that the metadata of a record (state,
// fingerprint, times) can be trusted without decompressing its body. A
// decoder rejects a record whose checksum fails, whose header does not end
// exactly at hdrLen, or which has unknown flags or states, with an error
// matching [ErrCorrupt]; a newer version is refused with [ErrVersion].
// Decoding never panics and never returns memory that aliases its input.
//
// # Fingerprints
//
// A [Fingerprint] is xxhash64 with the fixed seed [FingerprintSeed] over
// length-prefixed fields followed by a streamed tail (see [Hasher]). The
// seed and the framing are fixed forever for version 1, so fingerprints
// stored by one process compare equal in every other process and release.
package record
