package idemhttp

import (
	"fmt"
	"net/http"
	"strings"
)

// MaxKeyLen is the longest idempotency key accepted, in bytes.
const MaxKeyLen = 255

// ParseKey returns the idempotency key of a request: the value of the
// first of headers that is present (canonical names, such as
// "Idempotency-Key"). It returns "", nil when none is present.
//
// A value may be a bare token (abc-123, as most APIs send) or a quoted
// structured-field string ("abc-123", as the IETF draft specifies), which
// is unquoted (\" and \\ are its only escapes). The key must then be 1 to
// MaxKeyLen printable ASCII characters (space to tilde); a bare key holds
// no comma. A header repeated, a comma-separated list in one (which HTTP
// defines as the same), or two of headers with different values, is
// refused with ErrMultipleKeys, since a server cannot tell which one the
// client meant.
// Every other malformed value matches ErrInvalidKey, with a message saying
// what is wrong that is safe to show the client.
func ParseKey(h http.Header, headers []string) (string, error) {
	var key, from string
	for _, name := range headers {
		vs := h[name]
		if len(vs) == 0 {
			continue
		}
		if len(vs) > 1 {
			return "", fmt.Errorf("%w: header %s is repeated", ErrMultipleKeys, name)
		}
		k, err := parseKeyValue(vs[0])
		if err != nil {
			return "", fmt.Errorf("%w in header %s", err, name)
		}
		if from != "" && k != key {
			return "", fmt.Errorf("%w: headers %s and %s differ", ErrMultipleKeys, from, name)
		}
		key, from = k, name
	}
	return key, nil
}

// errList refuses a comma-separated list of keys in one header value: the
// same as the header repeated (RFC 9110, section 5.3). A comma inside a
// quoted key is part of the key.
var errList = fmt.Errorf("%w: the header holds a comma-separated list", ErrMultipleKeys)

// parseKeyValue unquotes and validates one header value.
func parseKeyValue(v string) (string, error) {
	v = strings.Trim(v, " \t")
	if strings.HasPrefix(v, `"`) {
		var err error
		if v, err = unquote(v); err != nil {
			return "", err
		}
	} else if strings.Contains(v, ",") {
		return "", errList
	}
	switch {
	case v == "":
		return "", fmt.Errorf("%w: empty", ErrInvalidKey)
	case len(v) > MaxKeyLen:
		return "", fmt.Errorf("%w: %d bytes long (max %d)", ErrInvalidKey, len(v), MaxKeyLen)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e {
			return "", fmt.Errorf("%w: byte 0x%02x at offset %d is not printable ASCII", ErrInvalidKey, c, i)
		}
	}
	return v, nil
}

// unquote decodes a structured-field string (RFC 8941, section 3.3.3):
// DQUOTE *( unescaped / "\" ( DQUOTE / "\" ) ) DQUOTE, nothing after it.
func unquote(v string) (string, error) {
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\':
			i++
			if i == len(v) || (v[i] != '"' && v[i] != '\\') {
				return "", fmt.Errorf("%w: bad escape in quoted string", ErrInvalidKey)
			}
			b.WriteByte(v[i])
		case c == '"':
			if rest := strings.TrimLeft(v[i+1:], " \t"); strings.HasPrefix(rest, ",") {
				return "", errList
			} else if rest != "" {
				return "", fmt.Errorf("%w: text after the closing quote", ErrInvalidKey)
			}
			return b.String(), nil
		case c < 0x20 || c > 0x7e:
			return "", fmt.Errorf("%w: byte 0x%02x at offset %d is not printable ASCII", ErrInvalidKey, c, i)
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("%w: unterminated quoted string", ErrInvalidKey)
}
