package idemhttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
)

// TestCredentialSpellingsAreOneTenant: the spellings of one Authorization
// credential that HTTP treats as one (scheme case, the blanks around and
// between) are one tenant: the handler runs once and the others replay.
// The credentials themselves are not folded.
func TestCredentialSpellingsAreOneTenant(t *testing.T) {
	c := idemtest.NewCounter()
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, c)
	first := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{}`, "Authorization", "Bearer x")
	for _, cred := range []string{"bearer x", "BEARER x", "Bearer  x", "Bearer \t x", "bEaReR x "} {
		r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{}`, "Authorization", cred)
		if r.Header.Get("Idempotency-Replay") != "true" || r.Body != first.Body {
			t.Errorf("Authorization %q: %d %q replay=%q; want the replay of %q", cred, r.Status, r.Body, r.Header.Get("Idempotency-Replay"), first.Body)
		}
	}
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{}`, "Authorization", "Bearer X"); r.Header.Get("Idempotency-Replay") == "true" {
		t.Errorf("Bearer X replayed Bearer x's response: tokens are case-sensitive")
	}
	if n := c.Count("k"); n != 2 {
		t.Fatalf("handler ran %d times; want 2 (Bearer x, Bearer X)", n)
	}
}

// TestAPIKeyHeaderIsNotFolded: with an API key header, a blank inside the
// value is part of the key, and nothing is case-folded.
func TestAPIKeyHeaderIsNotFolded(t *testing.T) {
	c := idemtest.NewCounter()
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{ScopeHeader: "X-Api-Key"}, c)
	for _, k := range []string{"Key abc", "key abc", "Key  abc"} {
		if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{}`, "X-Api-Key", k); r.Header.Get("Idempotency-Replay") == "true" {
			t.Errorf("X-Api-Key %q replayed another key's response", k)
		}
	}
	if n := c.Count("k"); n != 3 {
		t.Fatalf("handler ran %d times; want 3", n)
	}
}

// TestTwoCredentialsRefused: two Authorization headers are refused; which
// one is the tenant would depend on the server.
func TestTwoCredentialsRefused(t *testing.T) {
	c := idemtest.NewCounter()
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, c)
	req, _ := http.NewRequest("POST", srv.URL+"/v1/charges", strings.NewReader(`{}`))
	req.Header.Set("Idempotency-Key", "k")
	req.Header.Add("Authorization", "Bearer alice")
	req.Header.Add("Authorization", "Bearer bob")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p idemhttp.Problem
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 || p.Code != idemhttp.CodeScopeInvalid {
		t.Fatalf("two Authorization headers: %d %q; want 400 %s", resp.StatusCode, p.Code, idemhttp.CodeScopeInvalid)
	}
	if n := c.Total.Load(); n != 0 {
		t.Fatalf("handler ran %d times", n)
	}
}

// TestRecordsStoredBeforeNormalisationStillReplay: a record stored by an
// earlier version under the digest of the credential as spelled
// ("bearer  x") is found after the upgrade: the retry replays it, a
// different body conflicts with it, and the handler never runs again.
func TestRecordsStoredBeforeNormalisationStillReplay(t *testing.T) {
	e := idemtest.NewUpgradedEngine(t)
	c := idemtest.NewCounter()
	// The earlier version: the digest of the raw value.
	old, _ := newServer(t, e, &idemhttp.Options{Scope: func(r *http.Request) string {
		return idemhttp.LegacyCredentialScopeForTest(r.Header.Get("Authorization"))
	}}, c)
	first := idemtest.Do(t, "POST", old.URL+"/v1/charges", "k", `{"a":1}`, "Authorization", "bearer  x")
	srv, _ := newServer(t, e, nil, c)
	r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{"a":1}`, "Authorization", "bearer  x")
	if r.Header.Get("Idempotency-Replay") != "true" || r.Body != first.Body {
		t.Fatalf("retry after the upgrade: %d %q; want the replay of %q", r.Status, r.Body, first.Body)
	}
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{"a":2}`, "Authorization", "bearer  x"); r.Status != http.StatusConflict {
		t.Fatalf("another body after the upgrade: %d %q; want 409", r.Status, r.Body)
	}
	if n := c.Count("k"); n != 1 {
		t.Fatalf("handler ran %d times; want 1", n)
	}
}

func FuzzNormalizeCredential(f *testing.F) {
	for _, s := range []string{"Bearer x", "bearer  x", " Basic dXNlcjpwdw== ", "token", "\t", "A\tb c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		n := idemhttp.NormalizeCredential(v)
		if idemhttp.NormalizeCredential(n) != n {
			t.Fatalf("not idempotent: %q -> %q -> %q", v, n, idemhttp.NormalizeCredential(n))
		}
		if strings.TrimSpace(v) != "" && n == "" {
			t.Fatalf("%q normalised to nothing", v)
		}
		if i := strings.IndexAny(n, " \t"); i > 0 && (strings.ContainsAny(n[1:i], "ABCDEFGHIJKLMNOPQRSTUVWXYZ") || 'a' <= n[0] && n[0] <= 'z') {
			t.Fatalf("scheme of %q not folded: %q", v, n)
		}
		// Nothing but ASCII letter case and blanks is changed: two
		// values that differ otherwise stay two tenants.
		if strip(asciiFold(n)) != strip(asciiFold(v)) {
			t.Fatalf("%q normalised to %q: more than case and blanks changed", v, n)
		}
	})
}

