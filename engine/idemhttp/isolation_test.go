package idemhttp_test

// Tenant isolation through the middleware: no choice of credential,
// scope, endpoint and key may make one tenant's request replay another's
// record over HTTP; and the raw credential that selects a tenant is never
// written to the data directory. (The same for record.Key with arbitrary
// bytes is tested in the engine's and record's packages.)

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
)

// isolationHandler answers 201 with a body naming its run, and remembers,
// for each run, the identity of the request it ran for.
type isolationHandler struct {
	ident func(*http.Request) string
	runs  atomic.Int64
	mu    sync.Mutex
	who   map[string]string // body -> identity
}

func newIsolationHandler(ident func(*http.Request) string) *isolationHandler {
	return &isolationHandler{ident: ident, who: map[string]string{}}
}

func (h *isolationHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	body := fmt.Sprintf(`{"run":%d}`, h.runs.Add(1))
	h.mu.Lock()
	h.who[body] = h.ident(r)
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, body)
}

// isolationReq is one request of an isolation run, and the identity of
// the record it must be answered from.
type isolationReq struct {
	ident          string
	method, target string
	hdr            []string // name, value pairs; "Host" sets Request.Host
}

// checkIsolation sends every request copies times, shuffled, from workers
// goroutines, all with the same body, and checks that each identity ran
// the handler once, that the run was its own, and that every other
// request of that identity replayed it.
func checkIsolation(t *testing.T, base string, h *isolationHandler, reqs []isolationReq, copies, workers int, seed uint64) {
	t.Helper()
	idents := map[string]bool{}
	var all []isolationReq
	for _, q := range reqs {
		if idents[q.ident] {
			t.Fatalf("identity %q listed twice", q.ident)
		}
		idents[q.ident] = true
		for range copies {
			all = append(all, q)
		}
	}
	rand.New(rand.NewPCG(seed, seed)).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })

	tr := &http.Transport{MaxIdleConns: workers, MaxIdleConnsPerHost: workers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	replies := make([]idemtest.Reply, len(all))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(all) {
					return
				}
				q := all[i]
				req, err := http.NewRequest(q.method, base+q.target, strings.NewReader(`{"amount":100}`))
				if err != nil {
					t.Error(err)
					return
				}
				for j := 0; j+1 < len(q.hdr); j += 2 {
					if q.hdr[j] == "Host" {
						req.Host = q.hdr[j+1]
						continue
					}
					req.Header.Set(q.hdr[j], q.hdr[j+1])
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Error(err)
					return
				}
				replies[i] = idemtest.Reply{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	first := map[string]string{} // identity -> body
	fresh := map[string]int{}    // identity -> first requests
	for i, q := range all {
		r := replies[i]
		if r.Status != http.StatusCreated {
			t.Fatalf("%s %s (%s): %d %s", q.method, q.target, q.ident, r.Status, r.Body)
		}
		if r.Header.Get("Idempotency-Replay") == "false" {
			fresh[q.ident]++
		}
		if body, ok := first[q.ident]; ok && body != r.Body {
			t.Fatalf("%s was answered %s and %s", q.ident, body, r.Body)
		}
		first[q.ident] = r.Body
		h.mu.Lock()
		who := h.who[r.Body]
		h.mu.Unlock()
		if who != q.ident {
			t.Fatalf("request of %q was answered with the record of %q", q.ident, who)
		}
	}
	for id := range idents {
		if fresh[id] != 1 {
			t.Errorf("%q: %d first requests; want 1", id, fresh[id])
		}
	}
	if n := h.runs.Load(); n != int64(len(idents)) {
		t.Fatalf("handler ran %d times for %d identities", n, len(idents))
	}
}

// Through the middleware with its defaults: tenants by Authorization,
// endpoints by method and path. Credentials, paths and keys are chosen to
// look alike; a sample of combinations, each with its neighbours that
// differ in one part, every one sent twice at once from several
// goroutines, with the same body: each combination runs once and gets
// only its own response.
func TestIsolationHTTPProperty(t *testing.T) {
	// (Spellings of one credential, "bearer a" for "Bearer a", are one
	// tenant: TestCredentialSpellingsAreOneTenant.)
	creds := []string{
		"", "Bearer a", "Bearer ab", "Bearer A", "Bearer \u0430", "Bearer caf\u00e9", "Bearer cafe\u0301",
		"Bearer a:b", "Bearer a|b", "Bearer a/b", "Basic YTpi", "Bearer a\tb", "Bearer \u212a",
	}
	methods := []string{"POST", "PUT", "PATCH", "DELETE"}
	// Escaped targets, distinct once unescaped and cleaned (/v1/calls/ is
	// /v1/calls: TestPathSpellingsShareAKey).
	paths := []string{
		"/v1/calls", "/v1/call", "/v1/a:b", "/v1/a%7Cb", "/v1/a/b", "/v1/caf%C3%A9",
		"/v1/cafe%CC%81", "/v1/%D0%B0", "/v1/a", "/v1/a%00b", "/v1/a%E2%88%95b", "/POST%20/v1/calls",
	}
	keys := []string{"k", "K", "k:1", "k|1", "k/1", "k%00", "a b", "a  b", `k"`, `k\`, "kk"}

	h := newIsolationHandler(func(r *http.Request) string {
		return strings.Join([]string{r.Header.Get("Authorization"), r.Method, r.URL.Path, r.Header.Get("Idempotency-Key")}, "\n")
	})
	e := idemtest.OpenDiskEngine(t, t.TempDir(), &engine.Options{Durability: engine.Relaxed})
	// No credential is a tenant too: the anonymous scope, shared.
	srv, m := newServer(t, e, &idemhttp.Options{Anonymous: idemhttp.ShareAnonymous, Logger: idemtest.QuietLogger()}, h)

	r := rand.New(rand.NewPCG(3, 4))
	seen := map[[4]int]bool{}
	var reqs []isolationReq
	add := func(c [4]int) {
		if seen[c] {
			return
		}
		seen[c] = true
		path, err := url.PathUnescape(paths[c[2]])
		if err != nil {
			t.Fatal(err)
		}
		q := isolationReq{
			ident:  strings.Join([]string{creds[c[0]], methods[c[1]], path, keys[c[3]]}, "\n"),
			method: methods[c[1]], target: paths[c[2]],
			hdr: []string{"Idempotency-Key", keys[c[3]]},
		}
		if creds[c[0]] != "" {
			q.hdr = append(q.hdr, "Authorization", creds[c[0]])
		}
		reqs = append(reqs, q)
	}
	sizes := [4]int{len(creds), len(methods), len(paths), len(keys)}
	for range 150 {
		var c [4]int
		for i := range c {
			c[i] = r.IntN(sizes[i])
		}
		add(c)
		for i := range c { // its neighbours: one part changed
			n := c
			n[i] = r.IntN(sizes[i])
			add(n)
		}
	}
	checkIsolation(t, srv.URL, h, reqs, 2, 8, 5)
	if s := m.Stats(); s.Conflicts != 0 || s.Proceeded != uint64(len(reqs)) {
		t.Fatalf("stats %+v; want %d proceeded, no conflicts", s, len(reqs))
	}
	t.Logf("%d combinations of %d credentials, %d endpoints and %d keys: %d requests, each answered from its own record",
		len(reqs), len(creds), len(methods)*len(paths), len(keys), 2*len(reqs))
}

// A custom Scope and RoutePattern that return adversarial strings: scope
// "a" + route "bc" is not scope "ab" + route "c", and so on for every
// pair of tenants and routes.
func TestIsolationHTTPCustomScopeAndRoute(t *testing.T) {
	// (Header values lose leading and trailing blanks on the way, so
	// none has them.)
	tenants := []string{"", "a", "ab", "a:", "a|", "a/", "a b", "\u0430", "ab:c"}
	routes := []string{"", "c", "bc", "b", ":b", "|b", "/b", "b c", "POST /c"}
	h := newIsolationHandler(func(r *http.Request) string {
		return r.Header.Get("X-Tenant") + "\n" + r.Header.Get("X-Route") + "\n" + r.Header.Get("Idempotency-Key")
	})
	e := idemtest.OpenDiskEngine(t, t.TempDir(), &engine.Options{Durability: engine.Relaxed})
	srv, _ := newServer(t, e, &idemhttp.Options{
		Scope:        func(r *http.Request) string { return r.Header.Get("X-Tenant") },
		RoutePattern: func(r *http.Request) string { return r.Header.Get("X-Route") },
		Anonymous:    idemhttp.ShareAnonymous, // tenant "" is the shared anonymous scope
		Logger:       idemtest.QuietLogger(),
	}, h)
	var reqs []isolationReq
	for _, tn := range tenants {
		for _, rt := range routes {
			for _, k := range []string{"c", "k"} {
				reqs = append(reqs, isolationReq{
					ident:  tn + "\n" + rt + "\n" + k,
					method: "POST", target: "/same/path",
					hdr: []string{"X-Tenant", tn, "X-Route", rt, "Idempotency-Key", k},
				})
			}
		}
	}
	checkIsolation(t, srv.URL, h, reqs, 2, 8, 6)
}

// Routes of a ServeMux: the same key on different routes (and methods)
// never crosses; the same key on two resources of one route is a
// conflict that names the same tenant's original, never the other
// tenant's; two paths that unescape alike are one endpoint, and a
// conflict, not a replay.
func TestIsolationHTTPRoutes(t *testing.T) {
	h := newIsolationHandler(func(r *http.Request) string {
		return r.Header.Get("Authorization") + "\n" + r.Pattern + "\n" + r.Header.Get("Idempotency-Key")
	})
	e := idemtest.OpenDiskEngine(t, t.TempDir(), &engine.Options{Durability: engine.Relaxed})
	m, err := idemhttp.New(e, &idemhttp.Options{Logger: idemtest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	patterns := [][2]string{ // a pattern, and a target it matches
		{"POST /v1/calls", "/v1/calls"},
		{"POST /v1/calls/{id}", "/v1/calls/1"},
		{"PUT /v1/calls/{id}", "/v1/calls/1"},
		{"PATCH /v1/calls/{id}", "/v1/calls/1"},
		{"DELETE /v1/calls/{id}", "/v1/calls/1"},
		{"POST /v1/calls/{id}/hangup", "/v1/calls/1/hangup"},
		{"POST /v1/agents/{id}", "/v1/agents/1"},
		{"POST /v1/{kind}/1/x", "/v1/agents/1/x"},
		{"POST /files/{path...}", "/files/a/b"},
		{"POST api.example.com/v1/host", "/v1/host"},
	}
	mux := http.NewServeMux()
	for _, p := range patterns {
		mux.Handle(p[0], m.Handler(h))
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	var reqs []isolationReq
	for _, cred := range []string{"Bearer A", "Bearer B"} {
		for _, pt := range patterns {
			p, target := pt[0], pt[1]
			method, _, _ := strings.Cut(p, " ")
			hdr := []string{"Idempotency-Key", "k", "Authorization", cred}
			if strings.Contains(p, "api.example.com") {
				hdr = append(hdr, "Host", "api.example.com")
			}
			reqs = append(reqs, isolationReq{ident: cred + "\n" + p + "\n" + "k", method: method, target: target, hdr: hdr})
		}
	}
	checkIsolation(t, srv.URL, h, reqs, 3, 8, 7)

	// One route, another resource, same key: a conflict with the same
	// tenant's original request.
	ids := map[string]string{}
	for _, cred := range []string{"Bearer A", "Bearer B"} {
		orig := idemtest.Do(t, "POST", srv.URL+"/v1/calls/1", "k", `{"amount":100}`, "Authorization", cred)
		if orig.Header.Get("Idempotency-Replay") != "true" {
			t.Fatalf("%s: retry on /v1/calls/1 not replayed", cred)
		}
		ids[cred] = orig.Header.Get("X-Request-Id")
	}
	if ids["Bearer A"] == ids["Bearer B"] {
		t.Fatalf("two tenants share the request id %q", ids["Bearer A"])
	}
	for _, cred := range []string{"Bearer A", "Bearer B"} {
		r := idemtest.Do(t, "POST", srv.URL+"/v1/calls/2", "k", `{"amount":100}`, "Authorization", cred)
		p := problemOf(t, r)
		if r.Status != 409 || p.Code != idemhttp.CodeConflict || p.Fields["conflicts_with"] != ids[cred] {
			t.Fatalf("%s on another resource: %d %+v; want a conflict with its own %s", cred, r.Status, p, ids[cred])
		}
	}

	// Without a pattern the endpoint is the unescaped path: /v1/a%2Fb is
	// the endpoint of /v1/a/b, but not its request, so it conflicts.
	h2 := newIsolationHandler(func(r *http.Request) string { return r.URL.RawPath })
	srv2, _ := newServer(t, idemtest.OpenDiskEngine(t, t.TempDir(), &engine.Options{Durability: engine.Relaxed}),
		&idemhttp.Options{Logger: idemtest.QuietLogger()}, h2)
	a := idemtest.Do(t, "POST", srv2.URL+"/v1/a/b", "k", "x")
	b := idemtest.Do(t, "POST", srv2.URL+"/v1/a%2Fb", "k", "x")
	if a.Status != 201 || b.Status != 409 || problemOf(t, b).Fields["conflicts_with"] != a.Header.Get("X-Request-Id") {
		t.Fatalf("/v1/a/b then /v1/a%%2Fb with one key: %d, %d %s; want 201, then 409 naming the first", a.Status, b.Status, b.Body)
	}
}

// The limits over HTTP: a key over 255 bytes or not printable ASCII, an
// endpoint (method, space and route) over 1024 bytes, a custom scope over
// 1024 bytes get 400 idempotency_key_invalid with a detail that says
// what, and the handler does not run; at the limits requests work. A
// credential of any size is a 32-byte digest, so long credentials work
// and stay distinct.
func TestIsolationHTTPLimits(t *testing.T) {
	var runs atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := runs.Add(1)
		w.WriteHeader(201)
		fmt.Fprint(w, n)
	})
	e := idemtest.OpenDiskEngine(t, t.TempDir(), &engine.Options{Durability: engine.Relaxed})
	plain, _ := newServer(t, e, &idemhttp.Options{Logger: idemtest.QuietLogger()}, h)
	custom, _ := newServer(t, e, &idemhttp.Options{Logger: idemtest.QuietLogger(),
		Scope: func(r *http.Request) string { return r.Header.Get("X-Tenant") }}, h)
	longCred := "Bearer " + strings.Repeat("c", 64<<10)
	for _, tc := range []struct {
		name   string
		srv    *httptest.Server
		path   string
		hdr    []string
		detail string // in the 400's detail; "" for a 201
	}{
		{"key of 255 bytes", plain, "/x", []string{"Idempotency-Key", strings.Repeat("k", 255)}, ""},
		{"key of 256 bytes", plain, "/x", []string{"Idempotency-Key", strings.Repeat("k", 256)}, "256 bytes long (max 255)"},
		{"quoted key of 256 bytes", plain, "/x", []string{"Idempotency-Key", `"` + strings.Repeat("k", 256) + `"`}, "256 bytes long (max 255)"},
		{"Cyrillic key", plain, "/x", []string{"Idempotency-Key", "p\u0430y"}, "not printable ASCII"},
		{"unterminated quoted key", plain, "/x", []string{"Idempotency-Key", `"a\"`}, "unterminated"},
		{"endpoint of 1024 bytes", plain, "/" + strings.Repeat("p", 1024-len("POST /")), []string{"Idempotency-Key", "k"}, ""},
		{"endpoint of 1025 bytes", plain, "/" + strings.Repeat("p", 1025-len("POST /")), []string{"Idempotency-Key", "k"}, "endpoint is 1025 bytes (max 1024)"},
		{"endpoint of 8 KiB", plain, "/" + strings.Repeat("p", 8<<10), []string{"Idempotency-Key", "k"}, "endpoint is 8198 bytes (max 1024)"},
		{"credential of 64 KiB", plain, "/x", []string{"Idempotency-Key", "long", "Authorization", longCred}, ""},
		{"another credential of 64 KiB", plain, "/x", []string{"Idempotency-Key", "long", "Authorization", longCred[:len(longCred)-1] + "d"}, ""},
		{"custom scope of 1024 bytes", custom, "/x", []string{"Idempotency-Key", "k", "X-Tenant", strings.Repeat("t", 1024)}, ""},
		{"custom scope of 1025 bytes", custom, "/x", []string{"Idempotency-Key", "k", "X-Tenant", strings.Repeat("t", 1025)}, "scope is 1025 bytes (max 1024)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for try := range 2 { // nothing is recorded for a refused request
				before := runs.Load()
				r := idemtest.Do(t, "POST", tc.srv.URL+tc.path, "", "body", tc.hdr...)
				if tc.detail == "" {
					want := "false"
					if try > 0 {
						want = "true"
					}
					if r.Status != 201 || r.Header.Get("Idempotency-Replay") != want {
						t.Fatalf("try %d: %d, Idempotency-Replay %q: %s; want 201, %s", try, r.Status, r.Header.Get("Idempotency-Replay"), r.Body, want)
					}
					continue
				}
				p := problemOf(t, r)
				if r.Status != 400 || p.Code != idemhttp.CodeKeyInvalid || !strings.Contains(p.Detail, tc.detail) {
					t.Fatalf("try %d: %d %+v; want 400 %s saying %q", try, r.Status, p, idemhttp.CodeKeyInvalid, tc.detail)
				}
				if runs.Load() != before {
					t.Fatal("the handler ran for a refused request")
				}
			}
		})
	}
}

