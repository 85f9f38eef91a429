package idemhttp

// LegacyCredentialScopeForTest is the digest that versions before
// credential normalisation stored keys under: the raw value's.
var LegacyCredentialScopeForTest = digestScope
