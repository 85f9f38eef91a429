// Package idemadmin serves the live admin API of an idemkv store: look a
// key up, delete it, list keys, and the store's statistics and health,
// as JSON over HTTP, guarded by a bearer token. It works on every
// engine.Store (listing on those that are engine.Listers: the embedded
// engine and Redis), on a running server, which the offline data-directory
// tools cannot change. `idemkv proxy` and `serve` mount it on their admin
// listener under /admin/, and `idemkv admin` is its command line.
//
//	POST /v1/keys/get     {"credential"|"scope", "endpoint", "key"} -> the record, without its body
//	POST /v1/keys/delete  the same -> {"deleted": true}; 409 while a request holds the key
//	POST /v1/keys/list    {"credential"|"scope", "endpoint", "after", "limit"} -> {"keys": [...], "next": "..."}
//	GET  /v1/stats        the store's engine.Stats
//	GET  /v1/health       {"ok": true}, or 503 and why
//
// A key is named by its endpoint ("POST /v1/charges"), its key, and its
// tenant: the credential the client sent (which the server digests as the
// middleware does, so the operator never handles digests), or the scope
// itself, as text or 0x-prefixed hex (what `idemkv inspect` prints).
// Errors are {"error": code, "detail": text} with codes unauthorized,
// bad_request, not_found, in_progress, damaged, unavailable, unsupported.
package idemadmin

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/record"
)

// Options configure the API.
type Options struct {
	// Token, if set, is the bearer token every request must carry
	// (Authorization: Bearer <token>); compared in constant time. Empty:
	// no authentication, for a listener only the machine reaches.
	Token string
	// Scope turns a credential into the scope its keys are stored under,
	// as the middleware does. Default idemhttp's for the Authorization
	// header (idemhttp.CredentialScope with the store's Scoper); a server
	// with another ScopeHeader passes its own.
	Scope func(credential string) (string, error)
	// MaxList bounds the records a list reads to sort a page (default
	// 100,000): a list of a larger prefix fails rather than holding them
	// all.
	MaxList int
}

