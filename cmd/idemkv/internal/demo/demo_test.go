package demo_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/idemkv/idemkv/cmd/idemkv/internal/demo"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
)

func newDemo(t *testing.T) *httptest.Server {
	t.Helper()
	eng, err := engine.Open("data", &engine.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	m, err := idemhttp.New(eng, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(demo.New(m))
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, method, url, token, key, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s %s: body %q is not JSON", method, url, b)
	}
	return resp.StatusCode, resp.Header, v
}

func id(v map[string]any) string {
	d, _ := v["data"].(map[string]any)
	s, _ := d["id"].(string)
	return s
}

func TestDemoCreateReplayConflictGet(t *testing.T) {
	srv := newDemo(t)
	for kind, prefix := range demo.Kinds {
		url := srv.URL + "/v1/" + kind
		s1, h1, v1 := call(t, "POST", url, "sk_a", "k", `{"name":"x"}`)
		s2, h2, v2 := call(t, "POST", url, "sk_a", "k", `{"name":"x"}`)
		if s1 != 201 || s2 != 201 || id(v1) != id(v2) || !strings.HasPrefix(id(v1), prefix+"_") {
			t.Fatalf("%s: %d %v then %d %v", kind, s1, v1, s2, v2)
		}
		if h1.Get("Idempotency-Replay") != "false" || h2.Get("Idempotency-Replay") != "true" || h2.Get("Location") != "/v1/"+kind+"/"+id(v1) {
			t.Fatalf("%s: replay headers %v", kind, h2)
		}
		if s, _, _ := call(t, "POST", url, "sk_a", "k", `{"name":"y"}`); s != 409 {
			t.Fatalf("%s: conflict answered %d", kind, s)
		}
		if s, _, v := call(t, "GET", url+"/"+id(v1), "sk_a", "", ""); s != 200 || id(v) != id(v1) {
			t.Fatalf("%s: GET %d %v", kind, s, v)
		}
		if s, _, _ := call(t, "GET", url+"/"+id(v1), "sk_other", "", ""); s != 404 {
			t.Fatalf("%s: another tenant read the resource: %d", kind, s)
		}
	}
}

func TestDemoUnprotectedEndpointIgnoresKeys(t *testing.T) {
	srv := newDemo(t)
	_, h, v1 := call(t, "POST", srv.URL+"/v1/webhooks", "sk_a", "k", `{}`)
	_, _, v2 := call(t, "POST", srv.URL+"/v1/webhooks", "sk_a", "k", `{}`)
	if id(v1) == id(v2) || h.Get("Idempotency-Replay") != "" {
		t.Fatalf("the endpoint without idempotency replayed: %v %v", v1, v2)
	}
}

func TestDemoAuthAndValidation(t *testing.T) {
	srv := newDemo(t)
	if s, h, _ := call(t, "POST", srv.URL+"/v1/calls", "", "k", `{}`); s != 401 || h.Get("WWW-Authenticate") == "" {
		t.Fatalf("no token: %d", s)
	}
	if s, _, _ := call(t, "POST", srv.URL+"/v1/calls", "sk_a", "bad", `[1]`); s != 400 {
		t.Fatalf("not an object: %d", s)
	}
	if s, _, _ := call(t, "POST", srv.URL+"/v1/calls", "sk_a", "bad2", `{"delay_ms":-1}`); s != 400 {
		t.Fatalf("bad delay: %d", s)
	}
}

func TestDemoSlowDuplicatesRunOnce(t *testing.T) {
	srv := newDemo(t)
	var wg sync.WaitGroup
	ids := make([]string, 20)
	var busy atomic.Int64
	for i := range ids {
		wg.Go(func() {
			status, h, v := call(t, "POST", srv.URL+"/v1/calls", "sk_a", "slow", `{"delay_ms":200}`)
			if status == http.StatusConflict && h.Get("Retry-After") != "" {
				busy.Add(1) // over MaxWaitersPerKey (16): told to retry, never run
				return
			}
			ids[i] = id(v)
		})
	}
	wg.Wait()
	want := ""
	for _, got := range ids {
		if got == "" {
			continue
		}
		if want == "" {
			want = got
		}
		if got != want {
			t.Fatalf("ids %v; want one id", ids)
		}
	}
	if want == "" || busy.Load() > 20-1-16 {
		t.Fatalf("ids %v, %d told to retry; want one id, at most %d told to retry", ids, busy.Load(), 20-1-16)
	}
}

func TestTour(t *testing.T) {
	tour := demo.Tour("http://127.0.0.1:8080")
	if strings.Count(tour, "curl -i http://127.0.0.1:8080/v1/calls") != 3 {
		t.Fatalf("tour:\n%s", tour)
	}
}
