package idemhttp_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

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
	e := idemtest.NewEngine(t, nil)
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
