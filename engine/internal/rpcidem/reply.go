package rpcidem

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// Reply is a unary call's outcome, as it is stored and replayed: the
// response message or the error, and the metadata the handler set.
type Reply struct {
	// Status is the error; Status.Code OK for a response.
	Status Status
	// Type is the response message's full protobuf name
	// ("payments.v1.Charge"), and Message its encoding (OK only). An
	// empty Type is a handler's nil response (gRPC sends it as an empty
	// message), replayed as nil.
	Type    string
	Message []byte
	// Header and Trailer are the metadata the handler set (binary "-bin"
	// values as their bytes), minus what is never stored (see Storable).
	Header, Trailer []Pair
}

// Pair is one metadata entry; Key is in lower case. A binary ("-bin")
// entry holds its bytes, unless Text is set: a value that a framework
// handed over as text that does not decode (a Connect header not in
// base64), kept as it came.
type Pair struct {
	Key, Value string
	Text       bool
}

// ReplayKey is the response header metadata a replay carries, set to
// "true" (HTTP's Idempotency-Replay, as gRPC metadata).
const ReplayKey = "idempotency-replay"

// Storable reports whether metadata under key (lower case) is recorded:
// not the protocols' own (grpc-*, connect-*, pseudo-headers, content-type,
// content-length, content-encoding, accept-encoding, te, trailer,
// transfer-encoding, connection, date, user-agent), not Set-Cookie (a
// session handed to one client is not handed to its retries), and not the
// replay marker.
func Storable(key string) bool {
	if key == "" || key[0] == ':' || strings.HasPrefix(key, "grpc-") || strings.HasPrefix(key, "connect-") {
		return false
	}
	switch key {
	case "content-type", "content-length", "content-encoding", "accept-encoding",
		"te", "trailer", "transfer-encoding", "connection", "keep-alive", "date",
		"user-agent", "set-cookie", ReplayKey, "idempotent-replayed":
		return false
	}
	return true
}

// The layout of an RPC's record (engine.Response):
//
//	Status  the HTTP status of the code (HTTPStatus): 200 for a response
//	Header  ":code"  the status code, in decimal; always first
//	        ":type"  the response message's full name (OK only; empty
//	                 for a nil response)
//	        "h:" + key, value   a header metadata entry, in order
//	        "t:" + key, value   a trailer metadata entry, in order
//	        "h~" / "t~" + key   the same, for a binary entry kept as text
//	Body    OK: the response message's encoding;
//	        else: the error as a google.rpc.Status (MarshalStatus)
//
// Metadata keys cannot hold ':' or '~', so no entry can pass for another.
// Metadata past the record's limits (record.MaxHeaders entries,
// record.MaxHeaderBytes bytes) is left out, headers kept before trailers:
// the handler has run, and a replay that lacks some metadata is better
// than a key released to run it again.
const (
	nameCode = ":code"
	nameType = ":type"
)

// Response returns r as the response a claim completes with, replayed for
// ttl (0: the store's TTL), and how many metadata entries did not fit.
func (r *Reply) Response(ttl time.Duration) (resp engine.Response, dropped int) {
	h := make([]record.Header, 0, 2+len(r.Header)+len(r.Trailer))
	h = append(h, record.Header{Name: nameCode, Value: strconv.FormatUint(uint64(r.Status.Code), 10)})
	var body []byte
	if r.Status.Code == OK {
		h = append(h, record.Header{Name: nameType, Value: r.Type})
		body = r.Message
	} else {
		body = MarshalStatus(r.Status)
	}
	size := 0
	for _, e := range h {
		size += len(e.Name) + len(e.Value)
	}
	add := func(prefix string, pairs []Pair) {
		for _, p := range pairs {
			name := prefix + ":" + p.Key
			if p.Text {
				name = prefix + "~" + p.Key
			}
			if len(h) == record.MaxHeaders || size+len(name)+len(p.Value) > record.MaxHeaderBytes {
				dropped++
				continue
			}
			h = append(h, record.Header{Name: name, Value: p.Value})
			size += len(name) + len(p.Value)
		}
	}
	add("h", r.Header)
	add("t", r.Trailer)
	return engine.Response{Status: HTTPStatus(r.Status.Code), Header: h, Body: body, TTL: ttl}, dropped
}

// Decode returns the Reply stored in rec. A record that does not have an
// RPC's layout (or whose stored error does not decode) is an error
// matching engine.ErrCorrupt: it is never replayed.
func Decode(rec *record.Record) (*Reply, error) {
	if len(rec.Header) == 0 || rec.Header[0].Name != nameCode {
		return nil, fmt.Errorf("%w: the record of %q is not an RPC's (no %s)", engine.ErrCorrupt, rec.RequestID, nameCode)
	}
	code, err := strconv.ParseUint(rec.Header[0].Value, 10, 31)
	if err != nil {
		return nil, fmt.Errorf("%w: the record of %q has code %q", engine.ErrCorrupt, rec.RequestID, rec.Header[0].Value)
	}
	r := &Reply{Status: Status{Code: uint32(code)}}
	rest := rec.Header[1:]
	if r.Status.Code == OK {
		if len(rest) == 0 || rest[0].Name != nameType || (rest[0].Value == "" && len(rec.Body) > 0) {
			return nil, fmt.Errorf("%w: the record of %q names no message type", engine.ErrCorrupt, rec.RequestID)
		}
		r.Type, r.Message, rest = rest[0].Value, rec.Body, rest[1:]
	} else {
		s, err := UnmarshalStatus(rec.Body)
		if err != nil {
			return nil, fmt.Errorf("%w: the record of %q: %v", engine.ErrCorrupt, rec.RequestID, err)
		}
		if s.Code != r.Status.Code {
			return nil, fmt.Errorf("%w: the record of %q has code %d and a status of code %d", engine.ErrCorrupt, rec.RequestID, r.Status.Code, s.Code)
		}
		r.Status = s
	}
	for _, h := range rest {
		if len(h.Name) < 3 {
			return nil, fmt.Errorf("%w: the record of %q has an entry %q", engine.ErrCorrupt, rec.RequestID, h.Name)
		}
		p := Pair{Key: h.Name[2:], Value: h.Value, Text: h.Name[1] == '~'}
		switch h.Name[:2] {
		case "h:", "h~":
			r.Header = append(r.Header, p)
		case "t:", "t~":
			r.Trailer = append(r.Trailer, p)
		default:
			return nil, fmt.Errorf("%w: the record of %q has an entry %q", engine.ErrCorrupt, rec.RequestID, h.Name)
		}
	}
	return r, nil
}