// The raw credential never reaches the data directory. A run through
// the middleware with a distinctive credential — first requests, replays,
// conflicts, released 5xx answers, stored 4xx answers, every method —
// then the engine is closed and every byte of every file under the data
// directory is searched for the secret (raw, hex and base64). The same
// again after a restart that replays everything from disk. The keys are
// found in the files, so the search does look where the records are.
func TestIsolationCanaryCredentialNeverStored(t *testing.T) {
	for _, tc := range []struct {
		name   string
		Header string
		opts   idemhttp.Options
	}{
		{"Authorization", "Authorization", idemhttp.Options{}},
		{"X-Api-Key", "X-Api-Key", idemhttp.Options{ScopeHeader: "X-Api-Key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var nonce [16]byte
			crand.Read(nonce[:])
			secret := "sk_live_ISOLATION_CANARY_" + hex.EncodeToString(nonce[:])
			cred := "Bearer " + secret
			keyMark := "canary-key-" + hex.EncodeToString(nonce[:4])
			needles := map[string][]byte{
				"raw":    []byte(secret),
				"hex":    []byte(hex.EncodeToString([]byte(secret))),
				"base64": []byte(base64.StdEncoding.EncodeToString([]byte(cred))),
				// The unkeyed digest that anyone could compute from a
				// guessed credential: only the keyed one may be stored.
				"unkeyed digest": []byte(engine.LegacyScope(cred)),
			}

			var runs atomic.Int64
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get(tc.Header) != cred {
					t.Errorf("handler saw %s %q", tc.Header, r.Header.Get(tc.Header))
				}
				runs.Add(1)
				switch r.URL.Path {
				case "/fail":
					if runs.Load()%2 == 1 {
						w.WriteHeader(503) // released; the retry runs again
						return
					}
				case "/invalid":
					w.WriteHeader(422) // recorded
					io.WriteString(w, `{"error":"invalid"}`)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Location", "/v1/things/"+r.Header.Get("Idempotency-Key"))
				w.WriteHeader(201)
				fmt.Fprintf(w, `{"id":%d}`, runs.Load())
			})
			opts := tc.opts
			opts.Logger = idemtest.QuietLogger()
			dir := t.TempDir()
			run := func(wantReplay bool) {
				e := idemtest.OpenDiskEngine(t, dir, nil) // the defaults: Synced
				srv, m := newServer(t, e, &opts, h)
				for i := range 30 {
					key := fmt.Sprintf("%s-%d", keyMark, i)
					path := [...]string{"/v1/payments", "/fail", "/invalid"}[i%3]
					method := [...]string{"POST", "PUT", "PATCH", "DELETE"}[i%4]
					first := idemtest.Do(t, method, srv.URL+path, key, `{"amount":100}`, tc.Header, cred)
					again := idemtest.Do(t, method, srv.URL+path, key, `{"amount":100}`, tc.Header, cred)
					if path == "/fail" && !wantReplay {
						continue // 503, then a run that is recorded
					}
					if wantReplay && first.Header.Get("Idempotency-Replay") != "true" {
						t.Fatalf("%s after a restart: %d, not replayed", key, first.Status)
					}
					if again.Header.Get("Idempotency-Replay") != "true" || again.Body != first.Body {
						t.Fatalf("%s: retry %d %q; want the replay of %q", key, again.Status, again.Body, first.Body)
					}
					if !wantReplay {
						c := idemtest.Do(t, method, srv.URL+path, key, `{"amount":200}`, tc.Header, cred)
						if c.Status != 409 {
							t.Fatalf("%s: different body: %d; want 409", key, c.Status)
						}
					}
				}
				if s := m.Stats(); s.Replayed == 0 || (!wantReplay && (s.Conflicts == 0 || s.Released == 0)) {
					t.Fatalf("the run did not exercise replays, conflicts and releases: %+v", s)
				}
				// What is stored under the tenant is its digest.
				scope := idemhttp.CredentialScope(e.Scoper(), cred)
				n := 0
				err := e.Scan(context.Background(), engine.ScanOptions{}, func(en engine.Entry) error {
					n++
					if en.Key.Scope != scope {
						return fmt.Errorf("record %s is not under the credential's digest", en.Key)
					}
					return nil
				})
				if err != nil || n == 0 {
					t.Fatalf("scan: %d records, %v", n, err)
				}
				srv.Close()
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
			}
			scanDir := func(when string) {
				files, size, foundKey := 0, 0, false
				var walk func(string)
				walk = func(d string) {
					ents, err := os.ReadDir(d)
					if err != nil {
						t.Fatal(err)
					}
					for _, ent := range ents {
						p := filepath.Join(d, ent.Name())
						if ent.IsDir() {
							walk(p)
							continue
						}
						b, err := os.ReadFile(p)
						if err != nil {
							t.Fatal(err)
						}
						files++
						size += len(b)
						foundKey = foundKey || bytes.Contains(b, []byte(keyMark))
						for form, needle := range needles {
							if i := bytes.Index(b, needle); i >= 0 {
								t.Errorf("%s: %s holds the credential (%s) at offset %d", when, ent.Name(), form, i)
							}
						}
					}
				}
				walk(dir)
				if files == 0 || (when == "first run" && !foundKey) {
					t.Fatalf("%s: %d files, %d bytes, idempotency keys found: %v; the search missed the records", when, files, size, foundKey)
				}
				t.Logf("%s: %d files, %d bytes searched; the credential is in none", when, files, size)
			}
			run(false)
			scanDir("first run")
			run(true)
			scanDir("after a restart")
		})
	}
}

