package idemhttp_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
	"github.com/idemkv/idemkv/expiry"
)

// TestFingerprintExcludeIgnoresListedFields: a retry that differs from
// the first request only in the excluded JSON fields (a client timestamp,
// a nested trace id), or in whitespace and key order, replays it; a
// change anywhere else, nested fields beside the excluded one included,
// is another request (409).
func TestFingerprintExcludeIgnoresListedFields(t *testing.T) {
	c := idemtest.NewCounter()
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{FingerprintExclude: []string{"requested_at", "meta.trace_id"}}, c)
	post := func(body string) idemtest.Reply {
		return idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", body, "Content-Type", "application/json")
	}
	first := post(`{"amount":100,"requested_at":"2026-12-06T10:00:00Z","meta":{"trace_id":"a1","channel":"web"}}`)
	for _, retry := range []string{
		`{"amount":100,"requested_at":"2026-12-06T10:00:07Z","meta":{"trace_id":"b2","channel":"web"}}`,
		`{ "meta": {"channel":"web", "trace_id":"c3"}, "amount": 100 }`, // reordered, fields missing
	} {
		if r := post(retry); r.Header.Get("Idempotency-Replay") != "true" || r.Body != first.Body {
			t.Fatalf("retry %s: %d %q; want the replay", retry, r.Status, r.Body)
		}
	}
	for _, other := range []string{
		`{"amount":101,"requested_at":"2026-12-06T10:00:00Z","meta":{"trace_id":"a1","channel":"web"}}`,
		`{"amount":100,"meta":{"trace_id":"a1","channel":"app"}}`,
		`{"amount":100,"meta":{"channel":"web"},"trace_id":"a1"}`, // a top-level trace_id is not meta.trace_id
	} {
		if r := post(other); r.Status != http.StatusConflict {
			t.Fatalf("another request %s: %d %q; want 409", other, r.Status, r.Body)
		}
	}
	if n := c.Count("k"); n != 1 {
		t.Fatalf("handler ran %d times; want 1", n)
	}
	for _, bad := range [][]string{{""}, {"a..b"}, {".a"}, {"a."}} {
		if _, err := idemhttp.New(idemtest.NewEngine(t, nil), &idemhttp.Options{FingerprintExclude: bad}); !errors.Is(err, idemhttp.ErrInvalidOptions) {
			t.Fatalf("FingerprintExclude %q: %v; want ErrInvalidOptions", bad, err)
		}
	}
}

// FuzzCanonicalJSONExcluding: for any body and excluded path, the
// canonical form is valid JSON without the excluded top-level field, and
// canonicalising it again changes nothing; a body that is not one JSON
// value is reported so (and then hashed as it is).
func FuzzCanonicalJSONExcluding(f *testing.F) {
	f.Add([]byte(`{"a":1,"b":{"c":2,"d":[1,2]}}`), "b.c")
	f.Add([]byte(`{"a":1}`), "a")
	f.Add([]byte(`[{"a":1}]`), "a")
	f.Add([]byte(`not json`), "x")
	f.Fuzz(func(t *testing.T, body []byte, path string) {
		out, ok := idemhttp.CanonicalJSONExcludingForTest(body, path)
		if !ok {
			return
		}
		// Numbers as they are written: a valid number may be past
		// float64's range (1e400), and the canonical form keeps it.
		var v any
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil || dec.More() {
			t.Fatalf("canonical form %q of %q is not JSON: %v", out, body, err)
		}
		again, ok := idemhttp.CanonicalJSONExcludingForTest(out, path)
		if !ok || !bytes.Equal(again, out) {
			t.Fatalf("canonical form %q of %q canonicalises to %q", out, body, again)
		}
		if obj, isObj := v.(map[string]any); isObj && path != "" && !bytes.ContainsRune([]byte(path), '.') {
			if _, has := obj[path]; has {
				t.Fatalf("excluded field %q is in %q", path, out)
			}
		}
	})
}

// TestFingerprintBodyFunction: the application's FingerprintBody decides
// what of the body makes the request: a retry with the same order id
// replays whatever else changed; another order id is a conflict; the
// endpoint still counts (the same bytes on another route are another
// record).
func TestFingerprintBodyFunction(t *testing.T) {
	c := idemtest.NewCounter()
	orderID := func(r *http.Request, body []byte) []byte {
		var v struct {
			OrderID string `json:"order_id"`
		}
		_ = json.Unmarshal(body, &v)
		return []byte(v.OrderID)
	}
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), &idemhttp.Options{FingerprintBody: orderID}, c)
	first := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{"order_id":"o1","note":"a"}`)
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{"order_id":"o1","note":"changed"}`); r.Header.Get("Idempotency-Replay") != "true" || r.Body != first.Body {
		t.Fatalf("same order id: %d %q; want the replay", r.Status, r.Body)
	}
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{"order_id":"o2"}`); r.Status != http.StatusConflict {
		t.Fatalf("another order id: %d; want 409", r.Status)
	}
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/refunds", "k", `{"order_id":"o1"}`); r.Status != 201 || r.Header.Get("Idempotency-Replay") == "true" {
		t.Fatalf("another route: %d replay=%q; want a first run", r.Status, r.Header.Get("Idempotency-Replay"))
	}
	if n := c.Total.Load(); n != 2 {
		t.Fatalf("handler ran %d times; want 2", n)
	}
}

// TestRouteTTL: an endpoint with its own TTL has its responses replayed
// for that long, others for the store's TTL; a bad key is refused.
func TestRouteTTL(t *testing.T) {
	clock := expiry.NewFakeClock(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	c := idemtest.NewCounter()
	srv, _ := newServer(t, idemtest.NewEngine(t, &engine.Options{Clock: clock}),
		&idemhttp.Options{RouteTTL: map[string]time.Duration{"post /v1/sessions": 10 * time.Minute}}, c)
	s1 := idemtest.Do(t, "POST", srv.URL+"/v1/sessions", "k", `{}`)
	c1 := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{}`)
	clock.Advance(9 * time.Minute)
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/sessions", "k", `{}`); r.Body != s1.Body {
		t.Fatalf("within the route's TTL: %q; want the replay of %q", r.Body, s1.Body)
	}
	clock.Advance(2 * time.Minute)
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/sessions", "k", `{}`); r.Body == s1.Body || r.Header.Get("Idempotency-Replay") == "true" {
		t.Fatalf("past the route's TTL: %q replay=%q; want a new run", r.Body, r.Header.Get("Idempotency-Replay"))
	}
	if r := idemtest.Do(t, "POST", srv.URL+"/v1/charges", "k", `{}`); r.Body != c1.Body {
		t.Fatalf("another route after 11 minutes: %q; want the replay of %q (the store's TTL)", r.Body, c1.Body)
	}
	for _, bad := range []map[string]time.Duration{{"/v1/x": time.Minute}, {"POST v1": time.Minute}, {"POST /v1": 0}} {
		if _, err := idemhttp.New(idemtest.NewEngine(t, nil), &idemhttp.Options{RouteTTL: bad}); !errors.Is(err, idemhttp.ErrInvalidOptions) {
			t.Fatalf("RouteTTL %v: %v; want ErrInvalidOptions", bad, err)
		}
	}
}