// Handler returns the API over store.
func Handler(store engine.Store, o *Options) http.Handler {
	a := &api{store: store}
	if o != nil {
		a.o = *o
	}
	if a.o.MaxList <= 0 {
		a.o.MaxList = 100_000
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/keys/get", a.get)
	mux.HandleFunc("POST /v1/keys/delete", a.delete)
	mux.HandleFunc("POST /v1/keys/list", a.list)
	mux.HandleFunc("GET /v1/stats", a.stats)
	mux.HandleFunc("GET /v1/health", a.health)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="idemkv admin"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "this API needs Authorization: Bearer <admin token>")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// TokenCookie is the cookie in which the status page keeps the admin
// token for the browser (HttpOnly, SameSite=Strict).
const TokenCookie = "idemkv_admin_token"

// Authorized reports whether r carries the bearer token, in its
// Authorization header or in the status page's cookie (always, when
// token is empty). Servers use it to guard their other admin paths.
func Authorized(r *http.Request, token string) bool {
	if token == "" {
		return true
	}
	if scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") &&
		tokenIs(strings.TrimSpace(got), token) {
		return true
	}
	c, err := r.Cookie(TokenCookie)
	return err == nil && tokenIs(c.Value, token)
}

// tokenIs compares a token sent with the right one in constant time.
func tokenIs(got, token string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

type api struct {
	store engine.Store
	o     Options
}

func (a *api) authorized(r *http.Request) bool { return Authorized(r, a.o.Token) }

// KeyRequest names a key, or a prefix of keys for a list.
type KeyRequest struct {
	Credential string `json:"credential,omitempty"`
	Scope      string `json:"scope,omitempty"`
	Endpoint   string `json:"endpoint,omitempty"`
	Key        string `json:"key,omitempty"`
	// For a list: the key to start after (the previous page's Next) and
	// how many to return (default 100, at most 1,000).
	After string `json:"after,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

// Record is a record as the API shows it: no body, its size.
type Record struct {
	Scope          string          `json:"scope"`
	Endpoint       string          `json:"endpoint"`
	Key            string          `json:"key"`
	State          string          `json:"state"` // "completed" or "claimed"
	RequestID      string          `json:"request_id,omitempty"`
	Attempt        uint32          `json:"attempt"`
	Status         int             `json:"status,omitempty"`
	Headers        []record.Header `json:"headers,omitempty"`
	BodyBytes      int             `json:"body_bytes"`
	CreatedAt      *time.Time      `json:"created_at,omitempty"`
	CompletedAt    *time.Time      `json:"completed_at,omitempty"`
	ExpiresAt      *time.Time      `json:"expires_at,omitempty"`
	LeaseExpiresAt *time.Time      `json:"lease_expires_at,omitempty"`
	Checkpoint     string          `json:"checkpoint_phase,omitempty"`
}

// ListResponse is a page of a list.
type ListResponse struct {
	Keys []Record `json:"keys"`
	// Next, if set, is the After of the next page.
	Next string `json:"next,omitempty"`
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	_, key, ok := a.keyOf(w, r)
	if !ok {
		return
	}
	rec, err := a.store.Get(r.Context(), key)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, show(key, rec, len(rec.Body)))
}

func (a *api) delete(w http.ResponseWriter, r *http.Request) {
	_, key, ok := a.keyOf(w, r)
	if !ok {
		return
	}
	if err := a.store.Delete(r.Context(), key); err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"deleted": true})
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	var kr KeyRequest
	if !readJSON(w, r, &kr) {
		return
	}
	lister, ok := a.store.(engine.Lister)
	if !ok {
		writeError(w, http.StatusNotImplemented, "unsupported", "this store cannot list its keys")
		return
	}
	scope, ok := a.scopeOf(w, kr)
	if !ok {
		return
	}
	prefix := record.AllKeys()
	switch {
	case kr.Endpoint != "":
		prefix = record.EndpointPrefix(scope, kr.Endpoint)
	case kr.Credential != "" || kr.Scope != "":
		prefix = record.ScopePrefix(scope)
	}
	limit := kr.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	type item struct {
		order string
		rec   Record
	}
	var items []item
	err := lister.List(r.Context(), prefix, func(k record.Key, rec *record.Record) error {
		order := string(k.Append(nil))
		if kr.After != "" && order <= afterKey(kr.After) {
			return nil
		}
		if len(items) >= a.o.MaxList {
			return fmt.Errorf("%w: more than %d records under this prefix; name a scope and an endpoint", errTooMany, a.o.MaxList)
		}
		items = append(items, item{order, show(k, rec, 0)})
		return nil
	})
	if errors.Is(err, errTooMany) {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if err != nil {
		writeStoreError(w, err)
		return
	}
	slices.SortFunc(items, func(x, y item) int { return strings.Compare(x.order, y.order) })
	resp := ListResponse{Keys: []Record{}}
	for i, it := range items {
		if i == limit {
			resp.Next = "0x" + hex.EncodeToString([]byte(items[i-1].order))
			break
		}
		resp.Keys = append(resp.Keys, it.rec)
	}
	writeJSON(w, http.StatusOK, resp)
}

var errTooMany = errors.New("too many records")

// afterKey decodes a list cursor (the 0x-hex of an encoded key).
func afterKey(after string) string {
	b, err := hex.DecodeString(strings.TrimPrefix(after, "0x"))
	if err != nil {
		return after
	}
	return string(b)
}

func (a *api) stats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.store.Stats())
}

func (a *api) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.store.Health(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// keyOf reads a KeyRequest naming one key.
func (a *api) keyOf(w http.ResponseWriter, r *http.Request) (KeyRequest, record.Key, bool) {
	var kr KeyRequest
	if !readJSON(w, r, &kr) {
		return kr, record.Key{}, false
	}
	if kr.Endpoint == "" || kr.Key == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "name the key: endpoint (\"POST /v1/charges\") and key, with credential or scope")
		return kr, record.Key{}, false
	}
	scope, ok := a.scopeOf(w, kr)
	if !ok {
		return kr, record.Key{}, false
	}
	key := record.Key{Scope: scope, Endpoint: kr.Endpoint, Key: kr.Key}
	if err := key.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return kr, record.Key{}, false
	}
	return kr, key, true
}

// scopeOf resolves a request's tenant: a credential digested as the
// middleware does, or a scope as text or 0x-hex.
func (a *api) scopeOf(w http.ResponseWriter, kr KeyRequest) (string, bool) {
	switch {
	case kr.Credential != "" && kr.Scope != "":
		writeError(w, http.StatusBadRequest, "bad_request", "give credential or scope, not both")
		return "", false
	case kr.Credential != "":
		if a.o.Scope != nil {
			s, err := a.o.Scope(kr.Credential)
			if err != nil {
				writeError(w, http.StatusBadRequest, "bad_request", err.Error())
				return "", false
			}
			return s, true
		}
		sc := a.store.Scoper()
		if sc == nil {
			writeError(w, http.StatusNotImplemented, "unsupported", "this store cannot digest credentials; give the scope")
			return "", false
		}
		return idemhttp.CredentialScope(sc, kr.Credential), true
	case strings.HasPrefix(kr.Scope, "0x"):
		b, err := hex.DecodeString(kr.Scope[2:])
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "scope: "+err.Error())
			return "", false
		}
		return string(b), true
	}
	return kr.Scope, true
}

// show is the API's view of a record; size is its body's (0 in a list,
// whose records come without bodies).
func show(k record.Key, rec *record.Record, size int) Record {
	out := Record{Scope: printable(k.Scope), Endpoint: k.Endpoint, Key: k.Key, RequestID: rec.RequestID,
		Attempt: rec.Attempt, Status: rec.Status, Headers: rec.Header, BodyBytes: size}
	out.State = "completed"
	if rec.State == record.Claimed {
		out.State = "claimed"
		if !rec.Lease.ExpiresAt.IsZero() {
			t := rec.Lease.ExpiresAt.UTC()
			out.LeaseExpiresAt = &t
		}
	}
	for _, p := range []struct {
		t   time.Time
		dst **time.Time
	}{{rec.CreatedAt, &out.CreatedAt}, {rec.CompletedAt, &out.CompletedAt}, {rec.ExpiresAt, &out.ExpiresAt}} {
		if !p.t.IsZero() {
			t := p.t.UTC()
			*p.dst = &t
		}
	}
	if rec.Checkpoint != nil {
		out.Checkpoint = rec.Checkpoint.Phase
	}
	return out
}

// printable shows a scope as text when it is, else as 0x-prefixed hex.
func printable(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return "0x" + hex.EncodeToString([]byte(s))
		}
	}
	if strings.HasPrefix(s, "0x") {
		return "0x" + hex.EncodeToString([]byte(s))
	}
	return s
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "the body must be one JSON object: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, detail string) {
	writeJSON(w, status, map[string]string{"error": code, "detail": detail})
}

func writeStoreError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, engine.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no record under this key")
	case errors.Is(err, engine.ErrInProgress):
		writeError(w, http.StatusConflict, "in_progress", "a request holds this key now; try again when it has finished")
	case errors.Is(err, engine.ErrCorrupt):
		writeError(w, http.StatusInternalServerError, "damaged", err.Error())
	case errors.Is(err, engine.ErrInvalidKey), errors.Is(err, engine.ErrInvalid):
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
	default:
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	}
}