// The middleware's scope for a credential is a 32-byte digest that
// depends on every byte of the credentials, look-alikes and Unicode
// normalisation forms included, and on the auth scheme but for its letter
// case and the blanks around it (one credential to HTTP); no credential is
// the anonymous scope "".
func TestIsolationCredentialScopes(t *testing.T) {
	tenants := [][]string{ // each: spellings of one tenant
		{"Bearer a", "bearer a", "BEARER a", "Bearer  a", "Bearer\ta", " Bearer a "},
		{"Bearer \u0430"}, {"Bearer caf\u00e9"}, {"Bearer cafe\u0301"}, {"Bearer A"},
		{"Bearer a\x00"}, {"Bearer a\tb"}, {"Bearer a b"}, {"Bearer a  b"}, {"Basic a"},
		{"B\xffearer a"}, {"B\xfeearer a"}, {"a"}, {"A"},
	}
	scoper, err := engine.NewScoper(engine.ScopeKeys{Secret: engine.NewScopeSecret()})
	if err != nil {
		t.Fatal(err)
	}
	if s := idemhttp.CredentialScope(scoper, ""); s != "" {
		t.Fatalf("scope of no credential %x; want the anonymous scope", s)
	}
	seen := map[string]string{}
	for _, spellings := range tenants {
		s := idemhttp.CredentialScope(scoper, spellings[0])
		for _, c := range spellings[1:] {
			if idemhttp.CredentialScope(scoper, c) != s {
				t.Fatalf("%q and %q are one credential but two scopes", spellings[0], c)
			}
		}
		if len(s) != 32 {
			t.Fatalf("scope of %q is %d bytes; want a 32-byte digest", spellings[0], len(s))
		}
		if o, dup := seen[s]; dup {
			t.Fatalf("credentials %q and %q share a scope", o, spellings[0])
		}
		seen[s] = spellings[0]
	}
}

