package idemhttp

import (
	"errors"
	"net/http"
	"strings"

	"github.com/idemkv/idemkv/engine"
)

// CredentialScope returns the scope that the default Options store a
// request's keys under, in a store whose Scoper is s: the keyed digest
// (see engine.Scoper) of the normalised credential (the value of the
// Authorization header, see NormalizeCredential), or "" (no scope, see
// Options.Anonymous) for an empty one. The digest is 32 bytes of binary;
// the credential cannot be read back from it, nor tested without the
// store's secret.
func CredentialScope(s *engine.Scoper, credential string) string {
	return s.Scope(NormalizeCredential(credential))
}

// cookieCredential is what a session cookie is digested as (see
// Options.ScopeCookie).
func cookieCredential(name, value string) string {
	return "cookie " + name + "=" + value
}

// NormalizeCredential returns an Authorization value in the form its
// digest is taken of, so that spellings HTTP treats as one credential
// (RFC 9110, section 11) are one tenant: surrounding blanks trimmed, the
// auth scheme's letter case folded to its usual spelling (the first letter
// upper case, the rest lower: Bearer, Basic, Digest), and the blanks
// between the scheme and the credentials collapsed to one space. The credentials themselves (a token,
// a Basic user:password) are kept as they are: "Bearer X" and "Bearer x"
// are two tenants. A value without a blank inside is all credentials,
// never folded.
func NormalizeCredential(v string) string {
	v = strings.Trim(v, " \t")
	i := strings.IndexAny(v, " \t")
	if i < 0 {
		return v
	}
	scheme, rest := v[:i], strings.TrimLeft(v[i:], " \t")
	if v[i] == ' ' && len(rest) == len(v)-i-1 && isTitle(scheme) {
		return v // already normal (the usual case): no allocation
	}
	return title(scheme) + " " + rest
}

// isTitle reports whether s is as title returns it.
func isTitle(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 0 && 'a' <= c && c <= 'z' || i > 0 && 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// title folds the ASCII letters of s: the first upper case, the others
// lower. Only A-Z and a-z: strings.ToLower would also turn every invalid
// UTF-8 byte into U+FFFD, making two schemes one.
func title(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case i == 0 && 'a' <= c && c <= 'z':
			b[i] = c - ('a' - 'A')
		case i > 0 && 'A' <= c && c <= 'Z':
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// credential returns what r's scope is the digest of, and the spelling
// that versions before credential normalisation digested (asSent; equal
// to credential when that is already normal). ok is false if r names two
// credentials (the ScopeHeader, or the ScopeCookie, repeated), which the
// middleware refuses: which one counts would depend on the server.
func (m *Middleware) credential(r *http.Request) (credential, asSent string, ok bool) {
	if name := m.c.ScopeCookie; name != "" {
		var value string
		for _, c := range r.CookiesNamed(name) {
			if value != "" && c.Value != "" && c.Value != value {
				return "", "", false
			}
			value = c.Value
		}
		if value == "" {
			return "", "", true
		}
		cred := cookieCredential(name, value) // not an Authorization value: nothing to normalise
		return cred, cred, true
	}
	vs := r.Header.Values(m.c.ScopeHeader)
	switch {
	case len(vs) == 0:
		return "", "", true
	case len(vs) > 1:
		return "", "", false
	}
	v := vs[0]
	if !m.c.authScheme {
		// An API key header: a blank inside is part of the key.
		v = strings.Trim(v, " \t")
		return v, v, true
	}
	return NormalizeCredential(v), v, true
}

// ScopeOf returns the scope m stores the keys of a request under whose
// credential is credential: the value of Options.ScopeHeader, or of the
// Options.ScopeCookie cookie. It is what admin tools ask to find a
// tenant's keys from what the client sent. With Options.Scope, scopes are
// the application's, and ScopeOf returns an error.
func (m *Middleware) ScopeOf(credential string) (string, error) {
	if m.c.Scope != nil {
		return "", errors.New("idemhttp: scopes come from Options.Scope; name the scope itself")
	}
	if m.c.ScopeCookie != "" {
		return m.store.Scoper().Scope(cookieCredential(m.c.ScopeCookie, credential)), nil
	}
	if !m.c.authScheme {
		return m.store.Scoper().Scope(strings.Trim(credential, " \t")), nil
	}
	return m.store.Scoper().Scope(NormalizeCredential(credential)), nil
}
