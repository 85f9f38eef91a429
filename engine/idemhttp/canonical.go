package idemhttp

import (
	"bytes"
	"encoding/json"
	"io"
	"unicode/utf8"
)

// canonicalJSONExcluding returns body re-encoded with object keys sorted
// and no insignificant whitespace, without the fields at the paths in
// exclude (see Options.FingerprintExclude; nil for none), and ok = false
// if body is not one valid JSON value. Numbers keep their text (1.0 and 1
// stay different); strings are re-escaped in one way, so equal strings
// written with different escapes are equal. Of an object's duplicate
// keys, the last one counts. Each path is the names of nested object
// fields, outermost first; a path that names no field removes nothing,
// and one through something other than an object stops there.
func canonicalJSONExcluding(body []byte, exclude [][]string) ([]byte, bool) {
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
	for _, path := range exclude {
		removePath(v, path)
	}
	out, err := json.Marshal(v) // sorts map keys
	if err != nil {
		return nil, false
	}
	return out, true
}

// removePath deletes the field at path from v, if v is an object that has
// it (through objects only).
func removePath(v any, path []string) {
	for i, name := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		if i == len(path)-1 {
			delete(obj, name)
			return
		}
		v = obj[name]
	}
}
