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
	// ("payments.v1.Charge"), and Message its encoding (OK only).
	Type    string
	Message []byte
	// Header and Trailer are the metadata the handler set (binary "-bin"
	// values as their bytes), minus what is never stored (see Storable).
	Header, Trailer []Pair
}

// Pair is one metadata entry; Key is in lower case.
type Pair struct{ Key, Value string }

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
//	        ":type"  the response message's full name (OK only)
//	        "h:" + key, value   a header metadata entry, in order
//	        "t:" + key, value   a trailer metadata entry, in order
//	Body    OK: the response message's encoding;
//	        else: the error as a google.rpc.Status (MarshalStatus)
//
// Metadata keys cannot hold ':', so no entry can pass for another.
const (
	nameCode = ":code"
	nameType = ":type"
)

// Response returns r as the response a claim completes with, replayed for
// ttl (0: the store's TTL).
func (r *Reply) Response(ttl time.Duration) engine.Response {
	h := make([]record.Header, 0, 2+len(r.Header)+len(r.Trailer))
	h = append(h, record.Header{Name: nameCode, Value: strconv.FormatUint(uint64(r.Status.Code), 10)})
	var body []byte
	if r.Status.Code == OK {
		h = append(h, record.Header{Name: nameType, Value: r.Type})
		body = r.Message
	} else {
		body = MarshalStatus(r.Status)
	}
	for _, p := range r.Header {
		h = append(h, record.Header{Name: "h:" + p.Key, Value: p.Value})
	}
	for _, p := range r.Trailer {
		h = append(h, record.Header{Name: "t:" + p.Key, Value: p.Value})
	}
	return engine.Response{Status: HTTPStatus(r.Status.Code), Header: h, Body: body, TTL: ttl}
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
		if len(rest) == 0 || rest[0].Name != nameType || rest[0].Value == "" {
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
		switch {
		case strings.HasPrefix(h.Name, "h:") && len(h.Name) > 2:
			r.Header = append(r.Header, Pair{h.Name[2:], h.Value})
		case strings.HasPrefix(h.Name, "t:") && len(h.Name) > 2:
			r.Trailer = append(r.Trailer, Pair{h.Name[2:], h.Value})
		default:
			return nil, fmt.Errorf("%w: the record of %q has an entry %q", engine.ErrCorrupt, rec.RequestID, h.Name)
		}
	}
	return r, nil
}
