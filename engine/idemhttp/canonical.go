package idemhttp

import (
	"bytes"
	"encoding/json"
	"io"
	"unicode/utf8"
)

// canonicalJSON returns body re-encoded with object keys sorted and no
// insignificant whitespace, and ok = false if body is not one valid JSON
// value. Numbers keep their text (1.0 and 1 stay different); strings are
// re-escaped in one way, so equal strings written with different escapes
// are equal. Of an object's duplicate keys, the last one counts.
func canonicalJSON(body []byte) ([]byte, bool) {
	if len(bytes.TrimSpace(body)) == 0 || !utf8.Valid(body) {
		// encoding/json would replace invalid UTF-8 with U+FFFD, making
		// different bodies equal.
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false // trailing data
	}
	out, err := json.Marshal(v) // sorts map keys
	if err != nil {
		return nil, false
	}
	return out, true
}
