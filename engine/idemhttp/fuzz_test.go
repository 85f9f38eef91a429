package idemhttp_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/idemkv/idemkv/engine/idemhttp"
)

// FuzzMiddleware sends requests with arbitrary methods, key headers, scope
// headers and bodies through the middleware to a handler: nothing panics,
// every answer is well formed (a problem of idemkv's own is valid JSON
// with a code), and a replay always equals the response it replays.
func FuzzMiddleware(f *testing.F) {
	f.Add("POST", "k", "Bearer a", []byte(`{"a":1}`), uint8(201))
	f.Add("PUT", `"quoted"`, "", []byte(""), uint8(200))
	f.Add("DELETE", "k\x00", "x", []byte("x"), uint8(250))
	f.Add("PATCH", "", "", bytes.Repeat([]byte("y"), 300), uint8(204))
	f.Add("GET", "k", "", []byte("z"), uint8(200))
	eng := idemtest.NewEngine(f, nil)
	m, err := idemhttp.New(eng, &idemhttp.Options{MaxRequestBody: 256, CanonicalJSON: true, Logger: idemtest.QuietLogger()})
	if err != nil {
		f.Fatal(err)
	}
	first := map[string]string{} // request -> first response
	f.Fuzz(func(t *testing.T, method, key, auth string, body []byte, status uint8) {
		if !validMethod(method) {
			return
		}
		code := 200 + int(status)%400 // 200..599
		h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(code)
			fmt.Fprintf(w, "%d %x", len(b), b)
		}))
		req := httptest.NewRequest(method, "/fuzz", bytes.NewReader(body))
		req.Header["Idempotency-Key"] = []string{key}
		req.Header["Authorization"] = []string{auth}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		resp := rec.Result()
		if resp.StatusCode < 100 || resp.StatusCode > 599 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		out, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("Content-Type") == "application/problem+json" {
			var p idemhttp.Problem
			if err := json.Unmarshal(out, &p); err != nil || p.Code == "" || p.Status != resp.StatusCode {
				t.Fatalf("malformed problem %q: %v", out, err)
			}
			return
		}
		id := fmt.Sprintf("%s|%q|%q|%x|%d", method, key, auth, body, code)
		var w bytes.Buffer
		bw := bufio.NewWriter(&w)
		fmt.Fprintf(bw, "%d %s", resp.StatusCode, out)
		bw.Flush()
		if resp.Header.Get("Idempotency-Replay") == "true" {
			if prev, ok := first[id]; ok && prev != w.String() {
				t.Fatalf("replay %q differs from the first response %q", w.String(), prev)
			}
		} else {
			first[id] = w.String()
		}
	})
}

func validMethod(m string) bool {
	if m == "" || len(m) > 16 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}
