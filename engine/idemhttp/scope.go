package idemhttp

import (
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"strings"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// CredentialScope returns the scope that the default Options store a
// request's keys under: a SHA-256 digest of the normalised credential (the
// value of the Authorization header, see NormalizeCredential), or "" (no
// scope, see Options.Anonymous) for an empty one. The digest is 32 bytes of
// binary; the credential cannot be read back from it.
func CredentialScope(credential string) string {
	return digestScope(NormalizeCredential(credential))
}

// digestScope is the version-1 digest of a credential as given.
func digestScope(credential string) string {
	if credential == "" {
		return ""
	}
	h := sha256.New()
	io.WriteString(h, "idemkv scope v1\x00")
	io.WriteString(h, credential)
	return string(h.Sum(nil))
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

// scope returns r's scope, and the scope that versions before credential
// normalisation stored its keys under if that differs ("" otherwise). ok is
// false if r names two credentials (the ScopeHeader repeated), which the
// middleware refuses: which one counts would depend on the server.
func (m *Middleware) scope(r *http.Request) (scope, legacy string, ok bool) {
	if m.c.Scope != nil {
		return m.c.Scope(r), "", true
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
		return digestScope(v), "", true
	}
	n := NormalizeCredential(v)
	scope = digestScope(n)
	if n != v {
		legacy = digestScope(v)
	}
	return scope, legacy, true
}

// storedUnderLegacyScope finds what an earlier version stored for req under
// legacy, the digest of the credential spelled as this request spells it:
// before normalisation, "bearer  x" was a tenant of its own. It is asked
// only for a fresh claim (not Recovered) of a request whose credential was
// not already normal ("bearer x", "OAuth x"), at the cost of one more read
// of the store; a request spelled the usual way ("Bearer x") costs nothing. A record found
// is what the request gets (a replay, a conflict, or in progress) instead
// of a second run.
func (m *Middleware) storedUnderLegacyScope(ctx context.Context, req engine.Request, legacy string) *record.Record {
	k := req.Key
	k.Scope = legacy
	rec, err := m.store.Get(ctx, k)
	if err != nil || rec == nil {
		return nil
	}
	return rec
}

// answerFor is what req gets from rec, a record stored for its key that
// Begin did not see: Replay, Conflict, or InProgress for a claim.
func answerFor(rec *record.Record, req engine.Request) engine.Result {
	switch {
	case rec.State != record.Completed:
		return engine.Result{Outcome: engine.InProgress, OriginalRequestID: rec.RequestID}
	case rec.Fingerprint != req.Fingerprint:
		return engine.Result{Outcome: engine.Conflict, Record: rec.WithoutBody(), OriginalRequestID: rec.RequestID}
	}
	return engine.Result{Outcome: engine.Replay, Record: rec}
}
