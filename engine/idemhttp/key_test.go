package idemhttp_test

import (
	"errors"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/idemkv/idemkv/engine/idemhttp"
)

var keyHeaders = []string{"Idempotency-Key", "X-Idempotency-Key"}

func TestParseKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		Header  http.Header
		want    string
		wantErr error
	}{
		{"none", http.Header{}, "", nil},
		{"bare", http.Header{"Idempotency-Key": {"abc-123"}}, "abc-123", nil},
		{"alias", http.Header{"X-Idempotency-Key": {"abc"}}, "abc", nil},
		{"both equal", http.Header{"Idempotency-Key": {"a"}, "X-Idempotency-Key": {`"a"`}}, "a", nil},
		{"quoted", http.Header{"Idempotency-Key": {`"8e03978e-40d5-43e8-bc93-6894a57f9324"`}}, "8e03978e-40d5-43e8-bc93-6894a57f9324", nil},
		{"quoted escapes", http.Header{"Idempotency-Key": {`"a\"b\\c"`}}, `a"b\c`, nil},
		{"inner space", http.Header{"Idempotency-Key": {"a b"}}, "a b", nil},
		{"surrounding space trimmed", http.Header{"Idempotency-Key": {"  k \t"}}, "k", nil},
		{"max length", http.Header{"Idempotency-Key": {strings.Repeat("k", 255)}}, strings.Repeat("k", 255), nil},
		{"empty", http.Header{"Idempotency-Key": {""}}, "", idemhttp.ErrInvalidKey},
		{"empty quoted", http.Header{"Idempotency-Key": {`""`}}, "", idemhttp.ErrInvalidKey},
		{"too long", http.Header{"Idempotency-Key": {strings.Repeat("k", 256)}}, "", idemhttp.ErrInvalidKey},
		{"too long quoted", http.Header{"Idempotency-Key": {`"` + strings.Repeat("k", 256) + `"`}}, "", idemhttp.ErrInvalidKey},
		{"control byte", http.Header{"Idempotency-Key": {"a\x01b"}}, "", idemhttp.ErrInvalidKey},
		{"utf-8", http.Header{"Idempotency-Key": {"clé"}}, "", idemhttp.ErrInvalidKey},
		{"DEL", http.Header{"Idempotency-Key": {"a\x7f"}}, "", idemhttp.ErrInvalidKey},
		{"unterminated", http.Header{"Idempotency-Key": {`"abc`}}, "", idemhttp.ErrInvalidKey},
		{"after quote", http.Header{"Idempotency-Key": {`"abc"def`}}, "", idemhttp.ErrInvalidKey},
		{"bad escape", http.Header{"Idempotency-Key": {`"a\nb"`}}, "", idemhttp.ErrInvalidKey},
		{"repeated", http.Header{"Idempotency-Key": {"a", "a"}}, "", idemhttp.ErrMultipleKeys},
		{"aliases differ", http.Header{"Idempotency-Key": {"a"}, "X-Idempotency-Key": {"b"}}, "", idemhttp.ErrMultipleKeys},
		// A comma-separated list is the same as repeated header lines (RFC
		// 9110, section 5.3), which a server cannot choose between.
		{"comma list", http.Header{"Idempotency-Key": {"d1, d2"}}, "", idemhttp.ErrMultipleKeys},
		{"comma list of one twice", http.Header{"Idempotency-Key": {"d1,d1"}}, "", idemhttp.ErrMultipleKeys},
		{"comma list of quoted", http.Header{"Idempotency-Key": {`"d1", "d2"`}}, "", idemhttp.ErrMultipleKeys},
		{"trailing comma", http.Header{"Idempotency-Key": {"d1,"}}, "", idemhttp.ErrMultipleKeys},
		{"comma inside quotes", http.Header{"Idempotency-Key": {`"d1,d2"`}}, "d1,d2", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := idemhttp.ParseKey(tc.Header, keyHeaders)
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Fatalf("ParseKey = %q, %v; want %q, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// FuzzParseKey: no panic; an accepted key is 1 to 255 printable ASCII
// bytes, and a bare accepted key parses to itself.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"abc", `"abc"`, `"a\"b"`, "", `"`, `"\`, strings.Repeat("x", 300), "a\x00", "d1, d2", `"a,b"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		k, err := idemhttp.ParseKey(http.Header{"Idempotency-Key": {v}}, keyHeaders)
		if err != nil {
			if k != "" {
				t.Fatalf("error %v with key %q", err, k)
			}
			// A comma list is two keys, refused as the header repeated.
			if !errors.Is(err, idemhttp.ErrInvalidKey) && !errors.Is(err, idemhttp.ErrMultipleKeys) {
				t.Fatalf("error %v matches neither ErrInvalidKey nor ErrMultipleKeys", err)
			}
			return
		}
		if len(k) < 1 || len(k) > idemhttp.MaxKeyLen {
			t.Fatalf("accepted key of %d bytes", len(k))
		}
		for i := 0; i < len(k); i++ {
			if k[i] < 0x20 || k[i] > 0x7e {
				t.Fatalf("accepted byte 0x%02x", k[i])
			}
		}
		if !strings.HasPrefix(strings.TrimSpace(v), `"`) && k != strings.Trim(v, " \t") {
			t.Fatalf("bare %q parsed as %q", v, k)
		}
	})
}

// A repeated key header is refused over HTTP, and the handler does not
// run.
func TestRepeatedKeyHeaderRefused(t *testing.T) {
	c := idemtest.NewCounter()
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, c)
	req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader("a"))
	req.Header.Add("Idempotency-Key", "a")
	req.Header.Add("Idempotency-Key", "b")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p := problemOf(t, idemtest.Reply{Status: resp.StatusCode, Header: resp.Header, Body: string(b)})
	if resp.StatusCode != 400 || p.Code != idemhttp.CodeKeyInvalid || c.Total.Load() != 0 {
		t.Fatalf("repeated key: %d %+v, handler ran %d", resp.StatusCode, p, c.Total.Load())
	}
}
