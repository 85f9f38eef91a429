package rpcidem

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Exclude is a set of request fields left out of fingerprints (see
// ParseExclude).
type Exclude [][]protoreflect.Name

// ParseExclude parses field paths: a field's protobuf name ("requested_at")
// or a dotted path through singular message fields ("meta.trace_id").
func ParseExclude(paths []string) (Exclude, error) {
	var ex Exclude
	for _, p := range paths {
		var names []protoreflect.Name
		for _, n := range strings.Split(p, ".") {
			if !protoreflect.Name(n).IsValid() {
				return nil, fmt.Errorf("FingerprintExclude %q: want a field name or a dotted path of names", p)
			}
			names = append(names, protoreflect.Name(n))
		}
		ex = append(ex, names)
	}
	return ex, nil
}

// MarshalForFingerprint encodes m deterministically (map entries sorted),
// with the fields of ex cleared in a copy; a path that m's type does not
// have is skipped, so one list serves every method. Unknown fields are
// kept: they are part of what the client sent.
func MarshalForFingerprint(m proto.Message, ex Exclude) ([]byte, error) {
	if len(ex) > 0 {
		m = proto.Clone(m)
		for _, path := range ex {
			clearPath(m.ProtoReflect(), path)
		}
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

func clearPath(m protoreflect.Message, path []protoreflect.Name) {
	for i, name := range path {
		fd := m.Descriptor().Fields().ByName(name)
		if fd == nil {
			return
		}
		if i == len(path)-1 {
			m.Clear(fd)
			return
		}
		if fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() || !m.Has(fd) {
			return
		}
		m = m.Mutable(fd).Message()
	}
}

// MessageType returns the registered type of a stored response
// (Reply.Type), from the types generated code registers.
func MessageType(name string) (protoreflect.MessageType, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name))
	if err != nil {
		return nil, fmt.Errorf("the stored response's type %q is not registered in this program: %w", name, err)
	}
	return mt, nil
}
