package redisstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"sync"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// Layout 2 (the default since layout 1's hashes, see scripts.go): a
// record is one Redis string, so that a new key is claimed by one native
// SET … NX GET PX, which answers a replay in the same round trip, and
// only the decisions that need the server's clock or a compare run Lua.
//
//	off  len
//	  0    1  '2'              the layout
//	  1    1  'f' | 'c'        state: claimed (a request holds or held the
//	                           lease) | completed
//	  2    1  '0' | '1'        w: a waiting Begin asked to be told when the
//	                           claim ends (set in place by lookScript)
//	  3   48  cid              the claim id: the claiming Store's random id
//	                           (32 hex digits) and a sequence number (16)
//	 51   12  ttl              milliseconds, hex: a claim's key expires ttl
//	                           after its lease ends ('f'); the completed
//	                           record's TTL ('c')
//	 63    4  len(k)           hex
//	 67    .  k                the encoded record.Key (to detect a digest
//	                           collision)
//	  .    .  fields           fp version (1 byte), fp sum (8), tok, att,
//	                           ca (uvarints), rid, prid (uvarint length,
//	                           bytes), checkpoint (0, or 1 and phase and
//	                           data, each length and bytes)
//	  .    .  rec              'c' only: the record, in package record's
//	                           format (it has its own checksum)
//	end-4  4  crc              CRC-32C of bytes 3 to end-4, big-endian
//
// There is no lease field: a claim's lease ends ttl before its key
// expires (PTTL), on the server's clock, so a claim by SET … PX needs no
// script, and a renewal is one PEXPIRE. Scripts read the fixed header
// (GETRANGE 0 66) and never parse the rest; the w byte, which they write
// in place (SETRANGE keeps the key's expiry), is outside the checksum.
const (
	cidLen      = 48
	offState    = 1
	offWait     = 2
	offCID      = 3
	offTTL      = offCID + cidLen // 51
	offKeyLen   = offTTL + 12     // 63
	headerLen   = offKeyLen + 4   // 67
	valueMinLen = headerLen + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// bufs holds the buffers that values are built in for one command: the
// client has written a command's arguments to the connection when the
// call returns, so the buffer can serve the next one (no allocation, no
// zeroing, on the two hot paths).
var bufs sync.Pool

// maxPooled bounds the buffers bufs keeps: a rare large response does not
// pin its size for good.
const maxPooled = 64 << 10

// getBuf returns an empty buffer of at least n bytes' capacity.
func getBuf(n int) []byte {
	if p, ok := bufs.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:0]
	}
	return make([]byte, 0, max(n, 4<<10))
}

// putBuf gives b back to bufs once nothing refers to it.
func putBuf(b []byte) {
	if cap(b) <= maxPooled {
		b = b[:0]
		bufs.Put(&b)
	}
}

// value is a record in layout 2.
type value struct {
	state     byte // 'f' or 'c'
	cid       string
	ttl       int64 // ms
	k         string
	fp        record.Fingerprint
	tok       uint64
	att       uint32
	ca        int64 // when the first attempt began, Unix nanoseconds
	rid, prid string
	cp        *record.Checkpoint
	rec       string // 'c' only
}

// appendValue appends v in layout 2 to dst, with w '0'.
func appendValue(dst []byte, v *value) []byte {
	if dst == nil {
		dst = make([]byte, 0, valueMinLen+len(v.k)+40+len(v.rid)+len(v.prid)+len(v.rec))
	}
	return sealValue(appendFields(dst, v), 0)
}

