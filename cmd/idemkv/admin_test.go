package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idemkv/idemkv/engine/redistest"
)

// TestAdminAPIAndCommand runs `idemkv admin` against a running proxy, on
// the embedded store and on a real redis-server: get shows a key's
// record, list finds it, delete removes it (and the same request then
// runs again), stats and health answer; without the token every admin
// path but /healthz and /readyz answers 401.
func TestAdminAPIAndCommand(t *testing.T) {
	for _, store := range []string{"embedded", "redis"} {
		t.Run(store, func(t *testing.T) {
			const token = "admin-token-for-tests"
			t.Setenv("IDEMKV_ADMIN_TOKEN", token)
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(201)
				io.WriteString(w, `{"id":"call_1"}`)
			}))
			defer up.Close()
			args := []string{"proxy", "-upstream", up.URL, "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0"}
			if store == "redis" {
				t.Setenv("IDEMKV_SCOPE_SECRET", "a secret every replica shares")
				args = append(args, "-redis", redistest.Start(t, nil))
			} else {
				args = append(args, "-data", t.TempDir())
			}
			p := start(t, args...)
			key := "admin-" + store + "-" + t.Name()
			if s, _, b := send(t, "POST", p.addr+"/v1/calls", key, `{"to":"+1"}`); s != 201 {
				t.Fatalf("%d %s", s, b)
			}

			for _, path := range []string{"/admin/v1/stats", "/metrics", "/"} {
				if resp, err := http.Get(p.admin + path); err != nil || resp.StatusCode != 401 {
					t.Errorf("%s without the token: %v %v, want 401", path, resp.Status, err)
				}
			}
			for _, path := range []string{"/healthz", "/readyz"} {
				if resp, err := http.Get(p.admin + path); err != nil || resp.StatusCode != 200 {
					t.Errorf("%s without the token: %v %v, want 200", path, resp.Status, err)
				}
			}

			// The status page, once given the token (kept in a cookie).
			jar, _ := cookiejar.New(nil)
			if resp, err := (&http.Client{Jar: jar}).Get(p.admin + "/?token=" + token); err != nil || resp.StatusCode != 200 {
				t.Errorf("the status page with ?token=: %v %v", resp.Status, err)
			} else {
				page, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !strings.Contains(string(page), "idemkv status") || !strings.Contains(string(page), `id="proceeded">1<`) {
					t.Errorf("the status page:\n%s", page)
				}
			}

			named := []string{"-addr", p.admin, "-credential", "Bearer sk_test", "-endpoint", "POST /v1/calls", "-key", key}
			code, out, errOut := runCmd(t, append([]string{"admin", "get"}, named...)...)
			var rec struct {
				State, Endpoint, Key string
				Status               int
				BodyBytes            int `json:"body_bytes"`
			}
			if err := json.Unmarshal([]byte(out), &rec); code != 0 || err != nil || rec.State != "completed" || rec.Status != 201 || rec.Key != key || rec.BodyBytes == 0 {
				t.Fatalf("admin get: exit %d, %+v (%v)\n%s%s", code, rec, err, out, errOut)
			}
			code, out, errOut = runCmd(t, "admin", "list", "-addr", p.admin, "-credential", "Bearer sk_test")
			if code != 0 || !strings.Contains(out, key) {
				t.Errorf("admin list: exit %d\n%s%s", code, out, errOut)
			}
			if code, out, errOut = runCmd(t, "admin", "stats", "-addr", p.admin); code != 0 || !strings.Contains(out, `"Begins"`) {
				t.Errorf("admin stats: exit %d\n%s%s", code, out, errOut)
			}
			if code, out, errOut = runCmd(t, append([]string{"admin", "delete"}, named...)...); code != 0 || !strings.Contains(out, `"deleted": true`) {
				t.Fatalf("admin delete: exit %d\n%s%s", code, out, errOut)
			}
			if _, h, _ := send(t, "POST", p.addr+"/v1/calls", key, `{"to":"+1"}`); h.Get("Idempotency-Replay") != "false" {
				t.Errorf("after delete the request was replayed (Idempotency-Replay %q), want a new run", h.Get("Idempotency-Replay"))
			}
			if code, _, errOut = runCmd(t, append([]string{"admin", "get"}, named[:len(named)-2]...)...); code == 0 || !strings.Contains(errOut, "bad_request") {
				t.Errorf("admin get without a key: exit %d: %s", code, errOut)
			}
			t.Setenv("IDEMKV_ADMIN_TOKEN", "wrong")
			if code, _, errOut = runCmd(t, "admin", "stats", "-addr", p.admin); code != 1 || !strings.Contains(errOut, "unauthorized") {
				t.Errorf("admin with a wrong token: exit %d: %s", code, errOut)
			}
		})
	}
}

// TestAdminBeyondLoopbackNeedsAToken: an admin listener other machines
// can reach is refused without a token.
func TestAdminBeyondLoopbackNeedsAToken(t *testing.T) {
	code, _, errOut := runCmd(t, "serve", "-listen", "127.0.0.1:0", "-admin", "0.0.0.0:0", "-data", t.TempDir())
	if code != 1 || !strings.Contains(errOut, "-admin-token") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}
