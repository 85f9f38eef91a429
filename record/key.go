package record

import (
	"encoding/binary"
	"fmt"
)

// Limits on the parts of a key, in bytes.
const (
	MaxScopeLen    = 1024
	MaxEndpointLen = 1024
	MaxKeyLen      = 255
)

// Key names one idempotency record. Scope is the tenant (for HTTP, a
// digest of the caller's credential), Endpoint the operation (for HTTP,
// method and route), and Key the client's idempotency key. Parts are plain
// bytes: no normalisation is applied, so keys that merely look alike are
// different keys.
type Key struct {
	Scope    string
	Endpoint string
	Key      string
}

// Validate reports whether k can be stored: Key must be 1 to MaxKeyLen
// bytes, Scope and Endpoint at most MaxScopeLen and MaxEndpointLen bytes.
func (k Key) Validate() error {
	switch {
	case len(k.Key) == 0:
		return fmt.Errorf("%w: empty idempotency key", ErrInvalidKey)
	case len(k.Key) > MaxKeyLen:
		return fmt.Errorf("%w: idempotency key is %d bytes (max %d)", ErrInvalidKey, len(k.Key), MaxKeyLen)
	case len(k.Scope) > MaxScopeLen:
		return fmt.Errorf("%w: scope is %d bytes (max %d)", ErrInvalidKey, len(k.Scope), MaxScopeLen)
	case len(k.Endpoint) > MaxEndpointLen:
		return fmt.Errorf("%w: endpoint is %d bytes (max %d)", ErrInvalidKey, len(k.Endpoint), MaxEndpointLen)
	}
	return nil
}

// Append appends the encoding of k to dst and returns the extended slice.
// It does not validate k.
func (k Key) Append(dst []byte) []byte {
	dst = appendString(dst, k.Scope)
	dst = appendString(dst, k.Endpoint)
	return appendString(dst, k.Key)
}

// EncodedLen returns the length of k's encoding.
func (k Key) EncodedLen() int {
	return uvarintLen(len(k.Scope)) + len(k.Scope) + uvarintLen(len(k.Endpoint)) +
		len(k.Endpoint) + uvarintLen(len(k.Key)) + len(k.Key)
}

// String returns a readable form of k for logs and tools.
func (k Key) String() string {
	return fmt.Sprintf("%q/%q/%q", k.Scope, k.Endpoint, k.Key)
}

// DecodeKey decodes an encoded key that makes up the whole of b. The
// result does not alias b. Malformed input gives an error matching
// ErrCorrupt.
func DecodeKey(b []byte) (Key, error) {
	var parts [3]string
	for i := range parts {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return Key{}, fmt.Errorf("%w: key part %d is truncated", ErrCorrupt, i)
		}
		parts[i] = string(b[w : w+int(n)])
		b = b[w+int(n):]
	}
	if len(b) != 0 {
		return Key{}, fmt.Errorf("%w: %d bytes after the key", ErrCorrupt, len(b))
	}
	k := Key{Scope: parts[0], Endpoint: parts[1], Key: parts[2]}
	if err := k.Validate(); err != nil {
		return Key{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return k, nil
}

// Prefix selects a range of keys for a scan: every key, the keys of one
// scope, or the keys of one endpoint within one scope. Build it with
// AllKeys, ScopePrefix or EndpointPrefix.
type Prefix struct {
	scope, endpoint string
	depth           int
}

// AllKeys selects every key.
func AllKeys() Prefix { return Prefix{} }

// ScopePrefix selects the keys of one scope.
func ScopePrefix(scope string) Prefix { return Prefix{scope: scope, depth: 1} }

// EndpointPrefix selects the keys of one endpoint within one scope.
func EndpointPrefix(scope, endpoint string) Prefix {
	return Prefix{scope: scope, endpoint: endpoint, depth: 2}
}

// Append appends the encoded prefix to dst: every key it selects, and no
// other, has an encoding that begins with these bytes.
func (p Prefix) Append(dst []byte) []byte {
	if p.depth >= 1 {
		dst = appendString(dst, p.scope)
	}
	if p.depth >= 2 {
		dst = appendString(dst, p.endpoint)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func uvarintLen(n int) int { return uvarint64Len(uint64(n)) }
