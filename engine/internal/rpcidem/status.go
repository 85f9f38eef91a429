package rpcidem

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Status is a call's error as both frameworks carry it: a code, a message
// and typed details (google.protobuf.Any: a type URL and its bytes).
type Status struct {
	Code    uint32
	Message string
	Details []Detail
}

// Detail is one error detail, as a google.protobuf.Any.
type Detail struct {
	TypeURL string
	Value   []byte
}

// errStatus is what UnmarshalStatus's errors match.
var errStatus = errors.New("not a google.rpc.Status")

// MarshalStatus encodes s as a google.rpc.Status message, the body of a
// stored error:
//
//	google.rpc.Status {
//	    int32  code    = 1;
//	    string message = 2;
//	    repeated google.protobuf.Any details = 3;  // string type_url = 1; bytes value = 2;
//	}
func MarshalStatus(s Status) []byte {
	var b []byte
	if s.Code != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(int32(s.Code))))
	}
	if s.Message != "" {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, s.Message)
	}
	for _, d := range s.Details {
		var a []byte
		if d.TypeURL != "" {
			a = protowire.AppendTag(a, 1, protowire.BytesType)
			a = protowire.AppendString(a, d.TypeURL)
		}
		if len(d.Value) > 0 {
			a = protowire.AppendTag(a, 2, protowire.BytesType)
			a = protowire.AppendBytes(a, d.Value)
		}
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, a)
	}
	return b
}

// UnmarshalStatus decodes a google.rpc.Status. Unknown fields are skipped,
// as protobuf does; a malformed message or a code outside int32's
// non-negative range is an error. A message or type URL that is not UTF-8
// is kept as it is: a handler may send one (a message cut inside a
// character), and its replay must carry the same bytes.
func UnmarshalStatus(b []byte) (Status, error) {
	var s Status
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return Status{}, fmt.Errorf("%w: %v", errStatus, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return Status{}, fmt.Errorf("%w: code: %v", errStatus, protowire.ParseError(n))
			}
			if int64(v) < 0 || v > 1<<31-1 {
				return Status{}, fmt.Errorf("%w: code %d", errStatus, int64(v))
			}
			s.Code, b = uint32(v), b[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeString(b)
			if n < 0 {
				return Status{}, fmt.Errorf("%w: message: %v", errStatus, protowire.ParseError(n))
			}
			s.Message, b = v, b[n:]
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return Status{}, fmt.Errorf("%w: detail: %v", errStatus, protowire.ParseError(n))
			}
			d, err := unmarshalAny(v)
			if err != nil {
				return Status{}, err
			}
			s.Details, b = append(s.Details, d), b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return Status{}, fmt.Errorf("%w: field %d: %v", errStatus, num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return s, nil
}

func unmarshalAny(b []byte) (Detail, error) {
	var d Detail
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return Detail{}, fmt.Errorf("%w: detail: %v", errStatus, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeString(b)
			if n < 0 {
				return Detail{}, fmt.Errorf("%w: a detail's type URL: %v", errStatus, protowire.ParseError(n))
			}
			d.TypeURL, b = v, b[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return Detail{}, fmt.Errorf("%w: a detail's value: %v", errStatus, protowire.ParseError(n))
			}
			d.Value, b = append([]byte(nil), v...), b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return Detail{}, fmt.Errorf("%w: a detail's field %d: %v", errStatus, num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return d, nil
}