// Sessions by cookie (Options.ScopeCookie): look-alike session values,
// the session cookie among others or missing, and cookies whose names
// differ from it only in case, each with look-alike keys: every session
// runs a key once and gets only its own response. (A session is the
// cookie's value as Go parses it: a quoted value is the value.)
func TestIsolationHTTPCookieSessions(t *testing.T) {
	cookies := []string{
		"SID=a", "sid=a", "sid=A", "sid=ab", "sid=a%20b", "sid=a.b", "sid=a_b",
		"theme=dark; sid=b", "sid=c; theme=dark",
	}
	keys := []string{"k", "K", "k:1", "a b"}
	h := newIsolationHandler(func(r *http.Request) string {
		sid := ""
		if c, err := r.Cookie("sid"); err == nil {
			sid = c.Value
		}
		return sid + "\n" + r.Header.Get("Idempotency-Key")
	})
	e := idemtest.OpenDiskEngine(t, t.TempDir(), &engine.Options{Durability: engine.Relaxed})
	// No session is one shared tenant here, so that it is checked too.
	srv, _ := newServer(t, e, &idemhttp.Options{ScopeCookie: "sid", Anonymous: idemhttp.ShareAnonymous, Logger: idemtest.QuietLogger()}, h)
	var reqs []isolationReq
	for _, c := range cookies {
		sid := "" // as Go parses it: an invalid value (not ASCII) is none
		if ck, err := (&http.Request{Header: http.Header{"Cookie": {c}}}).Cookie("sid"); err == nil {
			sid = ck.Value
		}
		for _, k := range keys {
			q := isolationReq{ident: sid + "\n" + k, method: "POST", target: "/v1/charges", hdr: []string{"Idempotency-Key", k}}
			if c != "" {
				q.hdr = append(q.hdr, "Cookie", c)
			}
			reqs = append(reqs, q)
		}
	}
	checkIsolation(t, srv.URL, h, reqs, 2, 8, 7)
	// Cookies named like the session cookie are not it: anonymous.
	anon := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "anon", `{}`, "Authorization", "", "Cookie", "sid2=a")
	for _, c := range []string{"xsid=a", "SID=a", "Sid=a"} {
		if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "anon", `{}`, "Authorization", "", "Cookie", c); r.Body != anon.Body {
			t.Fatalf("cookie %q: %d %q; want the anonymous tenant's %q", c, r.Status, r.Body, anon.Body)
		}
	}
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "anon", `{}`, "Cookie", "sid=a"); r.Body == anon.Body {
		t.Fatal("session a got the anonymous tenant's response")
	}
}
