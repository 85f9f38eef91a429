package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/idemkv/idemkv/engine/internal/walfs"
)

// Sync proofs: how the engine tells damage in the write-ahead log from a
// torn tail.
//
// After a crash, the newest log may end in bytes that were being written
// (a torn tail); Pebble's replay stops at the first bad chunk and, for the
// newest log, accepts the rest as lost. That is right only for bytes that
// were never fsynced. Pebble decides it from the synced offsets its chunks
// carry, but in Pebble v2.1.7 those count only the bytes of partly filled
// blocks (a record spanning whole 32 KiB blocks leaves them far behind), so
// damage before acknowledged records passed as a torn tail.
//
// So the engine records its own proof: after each fsync of the log (see
// syncLoop), it writes a small log entry (pebble.DB.LogData, which replay
// ignores) saying how many bytes of which log file that fsync covered, as
// walfs saw it. Before Pebble opens the directory, checkLogs reads every
// log: if a log's intact chunks stop (at a bad chunk, or the file's end)
// at offset X while a proof, anywhere in any log, says more than X bytes
// of that file were fsynced, acknowledged bytes were damaged or cut, and
// Open fails with ErrCorrupt naming the file and offset. A torn tail lies
// past every proof, so it still recovers silently; so does a record whose
// first chunks an fsync covered and whose rest it did not (see scanLog).
//
// What it cannot see: the bytes of the very last fsync before a crash, if
// the crash comes before that fsync's proof reaches the log (within about
// one more fsync), and damage that also destroys every proof after it.
//
// The proof's payload (inside a LogData entry). These constants are part of
// the on-disk format.
//
//	+----------------+----------------------+--------------------+------------+
//	| proofMagic (8) | file number (uvarint)| size (uvarint, B)  | crc32c (4) |
//	+----------------+----------------------+--------------------+------------+
var proofMagic = []byte("idkvSYN\x01")

func appendProof(dst []byte, p walfs.SyncPoint) ([]byte, bool) {
	num, ok := logNum(p.Name)
	if !ok {
		return dst, false
	}
	start := len(dst)
	dst = append(dst, proofMagic...)
	dst = binary.AppendUvarint(dst, num)
	dst = binary.AppendUvarint(dst, uint64(p.Size))
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli)), true
}

// parseProof decodes a proof at the start of b.
func parseProof(b []byte) (num uint64, size int64, ok bool) {
	if !bytes.HasPrefix(b, proofMagic) {
		return 0, 0, false
	}
	rest := b[len(proofMagic):]
	num, n := binary.Uvarint(rest)
	if n <= 0 {
		return 0, 0, false
	}
	sz, m := binary.Uvarint(rest[n:])
	if m <= 0 || len(rest) < n+m+4 || sz > 1<<50 {
		return 0, 0, false
	}
	end := len(proofMagic) + n + m
	if crc32.Checksum(b[:end], castagnoli) != binary.LittleEndian.Uint32(b[end:]) {
		return 0, 0, false
	}
	return num, int64(sz), true
}

// logNum parses a log file name such as 000012.log.
func logNum(name string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, ".log")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(base, 10, 64)
	return n, err == nil
}

// Pebble's log chunk layout (its record package): 32 KiB blocks of chunks,
// each with a header of checksum (4), length (2), type (1), and for the
// recyclable and sync-offset formats the log number (4) and a synced
// offset (8). The checksum covers the bytes from the type on.
const (
	logBlockSize    = 32 << 10
	chunkFull       = 1
	chunkLast       = 4
	chunkRecyclable = 5 // 5-8: recyclable full, first, middle, last
	chunkSync       = 9 // 9-12: the same with a synced offset
)

// chunkAt parses the chunk header at b[i:] of log num. It returns the
// chunk's kind (0 full, 1 first, 2 middle, 3 last), the payload's bounds,
// and ok=false for anything that is not an intact chunk of this log.
func chunkAt(b []byte, i int, num uint64) (kind, start, end int, ok bool) {
	if i+7 > len(b) {
		return 0, 0, 0, false
	}
	length := int(binary.LittleEndian.Uint16(b[i+4:]))
	typ := int(b[i+6])
	hdr := 7
	switch {
	case typ >= chunkFull && typ <= chunkLast:
		kind = typ - chunkFull
	case typ >= chunkRecyclable && typ < chunkSync:
		hdr, kind = 11, typ-chunkRecyclable
	case typ >= chunkSync && typ < chunkSync+4:
		hdr, kind = 19, typ-chunkSync
	default:
		return 0, 0, 0, false
	}
	start, end = i+hdr, i+hdr+length
	if end > len(b) || i/logBlockSize != (end-1)/logBlockSize && length > 0 {
		return 0, 0, 0, false
	}
	if hdr > 7 && uint64(binary.LittleEndian.Uint32(b[i+7:])) != num&0xffffffff {
		return 0, 0, 0, false
	}
	c := crc32.Update(0, castagnoli, b[i+6:end])
	if binary.LittleEndian.Uint32(b[i:]) != (c>>15|c<<17)+0xa282ead8 {
		return 0, 0, 0, false
	}
	return kind, start, end, true
}

