package idemhttp

import (
	"strings"

	"github.com/idemkv/idemkv/engine"
)

// LegacyCredentialScopeForTest is the digest that versions before
// credential normalisation stored keys under: the raw value's.
var LegacyCredentialScopeForTest = engine.LegacyScope

// CanonicalJSONExcludingForTest canonicalises body without the field at
// the dotted path.
func CanonicalJSONExcludingForTest(body []byte, path string) ([]byte, bool) {
	var exclude [][]string
	if path != "" {
		exclude = [][]string{strings.Split(path, ".")}
	}
	return canonicalJSONExcluding(body, exclude)
}
