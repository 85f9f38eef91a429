package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/idemkv/idemkv/engine/redistest"
)

// TestProxyFromTheEnvironmentAlone: a proxy configured with no flags at
// all, only IDEMKV_ variables (a repeatable one included), keeps the
// contract; a flag wins over its variable.
func TestProxyFromTheEnvironmentAlone(t *testing.T) {
	var runs atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"n":%d}`, runs.Add(1))
	}))
	defer up.Close()
	t.Setenv("IDEMKV_LISTEN", "127.0.0.1:0")
	t.Setenv("IDEMKV_ADMIN", "127.0.0.1:0")
	t.Setenv("IDEMKV_UPSTREAM", up.URL)
	t.Setenv("IDEMKV_DATA", filepath.Join(t.TempDir(), "data"))
	t.Setenv("IDEMKV_ROUTE", "POST /v1/charges\nPOST /v1/refunds")
	t.Setenv("IDEMKV_CONFLICT_STATUS", "422")
	p := start(t, "proxy")
	if p.admin == "" {
		t.Error("IDEMKV_ADMIN was not read: no admin listener")
	}
	for range 2 {
		if s, _, b := send(t, "POST", p.addr+"/v1/refunds", "env-1", `{"a":1}`); s != 201 || b != `{"n":1}` {
			t.Fatalf("%d %s", s, b)
		}
	}
	if s, _, _ := send(t, "POST", p.addr+"/v1/refunds", "env-1", `{"a":2}`); s != 422 {
		t.Errorf("conflict: %d, want 422 from IDEMKV_CONFLICT_STATUS", s)
	}
	// /v1/other is not an IDEMKV_ROUTE: it passes through, keys ignored.
	send(t, "POST", p.addr+"/v1/other", "env-2", `{}`)
	send(t, "POST", p.addr+"/v1/other", "env-2", `{}`)
	if runs.Load() != 3 {
		t.Errorf("upstream ran %d times, want 3", runs.Load())
	}

	// A flag wins over its variable.
	q := start(t, "proxy", "-conflict-status", "409", "-data", t.TempDir())
	send(t, "POST", q.addr+"/v1/charges", "env-3", `{"a":1}`)
	if s, _, _ := send(t, "POST", q.addr+"/v1/charges", "env-3", `{"a":2}`); s != 409 {
		t.Errorf("conflict: %d, want 409 from the flag", s)
	}
}

// TestBadEnvironmentValueNamesItsVariable, and -h lists each flag's
// variable.
func TestBadEnvironmentValueNamesItsVariable(t *testing.T) {
	t.Setenv("IDEMKV_MAX_WAITERS", "many")
	code, _, errOut := runCmd(t, "serve", "-data", t.TempDir())
	if code != 2 || !strings.Contains(errOut, "IDEMKV_MAX_WAITERS") {
		t.Errorf("exit %d: %s", code, errOut)
	}
	_, out, errOut := runCmd(t, "proxy", "-h")
	for _, v := range []string{"(env IDEMKV_UPSTREAM)", "(env IDEMKV_REDIS)", "(env IDEMKV_ADMIN)", "(env IDEMKV_ACCESS_LOG)"} {
		if !strings.Contains(out+errOut, v) {
			t.Errorf("-h does not list %s", v)
		}
	}
}

// TestRedisURLFromAFile: -redis-file keeps a Redis password off the
// command line.
func TestRedisURLFromAFile(t *testing.T) {
	url := redistest.Start(t, nil)
	file := filepath.Join(t.TempDir(), "redis-url")
	if err := os.WriteFile(file, []byte(url+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("IDEMKV_SCOPE_SECRET", "a secret every replica shares")
	p := start(t, "serve", "-listen", "127.0.0.1:0", "-redis-file", file)
	key := fmt.Sprint("redis-file-", os.Getpid(), "-", t.Name())
	send(t, "POST", p.addr+"/v1/calls", key, `{"to":"+1"}`)
	if _, h, _ := send(t, "POST", p.addr+"/v1/calls", key, `{"to":"+1"}`); h.Get("Idempotency-Replay") != "true" {
		t.Error("no replay through the Redis named in the file")
	}
}

// TestSidecarMiddlewareFlags: -stored-header, -canonical-json and
// -in-progress reject reach the middleware.
func TestSidecarMiddlewareFlags(t *testing.T) {
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/slow" {
			entered <- struct{}{}
			<-release
		}
		w.Header().Set("X-Ledger-Entry", "le_1")
		w.WriteHeader(201)
	}))
	defer up.Close()
	defer close(release)
	p := start(t, "proxy", "-listen", "127.0.0.1:0", "-upstream", up.URL, "-data", t.TempDir(),
		"-stored-header", "X-Ledger-Entry", "-canonical-json", "-in-progress", "reject")
	send(t, "POST", p.addr+"/v1/a", "f-1", `{"a":1,"b":2}`)
	s, h, _ := send(t, "POST", p.addr+"/v1/a", "f-1", `{ "b": 2, "a": 1 }`)
	if s != 201 || h.Get("Idempotency-Replay") != "true" || h.Get("X-Ledger-Entry") != "le_1" {
		t.Errorf("replay of a reordered body: %d replay=%q X-Ledger-Entry=%q", s, h.Get("Idempotency-Replay"), h.Get("X-Ledger-Entry"))
	}
	go func() {
		req, _ := http.NewRequest("POST", p.addr+"/v1/slow", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer sk_test")
		req.Header.Set("Idempotency-Key", "f-2")
		req.Header.Set("Content-Type", "application/json")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered // the first request holds the key
	if s, _, b := send(t, "POST", p.addr+"/v1/slow", "f-2", `{}`); s != 409 || !strings.Contains(b, "idempotency_request_in_progress") {
		t.Errorf("a duplicate under -in-progress reject: %d %s, want 409 in progress at once", s, b)
	}
}