// goodPrefix returns the offset where the intact records of log b end:
// the start of the first record that is damaged, cut or absent, or the end
// of Pebble's end-of-log trailer.
func goodPrefix(b []byte, num uint64) int {
	good, _ := scanLog(b, num)
	return good
}

// scanLog reads the chunks of log b. good is goodPrefix; intact is where
// the sequence of intact chunks ends (the first chunk that is damaged,
// absent or out of order), which is past good when the log ends inside a
// record whose first chunks are intact.
//
// An fsync covers whole chunks, so it can end between the chunks of a
// record that spans blocks: the fsynced bytes then hold the first chunks
// of a record that was never acknowledged. A crash there leaves a log
// whose records stop (good) before the fsynced point while its chunks
// reach it (intact): a torn tail, not damage. So damage is judged by
// intact.
func scanLog(b []byte, num uint64) (good, intact int) {
	i := 0
	inRecord := false
	for i < len(b) {
		if rest := logBlockSize - i%logBlockSize; rest < 19 && allZero(b[i:min(len(b), i+rest)]) {
			i += rest // a block's padding: no chunk header fits
			if !inRecord {
				good = min(i, len(b))
			}
			continue
		}
		kind, _, end, ok := chunkAt(b, i, num)
		if !ok {
			if !inRecord && isTrailer(b, i, num) {
				return i + 11, i + 11
			}
			return good, i
		}
		if (kind == 0 || kind == 1) == inRecord {
			return good, i
		}
		i = end
		inRecord = kind == 1 || kind == 2
		if !inRecord {
			good = i
		}
	}
	return good, min(i, len(b))
}

