// Package demo is the small API that `idemkv serve` runs: shaped like the
// APIs that take idempotency keys (bearer-token auth, create endpoints
// answering 201 with {"data": {...}}), with idemkv's middleware on every
// create endpoint but one.
//
// Resources live in memory, per tenant (bearer token), and are lost when
// the process stops; the idempotency records are in the data directory and
// survive it.
package demo

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/idemkv/idemkv/engine/idemhttp"
)

// Kinds are the resources with an idempotent create endpoint, by path
// segment, with the prefix of their ids.
var Kinds = map[string]string{
	"calls":       "call",
	"agents":      "agent",
	"batch-calls": "batch",
	"tools":       "tool",
}

// Unprotected is the create endpoint without idempotency support: a key
// sent to it is ignored, and every request creates a resource.
const Unprotected = "webhooks"

// MaxDelay bounds the "delay_ms" member of a create request, which makes
// the handler take that long (to try concurrent duplicates by hand).
const MaxDelay = 30 * time.Second

// API is the demo API's state.
type API struct {
	mu sync.Mutex
	// resources: tenant -> kind -> id -> resource. mu guards it and seq.
	resources map[string]map[string]map[string]map[string]any
	seq       map[string]int
	now       func() time.Time
}

// New returns the demo API's handler, with idem on each idempotent
// create endpoint.
func New(idem *idemhttp.Middleware) http.Handler {
	a := &API{resources: map[string]map[string]map[string]map[string]any{}, seq: map[string]int{}, now: time.Now}
	mux := http.NewServeMux()
	for kind := range Kinds {
		mux.Handle("POST /v1/"+kind, idem.Handler(a.create(kind)))
		mux.HandleFunc("GET /v1/"+kind+"/{id}", a.get(kind))
	}
	mux.Handle("POST /v1/"+Unprotected, a.create(Unprotected))
	mux.HandleFunc("GET /v1/"+Unprotected+"/{id}", a.get(Unprotected))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{
			"object": "index", "idempotent": []string{"/v1/calls", "/v1/agents", "/v1/batch-calls", "/v1/tools"},
			"not_idempotent": []string{"/v1/" + Unprotected},
		}})
	})
	return auth(mux)
}

// auth requires "Authorization: Bearer <token>"; the token names the
// tenant.
func auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if Tenant(r) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="idemkv demo"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "send Authorization: Bearer <any token>; the token names your tenant")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Tenant returns the bearer token of r, or "".
func Tenant(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return ""
	}
	return strings.TrimSpace(h[7:])
}

func (a *API) create(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in map[string]any
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.UseNumber()
		if err := dec.Decode(&in); err != nil || in == nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "the body must be a JSON object")
			return
		}
		if d, ok := in["delay_ms"].(json.Number); ok {
			ms, err := d.Int64()
			if err != nil || ms < 0 || time.Duration(ms)*time.Millisecond > MaxDelay {
				writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("delay_ms must be 0 to %d", MaxDelay.Milliseconds()))
				return
			}
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-r.Context().Done():
			}
		}
		tenant := Tenant(r)
		a.mu.Lock()
		a.seq[kind]++
		prefix := Kinds[kind]
		if prefix == "" {
			prefix = "hook"
		}
		id := fmt.Sprintf("%s_%06d", prefix, a.seq[kind])
		res := map[string]any{"id": id, "object": prefix, "created": a.now().Unix()}
		for k, v := range in {
			if _, taken := res[k]; !taken && k != "delay_ms" {
				res[k] = v
			}
		}
		byKind := a.resources[tenant]
		if byKind == nil {
			byKind = map[string]map[string]map[string]any{}
			a.resources[tenant] = byKind
		}
		if byKind[kind] == nil {
			byKind[kind] = map[string]map[string]any{}
		}
		byKind[kind][id] = res
		a.mu.Unlock()
		w.Header().Set("Location", "/v1/"+kind+"/"+id)
		writeJSON(w, http.StatusCreated, map[string]any{"data": res})
	}
}

func (a *API) get(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		res, ok := a.resources[Tenant(r)][kind][r.PathValue("id")]
		a.mu.Unlock()
		if !ok {
			writeError(w, http.StatusNotFound, "not_found", "no such "+Kinds[kind]+" (resources live in memory and are gone after a restart)")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"data": res})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// Tour returns the curl commands that show a first request, a replay and
// a conflict against a server at base (http://host:port).
func Tour(base string) string {
	post := func(body string) string {
		return fmt.Sprintf("curl -i %s/v1/calls -H 'Authorization: Bearer sk_demo' -H 'Idempotency-Key: call-0001' -H 'Content-Type: application/json' -d '%s'", base, body)
	}
	return "Try it:\n" +
		"  # 1. first request: runs the handler, 201, Idempotency-Replay: false\n  " + post(`{"to":"+15550100"}`) + "\n" +
		"  # 2. the same request again: the stored response, Idempotency-Replay: true\n  " + post(`{"to":"+15550100"}`) + "\n" +
		"  # 3. the same key, a different body: 409 idempotency_conflict\n  " + post(`{"to":"+15550199"}`) + "\n" +
		"  # a slow request ({\"delay_ms\": 3000}) sent twice at once runs once; /v1/" + Unprotected + " takes no keys.\n" +
		"  # Run again on the same data directory, step 1 already replays (the record outlived the\n" +
		"  # restart: that is the point); use another key, or -data with a new directory, to start over.\n"
}
