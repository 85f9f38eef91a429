package record

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"time"
	"unsafe"

	"github.com/idemkv/idemkv/codec"
)

// These constants are part of the on-disk format.
const (
	magic         = 0x1D
	formatVersion = 1
	flagCheckpt   = 1 << 0
	fixedHeader   = 1 + 1 + 1 + 8 // state, flags, fp version, fp sum
	crcLen        = 4
)

// Limits on the fields of a record.
const (
	MaxRequestIDLen   = 255
	MaxHeaders        = 100
	MaxHeaderBytes    = 64 << 10 // names and values together
	MaxPhaseLen       = 255
	MaxCheckpointData = 64 << 10
)

// State is the state of a record.
type State uint8

const (
	// Claimed records are claims (leases) held by a running request.
	Claimed State = 1
	// Completed records hold a response to replay.
	Completed State = 2
)

func (s State) String() string {
	switch s {
	case Claimed:
		return "in-flight"
	case Completed:
		return "completed"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Header is one stored response header.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Checkpoint is a recovery point recorded by a running request: the name
// of the last phase it finished and a small opaque payload.
type Checkpoint struct {
	Phase string
	Data  []byte
}

// Lease describes the claim of an in-flight record.
type Lease struct {
	Owner     uint64    // the incarnation (process) that holds the claim
	Token     uint64    // fencing token, new for every claim of the key
	ExpiresAt time.Time // when the claim may be taken over
}

// Record is one stored idempotency record: a claim while the first request
// runs, then its response.
type Record struct {
	State       State
	RequestID   string
	Fingerprint Fingerprint
	Attempt     uint32 // 1 for the first claim, +1 for each recovery
	Status      int    // response status; 0 while claimed
	Header      []Header
	Body        []byte
	CreatedAt   time.Time // when the request was first claimed
	CompletedAt time.Time // when the response was stored
	ExpiresAt   time.Time // when the record may no longer be replayed
	Lease       Lease
	Checkpoint  *Checkpoint // nil if none was recorded
}

// Expired reports whether r may no longer be used at now.
func (r *Record) Expired(now time.Time) bool {
	return !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt)
}

// Clone returns a deep copy of r that shares no memory with it.
func (r *Record) Clone() *Record {
	c := *r
	c.Header = slices.Clone(r.Header)
	if r.Body != nil {
		c.Body = bytes.Clone(r.Body)
	}
	if r.Checkpoint != nil {
		cp := Checkpoint{Phase: r.Checkpoint.Phase, Data: bytes.Clone(r.Checkpoint.Data)}
		c.Checkpoint = &cp
	}
	return &c
}

// WithoutBody returns a copy of r with no body. Its checkpoint is shared
// with r; its headers are copied, because a decoded record may hold them in
// its own allocation (see decodeHeader), which a copy sharing them would
// keep alive with r's body.
func (r *Record) WithoutBody() *Record {
	c := *r
	c.Body = nil
	c.Header = slices.Clone(r.Header)
	return &c
}

// MemSize estimates the bytes of memory r holds: what a cache of decoded
// records charges for it.
func (r *Record) MemSize() int {
	const headerOverhead = 32 // two string headers
	n := int(unsafe.Sizeof(*r)) + len(r.RequestID) + cap(r.Body)
	for _, h := range r.Header {
		n += headerOverhead + len(h.Name) + len(h.Value)
	}
	if r.Checkpoint != nil {
		n += int(unsafe.Sizeof(*r.Checkpoint)) + len(r.Checkpoint.Phase) + cap(r.Checkpoint.Data)
	}
	return n
}

// Append appends the encoding of r to dst, compressing the body with m,
// and returns the extended slice. r is not retained.
func Append(dst []byte, r *Record, m codec.Method) ([]byte, error) {
	if err := r.check(); err != nil {
		return dst, err
	}
	start := len(dst)
	hdrLen := r.headerLen()
	dst = append(dst, magic, formatVersion)
	dst = binary.AppendUvarint(dst, uint64(hdrLen))
	hdrStart := len(dst)
	flags := byte(0)
	if r.Checkpoint != nil {
		flags |= flagCheckpt
	}
	dst = append(dst, byte(r.State), flags, r.Fingerprint.Version)
	dst = binary.LittleEndian.AppendUint64(dst, r.Fingerprint.Sum)
	dst = binary.AppendUvarint(dst, uint64(r.Attempt))
	dst = binary.AppendUvarint(dst, uint64(r.Status))
	dst = binary.AppendVarint(dst, unixNano(r.CreatedAt))
	dst = binary.AppendVarint(dst, unixNano(r.CompletedAt))
	dst = binary.AppendVarint(dst, unixNano(r.ExpiresAt))
	dst = binary.AppendUvarint(dst, r.Lease.Owner)
	dst = binary.AppendUvarint(dst, r.Lease.Token)
	dst = binary.AppendVarint(dst, unixNano(r.Lease.ExpiresAt))
	dst = appendString(dst, r.RequestID)
	dst = binary.AppendUvarint(dst, uint64(len(r.Header)))
	for _, h := range r.Header {
		dst = appendString(dst, h.Name)
		dst = appendString(dst, h.Value)
	}
	if c := r.Checkpoint; c != nil {
		dst = appendString(dst, c.Phase)
		dst = binary.AppendUvarint(dst, uint64(len(c.Data)))
		dst = append(dst, c.Data...)
	}
	if len(dst)-hdrStart != hdrLen {
		// headerLen and the code above disagree: a bug, not bad input.
		return dst[:start], fmt.Errorf("idemkv/record: internal error: header is %d bytes, computed %d", len(dst)-hdrStart, hdrLen)
	}
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
	out, err := codec.Append(dst, r.Body, m)
	if err != nil {
		return dst[:start], fmt.Errorf("body: %w", err)
	}
	return out, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (r *Record) check() error {
	if r.State != Claimed && r.State != Completed {
		return fmt.Errorf("idemkv/record: invalid state %d", r.State)
	}
	if len(r.RequestID) > MaxRequestIDLen {
		return fmt.Errorf("%w: request id is %d bytes (max %d)", ErrTooLarge, len(r.RequestID), MaxRequestIDLen)
	}
	if len(r.Header) > MaxHeaders {
		return fmt.Errorf("%w: %d headers (max %d)", ErrTooLarge, len(r.Header), MaxHeaders)
	}
	n := 0
	for _, h := range r.Header {
		n += len(h.Name) + len(h.Value)
	}
	if n > MaxHeaderBytes {
		return fmt.Errorf("%w: %d bytes of headers (max %d)", ErrTooLarge, n, MaxHeaderBytes)
	}
	if c := r.Checkpoint; c != nil {
		if len(c.Phase) > MaxPhaseLen || len(c.Data) > MaxCheckpointData {
			return fmt.Errorf("%w: checkpoint phase of %d bytes or data of %d bytes (max %d, %d)",
				ErrTooLarge, len(c.Phase), len(c.Data), MaxPhaseLen, MaxCheckpointData)
		}
	}
	if r.Status < 0 || r.Status > math.MaxUint16 {
		return fmt.Errorf("idemkv/record: invalid status %d", r.Status)
	}
	return nil
}

func (r *Record) headerLen() int {
	n := fixedHeader + uvarintLen(int(r.Attempt)) + uvarintLen(r.Status) +
		varintLen(unixNano(r.CreatedAt)) + varintLen(unixNano(r.CompletedAt)) +
		varintLen(unixNano(r.ExpiresAt)) + uvarint64Len(r.Lease.Owner) +
		uvarint64Len(r.Lease.Token) + varintLen(unixNano(r.Lease.ExpiresAt)) +
		uvarintLen(len(r.RequestID)) + len(r.RequestID) + uvarintLen(len(r.Header))
	for _, h := range r.Header {
		n += uvarintLen(len(h.Name)) + len(h.Name) + uvarintLen(len(h.Value)) + len(h.Value)
	}
	if c := r.Checkpoint; c != nil {
		n += uvarintLen(len(c.Phase)) + len(c.Phase) + uvarintLen(len(c.Data)) + len(c.Data)
	}
	return n
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func varintLen(v int64) int {
	u := uint64(v) << 1
	if v < 0 {
		u = ^u
	}
	return uvarint64Len(u)
}

func uvarint64Len(u uint64) int {
	l := 1
	for u >= 0x80 {
		u >>= 7
		l++
	}
	return l
}

// Decode decodes an encoded record, body included. The result does not
// alias b. Damaged or malformed input gives an error matching ErrCorrupt.
func Decode(b []byte) (*Record, error) {
	r, frame, err := decode(b)
	if err != nil {
		return nil, err
	}
	n, err := codec.DecodedLen(frame)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		r.Body, err = codec.Decode(make([]byte, 0, n), frame)
		if err != nil {
			return nil, err
		}
	}
	return r, nil
}

// DecodeMeta decodes everything of an encoded record but its body, which
// it leaves nil. The body frame's checksum is verified, but the body is not
// decompressed. The result does not alias b.
func DecodeMeta(b []byte) (*Record, error) {
	r, frame, err := decode(b)
	if err != nil {
		return nil, err
	}
	if _, err := codec.DecodedLen(frame); err != nil {
		return nil, err
	}
	return r, nil
}

// Meta is the part of a record's header that the engine's decisions
// need, read by Peek without allocating.
type Meta struct {
	State       State
	Fingerprint Fingerprint
	Attempt     uint32
	ExpiresAt   time.Time
	Lease       Lease
}

// Expired reports whether the record may no longer be used at now.
func (m *Meta) Expired(now time.Time) bool {
	return !m.ExpiresAt.IsZero() && !now.Before(m.ExpiresAt)
}

// Peek verifies the header checksum of an encoded record and returns its
// metadata without allocating. It does not verify the body frame.
func Peek(b []byte) (Meta, error) {
	h, _, err := header(b)
	if err != nil {
		return Meta{}, err
	}
	var m Meta
	d := decoder{b: h}
	_, err = d.fixed(&m)
	return m, err
}

// header verifies the header checksum and returns the header bytes and the
// body frame that follows them.
func header(b []byte) (hdr, frame []byte, err error) {
	if len(b) < 3 {
		return nil, nil, fmt.Errorf("%w: record of %d bytes is too short", ErrCorrupt, len(b))
	}
	if b[0] != magic {
		return nil, nil, fmt.Errorf("%w: bad magic %#x", ErrCorrupt, b[0])
	}
	if b[1] != formatVersion {
		return nil, nil, fmt.Errorf("%w: record format version %d (this build reads %d)", ErrVersion, b[1], formatVersion)
	}
	hdrLen, w := binary.Uvarint(b[2:])
	if w <= 0 || hdrLen > uint64(len(b)) || 2+w+int(hdrLen)+crcLen > len(b) {
		return nil, nil, fmt.Errorf("%w: record header is truncated", ErrCorrupt)
	}
	end := 2 + w + int(hdrLen)
	if got, want := crc32.Checksum(b[:end], castagnoli), binary.LittleEndian.Uint32(b[end:]); got != want {
		return nil, nil, fmt.Errorf("%w: record header checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	return b[2+w : end], b[end+crcLen:], nil
}

// decode parses and verifies the header and returns the record without its
// body and the unverified body frame.
func decode(b []byte) (*Record, []byte, error) {
	h, frame, err := header(b)
	if err != nil {
		return nil, nil, err
	}
	r, err := decodeHeader(h)
	if err != nil {
		return nil, nil, err
	}
	return r, frame, nil
}

// inlineHeaders is how many headers a decoded record holds in its own
// allocation (recordWithHeaders); a response usually has one to three.
const inlineHeaders = 4

type recordWithHeaders struct {
	r Record
	h [inlineHeaders]Header
}

func decodeHeader(h []byte) (*Record, error) {
	var m Meta
	d := decoder{b: h}
	status, err := d.fixed(&m)
	if err != nil {
		return nil, err
	}
	flags := h[1]
	// One string holds every text field; the fields are substrings of it.
	s := string(h)
	reqID := d.str(s)
	n := d.uvarint()
	if d.err == nil && n > MaxHeaders {
		return nil, fmt.Errorf("%w: %d headers", ErrCorrupt, n)
	}
	var r *Record
	var hdr []Header
	switch {
	case d.err != nil || n == 0:
		r = new(Record)
	case n <= inlineHeaders:
		// The record and its few headers in one allocation.
		rh := new(recordWithHeaders)
		r, hdr = &rh.r, rh.h[:n:n]
	default:
		r, hdr = new(Record), make([]Header, n)
	}
	*r = Record{State: m.State, RequestID: reqID, Fingerprint: m.Fingerprint, Attempt: m.Attempt,
		Status: status, Header: hdr, ExpiresAt: m.ExpiresAt, Lease: m.Lease}
	for i := range hdr {
		hdr[i] = Header{Name: d.str(s), Value: d.str(s)}
	}
	if flags&flagCheckpt != 0 {
		r.Checkpoint = &Checkpoint{Phase: d.str(s)}
		if data := d.str(s); len(data) > 0 {
			r.Checkpoint.Data = []byte(data)
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if d.off != len(h) {
		return nil, fmt.Errorf("%w: %d stray bytes after the record header", ErrCorrupt, len(h)-d.off)
	}
	r.CreatedAt, r.CompletedAt = fromUnixNano(d.created), fromUnixNano(d.completed)
	return r, nil
}

// decoder reads varints and length-prefixed fields from b, recording the
// first error and returning zero values after it.
type decoder struct {
	b                  []byte
	off                int
	err                error
	created, completed int64
}

// fixed reads the header up to and including the lease into m, and returns
// the status.
func (d *decoder) fixed(m *Meta) (status int, err error) {
	h := d.b
	if len(h) < fixedHeader {
		return 0, fmt.Errorf("%w: record header is truncated", ErrCorrupt)
	}
	m.State = State(h[0])
	if m.State != Claimed && m.State != Completed {
		return 0, fmt.Errorf("%w: unknown state %d", ErrCorrupt, h[0])
	}
	if h[1]&^flagCheckpt != 0 {
		return 0, fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, h[1])
	}
	m.Fingerprint = Fingerprint{Version: h[2], Sum: binary.LittleEndian.Uint64(h[3:])}
	d.off = fixedHeader
	attempt, st := d.uvarint(), d.uvarint()
	d.created, d.completed = d.varint(), d.varint()
	expires := d.varint()
	m.Lease.Owner, m.Lease.Token = d.uvarint(), d.uvarint()
	leaseExp := d.varint()
	if d.err != nil {
		return 0, d.err
	}
	if attempt > math.MaxUint32 || st > math.MaxUint16 {
		return 0, fmt.Errorf("%w: attempt %d or status %d out of range", ErrCorrupt, attempt, st)
	}
	m.Attempt = uint32(attempt)
	m.ExpiresAt, m.Lease.ExpiresAt = fromUnixNano(expires), fromUnixNano(leaseExp)
	return int(st), nil
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad varint in record header", ErrCorrupt)
		return 0
	}
	d.off += n
	return x
}

func (d *decoder) varint() int64 {
	u := d.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

// str reads a length-prefixed field and returns it as a substring of s,
// which must hold the same bytes as d.b.
func (d *decoder) str(s string) string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)-d.off) {
		d.err = fmt.Errorf("%w: field overruns the record header", ErrCorrupt)
		return ""
	}
	f := s[d.off : d.off+int(n)]
	d.off += int(n)
	return f
}
