package idemhttp

import "github.com/idemkv/idemkv/engine"

// LegacyCredentialScopeForTest is the digest that versions before
// credential normalisation stored keys under: the raw value's.
var LegacyCredentialScopeForTest = engine.LegacyScope