// isTrailer reports whether b[i:] holds the trailer Pebble writes when it
// closes log num: an empty recyclable chunk of log num+1.
func isTrailer(b []byte, i int, num uint64) bool {
	return i+11 <= len(b) && b[i+6] == chunkRecyclable && binary.LittleEndian.Uint16(b[i+4:]) == 0 &&
		uint64(binary.LittleEndian.Uint32(b[i+7:])) == (num+1)&0xffffffff
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// proofsIn adds to proofs every intact proof found anywhere in log b of
// number num: a byte-by-byte search, so that proofs after a damaged chunk
// are found too. Only single-chunk entries are searched (proofs are small).
func proofsIn(b []byte, num uint64, proofs map[uint64]int64) {
	for off := 0; ; {
		j := bytes.Index(b[off:], proofMagic)
		if j < 0 {
			return
		}
		at := off + j
		off = at + 1
		pn, size, ok := parseProof(b[at:])
		if !ok || size <= proofs[pn] {
			continue
		}
		// The proof must lie in an intact chunk of this log: search back
		// for its header (a LogData entry puts the payload within 32
		// bytes of the chunk's start).
		for h := at - 1; h >= max(0, at-64); h-- {
			if _, start, end, ok := chunkAt(b, h, num); ok && start <= at && end > at {
				proofs[pn] = size
				break
			}
		}
	}
}

// checkLogs checks every write-ahead log in dir against the sync proofs
// (see above) before Pebble replays them. It returns an ErrCorrupt error
// naming the first log that lost fsynced bytes. A directory without logs
// (a new one) passes.
func checkLogs(fs vfs.FS, dir string) error {
	names, err := fs.List(dir)
	if err != nil {
		return nil // a directory that does not exist yet: Pebble creates it
	}
	type logFile struct {
		num  uint64
		name string
		b    []byte
	}
	var logs []logFile
	proofs := map[uint64]int64{}
	for _, name := range names {
		num, ok := logNum(name)
		if !ok {
			continue
		}
		path := fs.PathJoin(dir, name)
		b, err := readFile(fs, path)
		if err != nil {
			return fmt.Errorf("engine: check write-ahead log %s: %w", path, err)
		}
		proofsIn(b, num, proofs)
		logs = append(logs, logFile{num, path, b})
	}
	if num, size, ok := readSyncMark(fs, dir); ok && size > proofs[num] {
		proofs[num] = size
	}
	slices.SortFunc(logs, func(a, b logFile) int { return int(a.num - b.num) })
	for _, l := range logs {
		synced, ok := proofs[l.num]
		if !ok {
			continue
		}
		if _, intact := scanLog(l.b, l.num); int64(intact) < synced {
			return damaged(fmt.Sprintf("write-ahead log %s is damaged at offset %d: its first %d bytes were fsynced and acknowledged (keep a copy of the directory; see \"When the engine refuses to open\" in the README)",
				l.name, intact, synced), nil)
		}
	}
	return nil
}

// whereDamaged names, for an error of Pebble's replay that does not, the
// write-ahead log in dir that most likely holds the damage: the oldest one
// whose chunks stop parsing before its end, with the offset. It returns
// "" if it finds none.
func whereDamaged(fs vfs.FS, dir string) string {
	names, err := fs.List(dir)
	if err != nil {
		return ""
	}
	best, bestNum, bestOff := "", uint64(0), 0
	for _, name := range names {
		num, ok := logNum(name)
		if !ok || (best != "" && num > bestNum) {
			continue
		}
		b, err := readFile(fs, fs.PathJoin(dir, name))
		if err != nil {
			continue
		}
		if good := goodPrefix(b, num); good < len(b) {
			best, bestNum, bestOff = name, num, good
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("%s at offset %d", fs.PathJoin(dir, best), bestOff)
}

// # The sync mark
//
// Proofs live in the log they prove, so a log cut short loses its last
// proofs with the bytes they would have protected: a cut looks like a
// torn tail. The sync mark closes that gap from outside the log. The file
// syncMarkName holds one proof payload (as above), overwritten in place
// and fsynced at most every syncMarkEvery after an fsync of the log, and
// at Close: the newest log position known to be on stable storage. (A
// write that comes too soon is made when the interval has passed, so the
// mark trails the last fsync by at most syncMarkEvery.) It is
// written only after the fsync it names, so after a crash the log always
// holds at least that much; checkLogs takes it as one more proof. A log
// cut below the mark is refused; only a cut within the last syncMarkEvery
// before a crash can pass for a torn tail. A damaged or missing mark just
// proves nothing (a log it names that no longer exists was flushed and
// removed, or recycled under another number).

const (
	syncMarkName  = "IDEMKV-SYNCED"
	syncMarkEvery = 100 * time.Millisecond
)

// syncMark writes the sync mark.
type syncMark struct {
	fs     vfs.FS
	path   string
	f      vfs.File
	last   time.Time
	marked walfs.SyncPoint // the point on disk
	buf    []byte
}

// write records p unless it is recorded already; it waits for
// syncMarkEvery to pass since the last write (wrote is then false and p is
// not recorded) unless force. Errors are returned for the caller to log:
// the mark only adds protection.
func (m *syncMark) write(p walfs.SyncPoint, force bool) (wrote bool, err error) {
	if p == m.marked {
		return true, nil
	}
	if !force && time.Since(m.last) < syncMarkEvery {
		return false, nil
	}
	var ok bool
	if m.buf, ok = appendProof(m.buf[:0], p); !ok {
		return true, nil
	}
	if m.f == nil {
		f, err := m.fs.OpenReadWrite(m.path, vfs.WriteCategoryUnspecified)
		if err != nil {
			return false, err
		}
		m.f = f
	}
	m.last = time.Now()
	// A fixed length, so that an older, longer mark leaves no tail.
	buf := append(m.buf, make([]byte, syncMarkLen-len(m.buf))...)
	if _, err := m.f.WriteAt(buf, 0); err != nil {
		return false, err
	}
	if err := m.f.Sync(); err != nil {
		return false, err
	}
	m.marked = p
	return true, nil
}

func (m *syncMark) close() {
	if m.f != nil {
		_ = m.f.Close()
		m.f = nil
	}
}

// syncMarkLen is the size of the mark file: a proof payload at most
// (8-byte magic, two uvarints, 4-byte checksum), zero-padded.
const syncMarkLen = 8 + 2*binary.MaxVarintLen64 + 4

// readSyncMark reads the sync mark of dir.
func readSyncMark(fs vfs.FS, dir string) (num uint64, size int64, ok bool) {
	f, err := fs.Open(fs.PathJoin(dir, syncMarkName))
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, syncMarkLen))
	if err != nil {
		return 0, 0, false
	}
	return parseProof(b)
}

// checkManifests refuses a directory whose current MANIFEST lost bytes
// that were fsynced. Its mirror (see package walfs, The MANIFEST mirror)
// is written only after a fsync of the MANIFEST covered the same bytes, so
// the mirror's length is a fsynced length of the MANIFEST, and the mirror
// is a byte copy of the MANIFEST's start. The MANIFEST is damaged if one
// of its chunks before that length does not read (Pebble, which takes an
// unreadable edit for a torn tail, would open the directory without the
// edits from there), or if the mirror holds an intact chunk where the
// MANIFEST's is damaged. A MANIFEST without a mirror (written by a version
// before mirrors, or after its mirror failed) is not checked.
func checkManifests(fs vfs.FS, dir string) error {
	p, err := readManifests(fs, dir)
	if err != nil || p.mb == nil || p.b == nil {
		return nil // no mirror to check against; an unreadable MANIFEST Pebble reports
	}
	cur, mirror, b, mb := p.name, p.mirror, p.b, p.mb
	if _, from, end := mendManifest(b, mb); len(from) > 0 || end < len(mb) {
		at := end
		if len(from) > 0 {
			at = from[0]
		}
		return damaged(fmt.Sprintf("%s is damaged at offset %d: its first %d bytes were fsynced (its mirror %s holds them); idemkv repair reads the mirror where the MANIFEST is damaged (keep a copy of the directory; see \"When the engine refuses to open\" in the README)",
			cur, at, len(mb), mirror), nil)
	}
	return nil
}

// mendManifest reads the chunks of MANIFEST b (Pebble's record format: 32
// KiB blocks of chunks, each with its checksum), taking any chunk that is
// damaged or missing in b from the mirror m at the same offset. It returns
// the mended bytes (b itself if nothing was taken), the offsets of the
// chunks taken from m, and end, the offset where neither copy holds an
// intact chunk (or where both end).
func mendManifest(b, m []byte) (mended []byte, from []int, end int) {
	mended = b
	i := 0
	for i < max(len(mended), len(m)) {
		if rest := logBlockSize - i%logBlockSize; rest < 7 {
			i += rest // a block's padding: no chunk header fits
			continue
		}
		if _, _, e, ok := chunkAt(mended, i, 0); ok {
			i = e
			continue
		}
		_, _, e, ok := chunkAt(m, i, 0)
		if !ok {
			break
		}
		if len(from) == 0 {
			mended = bytes.Clone(b)
		}
		if len(mended) < e {
			mended = append(mended, make([]byte, e-len(mended))...)
		}
		copy(mended[i:e], m[i:e])
		from = append(from, i)
		i = e
	}
	return mended, from, min(i, max(len(mended), len(m)))
}

// manifests are the current MANIFEST of a directory and its mirror.
type manifests struct {
	name, mirror string // "" if the directory has no current MANIFEST
	b, mb        []byte // their bytes; nil if absent or unreadable
}

// readManifests reads the current MANIFEST of dir and its mirror (the
// mirror first: on a live directory it only grows after the MANIFEST did).
// The error is the listing's.
func readManifests(fs vfs.FS, dir string) (p manifests, err error) {
	names, err := fs.List(dir)
	if err != nil {
		return p, err
	}
	p.name = currentManifest(names)
	if p.mirror = walfs.MirrorName(p.name); p.mirror == "" {
		return p, nil
	}
	p.mb, _ = readFile(fs, fs.PathJoin(dir, p.mirror))
	p.b, _ = readFile(fs, fs.PathJoin(dir, p.name))
	return p, nil
}

// currentManifest returns the name of the MANIFEST that Pebble's newest
// manifest marker (marker.manifest.<counter>.<name>) names, or "".
func currentManifest(names []string) string {
	var cur, best string
	for _, name := range names {
		rest, ok := strings.CutPrefix(name, "marker.manifest.")
		if !ok {
			continue
		}
		counter, manifest, ok := strings.Cut(rest, ".")
		if ok && (len(counter) > len(best) || len(counter) == len(best) && counter > best) {
			cur, best = manifest, counter
		}
	}
	return cur
}

func readFile(fs vfs.FS, path string) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}