func strip(s string) string { return strings.NewReplacer(" ", "", "\t", "").Replace(s) }

func asciiFold(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// scopesStored returns the scopes of every record in e.
func scopesStored(t *testing.T, e *engine.Engine) []string {
	t.Helper()
	var scopes []string
	err := e.Scan(context.Background(), engine.ScanOptions{}, func(en engine.Entry) error {
		scopes = append(scopes, en.Key.Scope)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return scopes
}

// TestScopeIsKeyedPerDeployment (finding 1): what is stored for a tenant
// is a digest keyed with the deployment's secret: not the unkeyed digest
// that anyone could compute from a guessed credential, and not the same
// in two deployments, so a digest read from one data directory can be
// tested against guesses only with that directory's secret.
func TestScopeIsKeyedPerDeployment(t *testing.T) {
	const cred = "Bearer sk_9xQz"
	var stored []string
	for range 2 {
		e := idemtest.NewEngine(t, nil)
		srv, _ := newServer(t, e, nil, idemtest.NewCounter())
		if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{}`, "Authorization", cred); r.Status != 201 {
			t.Fatalf("POST: %d", r.Status)
		}
		scopes := scopesStored(t, e)
		if len(scopes) != 1 || scopes[0] != e.Scoper().Scope(cred) {
			t.Fatalf("stored scopes %x; want the keyed digest of the credential", scopes)
		}
		if scopes[0] == engine.LegacyScope(cred) {
			t.Fatal("the stored scope is the unkeyed digest of the credential")
		}
		stored = append(stored, scopes[0])
	}
	if stored[0] == stored[1] {
		t.Fatal("two deployments store one credential under the same scope")
	}
}

// TestScopeSecretRotationKeepsRecords: after the secret is rotated (the
// old one kept as a previous secret), a retry of a request completed
// under the old secret replays it and a different body conflicts with it:
// the handler never runs again. Then new records are stored under the new
// secret's digest.
func TestScopeSecretRotationKeepsRecords(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	oldSecret, newSecret := []byte("the old secret of the deployment"), []byte("the new secret of the deployment")
	c := idemtest.NewCounter()
	open := func(o *engine.Options) *engine.Engine {
		e, err := engine.Open(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	e := open(&engine.Options{ScopeSecret: oldSecret})
	srv, _ := newServer(t, e, nil, c)
	first := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{"a":1}`)
	srv.Close()
	e.Close()

	e = open(&engine.Options{ScopeSecret: newSecret, PreviousScopeSecrets: [][]byte{oldSecret}})
	defer e.Close()
	srv, _ = newServer(t, e, nil, c)
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{"a":1}`); r.Header.Get("Idempotency-Replay") != "true" || r.Body != first.Body {
		t.Fatalf("retry after the rotation: %d %q; want the replay of %q", r.Status, r.Body, first.Body)
	}
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{"a":2}`); r.Status != http.StatusConflict {
		t.Fatalf("another body after the rotation: %d; want 409", r.Status)
	}
	if n := c.Count("k"); n != 1 {
		t.Fatalf("handler ran %d times; want 1", n)
	}
	idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k2", `{}`)
	if !slices.Contains(scopesStored(t, e), idemhttp.CredentialScope(e.Scoper(), idemtest.DefaultCredential)) {
		t.Fatal("a new record is not stored under the new secret's digest")
	}
}

// TestRecordsOfVersion1ReplayDuringTheUpgrade: a record stored by a
// version before keyed digests, under the unkeyed digest of the
// credential, is found after the upgrade: its retry replays.
func TestRecordsOfVersion1ReplayDuringTheUpgrade(t *testing.T) {
	e := idemtest.NewUpgradedEngine(t)
	c := idemtest.NewCounter()
	old, _ := newServer(t, e, &idemhttp.Options{Scope: func(r *http.Request) string {
		return engine.LegacyScope(idemhttp.NormalizeCredential(r.Header.Get("Authorization")))
	}}, c)
	first := idemtest.Do(t, "POST", old.URL+"/v1/charges", "k", `{"a":1}`)
	srv, _ := newServer(t, e, nil, c)
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{"a":1}`); r.Header.Get("Idempotency-Replay") != "true" || r.Body != first.Body {
		t.Fatalf("retry after the upgrade: %d %q; want the replay of %q", r.Status, r.Body, first.Body)
	}
	if n := c.Count("k"); n != 1 {
		t.Fatalf("handler ran %d times; want 1", n)
	}
}

// TestNewRefusesAStoreThatCannotDigest: a read-only engine opened without
// its configured secret has no Scoper; the middleware refuses it rather
// than store keys under no tenant.
func TestNewRefusesAStoreThatCannotDigest(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	e, err := engine.Open(dir, &engine.Options{ScopeSecret: []byte("a configured secret, not written")})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	r, err := engine.Open(dir, &engine.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := idemhttp.New(r, nil); !errors.Is(err, idemhttp.ErrInvalidOptions) {
		t.Fatalf("New on a store without a Scoper: %v; want ErrInvalidOptions", err)
	}
}