// appendFields appends v in layout 2 to dst up to its rec, which the
// caller may append before it calls sealValue.
func appendFields(dst []byte, v *value) []byte {
	dst = append(dst, '2', v.state, '0')
	dst = append(dst, v.cid...)
	dst = appendHex(dst, uint64(v.ttl), 12)
	dst = appendHex(dst, uint64(len(v.k)), 4)
	dst = append(dst, v.k...)
	dst = append(dst, v.fp.Version)
	dst = binary.BigEndian.AppendUint64(dst, v.fp.Sum)
	dst = binary.AppendUvarint(dst, v.tok)
	dst = binary.AppendUvarint(dst, uint64(v.att))
	dst = binary.AppendUvarint(dst, uint64(v.ca))
	dst = appendString(dst, v.rid)
	dst = appendString(dst, v.prid)
	if v.cp == nil {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 1)
		dst = appendString(dst, v.cp.Phase)
		dst = appendString(dst, string(v.cp.Data))
	}
	return append(dst, v.rec...)
}

// sealValue appends the checksum of the value that starts at dst[start].
func sealValue(dst []byte, start int) []byte {
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start+offCID:], castagnoli))
}

func appendHex(dst []byte, n uint64, width int) []byte {
	var b [16]byte
	s := strconv.AppendUint(b[:0], n, 16)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// errDamaged is what parseValue returns, wrapped with engine.ErrCorrupt.
var errDamaged = errors.New("damaged layout-2 record")

// parseValue reads a record in layout 2. A value that is not one — cut,
// flipped bytes, another layout — is refused with an error matching
// engine.ErrCorrupt: it is never answered from.
func parseValue(b string) (*value, error) {
	bad := func(what string) error { return fmt.Errorf("%w: %w: %s", engine.ErrCorrupt, errDamaged, what) }
	if len(b) < valueMinLen || b[0] != '2' {
		return nil, bad("not layout 2")
	}
	end := len(b) - 4
	if crc32.Checksum([]byte(b[offCID:end]), castagnoli) != binary.BigEndian.Uint32([]byte(b[end:])) {
		return nil, bad("checksum mismatch")
	}
	v := &value{state: b[offState], cid: b[offCID:offTTL]}
	if (v.state != 'f' && v.state != 'c') || (b[offWait] != '0' && b[offWait] != '1') {
		return nil, bad("state")
	}
	ttl, err1 := strconv.ParseUint(b[offTTL:offKeyLen], 16, 48)
	kl, err2 := strconv.ParseUint(b[offKeyLen:headerLen], 16, 16)
	if err1 != nil || err2 != nil || headerLen+int(kl) > end {
		return nil, bad("header")
	}
	v.ttl = int64(ttl)
	r := reader{s: b[:end], off: headerLen}
	v.k = r.take(int(kl))
	fv := r.take(1)
	fs := r.take(8)
	if len(fs) == 8 {
		v.fp = record.Fingerprint{Version: fv[0], Sum: binary.BigEndian.Uint64([]byte(fs))}
	}
	v.tok = r.uvarint()
	att := r.uvarint()
	v.att = uint32(att)
	v.ca = int64(r.uvarint())
	v.rid = r.str()
	v.prid = r.str()
	switch r.take(1) {
	case "\x00":
	case "\x01":
		v.cp = &record.Checkpoint{Phase: r.str(), Data: []byte(r.str())}
	default:
		r.bad = true
	}
	v.rec = b[r.off:end]
	if r.bad || att > 1<<32-1 || (v.state == 'f') != (v.rec == "") {
		return nil, bad("fields")
	}
	return v, nil
}

// reader reads the fields of a value; bad is set by the first that does
// not fit.
type reader struct {
	s   string
	off int
	bad bool
}

func (r *reader) take(n int) string {
	if r.bad || n < 0 || n > len(r.s)-r.off {
		r.bad = true
		return ""
	}
	s := r.s[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) uvarint() uint64 {
	if r.bad {
		return 0
	}
	n, w := binary.Uvarint([]byte(r.s[r.off:min(len(r.s), r.off+binary.MaxVarintLen64)]))
	if w <= 0 {
		r.bad = true
		return 0
	}
	r.off += w
	return n
}

func (r *reader) str() string {
	n := r.uvarint()
	if n > uint64(len(r.s)) {
		r.bad = true
		return ""
	}
	return r.take(int(n))
}
