package idemhttp

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
)

// Options configure a Middleware. The zero value, and a nil *Options, give
// the documented defaults.
type Options struct {
	// KeyHeaders are the request headers read for the idempotency key, in
	// order. Default "Idempotency-Key", then "X-Idempotency-Key".
	KeyHeaders []string

	// Methods are the methods whose requests are handled when Routes is
	// empty. Default POST, PUT, PATCH and DELETE.
	Methods []string

	// RequireKey refuses a request selected by Methods that carries no
	// key with 400 (code idempotency_key_missing). Default false: such a
	// request passes through to the handler unprotected.
	RequireKey bool

	// Routes, if not empty, replaces Methods: only requests whose method
	// and route pattern match one of them are handled; every other
	// request passes through untouched. Methods are compared in upper
	// case. A request that a ServeMux routed (Request.Pattern set) is
	// matched by its pattern; any other, with the default RoutePattern,
	// has its cleaned path (dot segments resolved, repeated and trailing
	// slashes removed) matched against the Routes as ServeMux patterns
	// ("/v1/charges/{id}"), so that no spelling an application's router
	// takes for a guarded route gets past the guard. A Route.Pattern that
	// ServeMux refuses makes New fail.
	Routes []Route

	// RoutePattern returns the route of a request, without its method:
	// "/v1/calls/{id}". It is one part of the endpoint under which keys
	// are stored (with the method), and what Routes are matched against.
	// Default: the pattern of the http.ServeMux route that matched
	// (Request.Pattern, set when the middleware wraps a handler
	// registered on a mux), without its method; else the URL path. Use
	// MuxPattern when the middleware wraps a whole ServeMux.
	RoutePattern func(*http.Request) string

	// CaseInsensitivePaths matches request paths against Routes, and
	// keys them, ignoring letter case, for an application whose router
	// does (so that /V1/charges cannot slip past a route guard on
	// /v1/charges). Default false: paths are case-sensitive, as in
	// net/http.
	CaseInsensitivePaths bool

	// ScopeHeader is the request header whose value identifies the
	// tenant. Keys are stored under a digest of its value keyed with the
	// store's secret (see CredentialScope and engine.Scoper); the value
	// itself is never stored. A request without it has no scope: see
	// Anonymous. A request with two is refused (400
	// idempotency_scope_invalid). Default "Authorization".
	ScopeHeader string

	// ScopeCookie, if set, replaces ScopeHeader: the tenant is the value
	// of the named session cookie, stored as a keyed digest as
	// ScopeHeader's value is, for APIs whose clients are identified by a
	// cookie session. A request without the cookie has no scope; one
	// with two different values of it is refused.
	ScopeCookie string

	// Scope, if set, replaces ScopeHeader and ScopeCookie: it returns the
	// tenant of a request (up to 1024 bytes; "" when the request has
	// none: see Anonymous). What it returns is stored as is, not
	// digested, so it should not be a secret: an account id, or a
	// digest the application keys itself.
	Scope func(*http.Request) string

	// Anonymous is what happens to a request with a key but no scope
	// (no ScopeHeader, or Scope returned ""). Default RefuseAnonymous:
	// without it, every such client would share one scope, where one can
	// replay another's stored response by sending its key.
	Anonymous AnonymousPolicy

	// CanonicalJSON makes the fingerprint of a request whose body is
	// valid JSON ignore whitespace and the order of object keys. Default
	// false: the body's bytes are hashed as they are.
	CanonicalJSON bool

	// FingerprintExclude names JSON fields left out of the fingerprint of
	// a request whose body is one valid JSON value: values that change
	// between a request and its retry without making it another request
	// (a client timestamp, a trace id). A name is a top-level field; a
	// dotted path ("metadata.trace_id") a nested one, through objects. A
	// retry that differs from the first request only in these fields
	// replays its response. Setting it fingerprints JSON bodies as
	// CanonicalJSON does (other bodies are hashed as they are). Changing
	// it (or CanonicalJSON) changes the fingerprints of JSON requests: a
	// retry across the change of a request completed before it gets a
	// conflict, not a replay.
	FingerprintExclude []string

	// RouteTTL sets how long the responses of some endpoints are
	// replayed, from their completion, instead of the store's TTL (see
	// engine.Response.TTL: at most the store's). Its keys are endpoints as
	// keys are stored under them: the method and the route pattern
	// ("POST /v1/charges/{id}", the pattern of a Routes entry or of the
	// ServeMux route), or the path where there is no pattern.
	RouteTTL map[string]time.Duration

	// FingerprintBody, if set, replaces the body's part of the
	// fingerprint (and CanonicalJSON and FingerprintExclude): it returns
	// the bytes that stand for body, for example a request's fields that
	// make it the request it is, so that a retry differing in anything
	// else replays. The method, endpoint, request target and media type
	// are hashed as always. It must not keep body, and must return the
	// same bytes for a request and its retries (a panic in it reaches the
	// server as a handler's panic would).
	FingerprintBody func(r *http.Request, body []byte) []byte

	// MaxRequestBody is the largest request body accepted, in bytes; a
	// larger one is refused with 413 and nothing is recorded. The body
	// is read into memory to fingerprint it. Default 1 MiB.
	MaxRequestBody int64

	// MaxResponseBody is the largest response body recorded, in bytes.
	// A larger response is sent through unrecorded and the claim is
	// released, as for a streamed response. It should not exceed the
	// store's own limit (engine.Options.MaxBodySize). Default 16 MiB.
	MaxResponseBody int

	// StoredHeaders are response headers recorded and replayed in
	// addition to the default allow-list (Content-Type, Content-Encoding,
	// Location, ETag, Last-Modified, Content-Language, Content-Location,
	// X-Request-Id). Set-Cookie, Date, Content-Length and hop-by-hop
	// headers are never stored; New refuses them.
	StoredHeaders []string

	// ShouldStore says whether a response with this status is recorded.
	// One that is not releases the claim, so a retry runs the handler
	// again. Default: 2xx, and 4xx except 408, 409, 425 and 429.
	ShouldStore func(status int) bool

	// ConflictStatus is the status of the answer to a key reused with a
	// different request: 409 (default) or 422 (as the IETF draft
	// prefers).
	ConflictStatus int

	// WhenInProgress is what happens to a duplicate that arrives while the
	// first request runs. Default WaitForOriginal.
	WhenInProgress InProgressPolicy

	// WaitTimeout bounds how long a duplicate waits for the running
	// request under WaitForOriginal (the request's context bounds it
	// too); then it gets 409 idempotency_request_in_progress. Default
	// 30s.
	WaitTimeout time.Duration

	// MaxBufferedBytes bounds the memory of the request bodies that the
	// middleware holds at once (each is read whole, and held while its
	// handler runs or while it waits for a duplicate's), counted as the
	// capacity of their buffers. A request whose body does not fit gets
	// 503 idempotency_overloaded with Retry-After (its handler does not
	// run). At least MaxRequestBody+512; negative: no limit. Default
	// DefaultMaxBufferedBytes (64 MiB). A body of unknown length (chunked)
	// may grow its buffer past its reservation by up to one doubling
	// before it is refused.
	MaxBufferedBytes int64

	// MaxWaiters bounds the duplicates that wait at once for a running
	// request (under WaitForOriginal), and MaxWaitersPerKey those that
	// wait for one key. A duplicate over either gets 409
	// idempotency_request_in_progress with Retry-After at once. Defaults
	// DefaultMaxWaiters (1024) and DefaultMaxWaitersPerKey (16); negative:
	// no limit.
	MaxWaiters, MaxWaitersPerKey int

	// RetryAfter is the Retry-After sent with 409
	// idempotency_request_in_progress and 503. Default 1s; whole seconds.
	RetryAfter time.Duration

	// OmitIdempotentReplayed leaves out Stripe's "Idempotent-Replayed:
	// true", sent on replays beside "Idempotency-Replay: true".
	OmitIdempotentReplayed bool

	// RequestIDHeader is the response header that carries the request
	// id. Default "X-Request-Id".
	RequestIDHeader string

	// NewRequestID returns a fresh request id for a first request whose
	// handler does not set one. Default "req_" and 24 random hex digits.
	NewRequestID func() string

	// Logger receives errors of the store that the client does not see
	// (a failed Complete). Default slog.Default().
	Logger *slog.Logger

	// OnOutcome, if set, is called once for every request the middleware
	// selects (by Methods or Routes), when it is done with it: what
	// happened (the outcome, the endpoint, the status sent, the attempt,
	// the time spent), for access logs and audits. It runs on the
	// request's goroutine after the response was written, so it should
	// be quick; it must not keep e.Err's request. It is not called for a
	// request whose handler panicked.
	OnOutcome func(ctx context.Context, e Event)

	// MaxEndpoints bounds the endpoints counted one by one in
	// Stats.Endpoints (and the endpoint label of the metrics): requests
	// of endpoints beyond the first MaxEndpoints are counted under
	// "other". With route patterns (a ServeMux, Routes, an adapter) there
	// are as many endpoints as routes; without, every path is one.
	// Default 100.
	MaxEndpoints int
}

// A Route names one endpoint that accepts idempotency keys.
type Route struct {
	Method  string // "POST"
	Pattern string // as RoutePattern returns it: "/v1/calls"
	// RequireKey refuses a request without a key with 400.
	RequireKey bool
}

// AnonymousPolicy says what a request with a key but no scope gets.
type AnonymousPolicy uint8

const (
	// RefuseAnonymous answers 400 idempotency_scope_missing; the handler
	// does not run. The default.
	RefuseAnonymous AnonymousPolicy = iota
	// PassAnonymous runs the handler without idempotency (counted in
	// Stats.AnonymousPassed), as if the request had no key.
	PassAnonymous
	// ShareAnonymous puts every such request in one shared scope: any
	// client that sends another's key (and body) gets that client's
	// stored response, and a 409 confirms that a key is in use. Only for
	// a single-tenant API; New logs a warning.
	ShareAnonymous
)

// InProgressPolicy says what a duplicate gets while the first request runs.
type InProgressPolicy uint8

const (
	// WaitForOriginal waits for the first request to finish (bounded by
	// WaitTimeout and the request's context) and replays its response;
	// if it released its claim instead, the duplicate runs.
	WaitForOriginal InProgressPolicy = iota
	// RejectInProgress answers 409 idempotency_request_in_progress with
	// Retry-After at once.
	RejectInProgress
)

// Defaults.
const (
	DefaultMaxRequestBody  = 1 << 20
	DefaultMaxResponseBody = 16 << 20
	DefaultWaitTimeout     = 30 * time.Second
	DefaultRetryAfter      = time.Second

	DefaultMaxBufferedBytes = 64 << 20
	DefaultMaxWaiters       = 1024
	DefaultMaxWaitersPerKey = 16
	DefaultMaxEndpoints     = 100
)

// defaultStoredHeaders are recorded and replayed unless configured out.
var defaultStoredHeaders = []string{
	"Content-Type", "Content-Encoding", "Location", "Etag", "Last-Modified",
	"Content-Language", "Content-Location",
}

// neverStored are headers that describe one connection or one moment, or
// carry per-client secrets.
var neverStored = []string{
	"Set-Cookie", "Date", "Content-Length", "Connection", "Keep-Alive",
	"Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "Te",
	"Trailer", "Transfer-Encoding", "Upgrade", "Idempotency-Replay",
	"Idempotent-Replayed",
}

// DefaultShouldStore records 2xx and 4xx answers except 408, 409, 425 and
// 429, which say "try again later" rather than answer the request.
func DefaultShouldStore(status int) bool {
	switch {
	case status >= 200 && status < 300:
		return true
	case status >= 400 && status < 500:
		return status != 408 && status != 409 && status != 425 && status != 429
	}
	return false
}

// config is Options with defaults filled in and lookups prepared.
type config struct {
	Options
	methods map[string]bool
	routes  map[string]bool // "METHOD pattern" -> RequireKey
	// mux matches the cleaned paths of requests that no ServeMux routed
	// (the proxy) against Routes, as ServeMux patterns; nil with a custom
	// RoutePattern.
	mux    *http.ServeMux
	stored []string // canonical header names
	retry  string   // Retry-After value
	// scopeMissing is the detail of the problem that refuses an
	// anonymous keyed request.
	scopeMissing string
	// scopeTwice is the detail of the problem that refuses a request
	// with two credentials.
	scopeTwice string
	// ttl is RouteTTL with the methods of its keys in upper case.
	ttl map[string]time.Duration
	// exclude is FingerprintExclude split into paths.
	exclude [][]string
	// authScheme is set if ScopeHeader holds "scheme credentials" values
	// (Authorization, Proxy-Authorization), whose scheme is folded.
	authScheme bool
}

func newConfig(o *Options) (*config, error) {
	c := &config{}
	if o != nil {
		c.Options = *o
	}
	if c.KeyHeaders == nil {
		c.KeyHeaders = []string{"Idempotency-Key", "X-Idempotency-Key"}
	}
	c.KeyHeaders = canonical(c.KeyHeaders)
	if len(c.KeyHeaders) == 0 {
		return nil, fmt.Errorf("%w: no KeyHeaders", ErrInvalidOptions)
	}
	if c.Methods == nil {
		c.Methods = []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
	}
	c.methods = make(map[string]bool)
	for _, m := range c.Methods {
		c.methods[strings.ToUpper(m)] = true
	}
	if c.RoutePattern == nil {
		c.RoutePattern = c.defaultRoutePattern
		if len(c.Routes) > 0 {
			c.mux = http.NewServeMux()
		}
	}
	if len(c.Routes) > 0 {
		c.routes = make(map[string]bool)
		for _, r := range c.Routes {
			if r.Method == "" || r.Pattern == "" {
				return nil, fmt.Errorf("%w: route %+v needs a method and a pattern", ErrInvalidOptions, r)
			}
			method := strings.ToUpper(r.Method)
			_, dup := c.routes[method+" "+r.Pattern]
			c.routes[method+" "+r.Pattern] = r.RequireKey
			if c.mux != nil && !dup {
				if err := c.handleRoute(method, r.Pattern); err != nil {
					return nil, err
				}
			}
		}
	}
	if c.ScopeHeader == "" {
		c.ScopeHeader = "Authorization"
	}
	if c.Anonymous > ShareAnonymous {
		return nil, fmt.Errorf("%w: unknown Anonymous policy %d", ErrInvalidOptions, c.Anonymous)
	}
	c.ScopeHeader = http.CanonicalHeaderKey(c.ScopeHeader)
	c.authScheme = c.ScopeHeader == "Authorization" || c.ScopeHeader == "Proxy-Authorization"
	c.scopeMissing = "an idempotency key needs a credential to be scoped to (the " + c.ScopeHeader + " header); this request has none"
	c.scopeTwice = "the request has more than one " + c.ScopeHeader + " header; send one credential"
	if c.ScopeCookie != "" {
		c.scopeMissing = "an idempotency key needs a credential to be scoped to (the session cookie " + c.ScopeCookie + "); this request has none"
		c.scopeTwice = "the request has two different " + c.ScopeCookie + " cookies; send one session"
	}
	if c.Scope != nil {
		c.scopeMissing = "an idempotency key needs a credential to be scoped to (a session or API key); this request has none"
	}
	if c.MaxRequestBody == 0 {
		c.MaxRequestBody = DefaultMaxRequestBody
	}
	if c.MaxResponseBody == 0 {
		c.MaxResponseBody = DefaultMaxResponseBody
	}
	if c.MaxRequestBody < 0 || c.MaxResponseBody < 0 {
		return nil, fmt.Errorf("%w: negative body limit", ErrInvalidOptions)
	}
	if c.RequestIDHeader == "" {
		c.RequestIDHeader = "X-Request-Id"
	}
	c.RequestIDHeader = http.CanonicalHeaderKey(c.RequestIDHeader)
	c.stored = canonical(slices.Concat(defaultStoredHeaders, []string{c.RequestIDHeader}, c.StoredHeaders))
	for _, h := range c.stored {
		if slices.Contains(neverStored, h) {
			return nil, fmt.Errorf("%w: header %s cannot be stored", ErrInvalidOptions, h)
		}
	}
	if c.ShouldStore == nil {
		c.ShouldStore = DefaultShouldStore
	}
	switch c.ConflictStatus {
	case 0:
		c.ConflictStatus = http.StatusConflict
	case http.StatusConflict, http.StatusUnprocessableEntity:
	default:
		return nil, fmt.Errorf("%w: ConflictStatus %d (want 409 or 422)", ErrInvalidOptions, c.ConflictStatus)
	}
	if c.WhenInProgress > RejectInProgress {
		return nil, fmt.Errorf("%w: WhenInProgress policy %d", ErrInvalidOptions, c.WhenInProgress)
	}
	for endpoint, d := range c.RouteTTL {
		method, route, ok := strings.Cut(endpoint, " ")
		if !ok || method == "" || !strings.HasPrefix(route, "/") || d <= 0 {
			return nil, fmt.Errorf("%w: RouteTTL %q: %v: want \"METHOD /route\" and a positive duration", ErrInvalidOptions, endpoint, d)
		}
		if c.ttl == nil {
			c.ttl = make(map[string]time.Duration, len(c.RouteTTL))
		}
		c.ttl[strings.ToUpper(method)+" "+route] = d
	}
	for _, f := range c.FingerprintExclude {
		path := strings.Split(f, ".")
		if slices.Contains(path, "") {
			return nil, fmt.Errorf("%w: FingerprintExclude %q: want a field name or a dotted path of names", ErrInvalidOptions, f)
		}
		c.exclude = append(c.exclude, path)
	}
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if c.MaxBufferedBytes > 0 && c.MaxBufferedBytes < c.MaxRequestBody+bytes.MinRead {
		return nil, fmt.Errorf("%w: MaxBufferedBytes %d cannot hold one body of MaxRequestBody %d (and 512 bytes of slack)", ErrInvalidOptions, c.MaxBufferedBytes, c.MaxRequestBody)
	}
	if c.MaxWaiters == 0 {
		c.MaxWaiters = DefaultMaxWaiters
	}
	if c.MaxEndpoints <= 0 {
		c.MaxEndpoints = DefaultMaxEndpoints
	}
	if c.MaxWaitersPerKey == 0 {
		c.MaxWaitersPerKey = DefaultMaxWaitersPerKey
	}
	if c.MaxWaiters < 0 {
		c.MaxWaiters = math.MaxInt
	}
	if c.MaxWaitersPerKey < 0 {
		c.MaxWaitersPerKey = math.MaxInt
	}
	if c.WaitTimeout == 0 {
		c.WaitTimeout = DefaultWaitTimeout
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.WaitTimeout < 0 || c.RetryAfter < 0 {
		return nil, fmt.Errorf("%w: negative duration", ErrInvalidOptions)
	}
	c.retry = fmt.Sprint(int64((c.RetryAfter + time.Second - 1) / time.Second))
	if c.NewRequestID == nil {
		c.NewRequestID = newRequestID
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// canonical returns the canonical forms of names, without duplicates.
func canonical(names []string) []string {
	var out []string
	for _, n := range names {
		if n = http.CanonicalHeaderKey(strings.TrimSpace(n)); n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// defaultRoutePattern is the ServeMux pattern without its method, or the
// cleaned path (see cleanPath).
func (c *config) defaultRoutePattern(r *http.Request) string {
	p := r.Pattern
	if p == "" {
		return c.cleanPath(r.URL.Path)
	}
	return stripMethod(p)
}

// cleanPath is p as an application's router most likely sees it: dot
// segments resolved, repeated slashes and a trailing slash removed (see
// path.Clean), and lower-cased with CaseInsensitivePaths. It is what
// Routes are matched against and what keys are stored under, so that no
// other spelling of a guarded route passes unguarded, and a retry of a key
// spelled otherwise is refused as a conflict (the fingerprint keeps the
// target as sent) instead of running the handler again.
func (c *config) cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	p = path.Clean(p)
	if c.CaseInsensitivePaths {
		p = strings.ToLower(p)
	}
	return p
}

// routeName is the handler c.mux holds for a route: the route's pattern
// as given (the mux's may be lower-cased).
type routeName string

func (routeName) ServeHTTP(http.ResponseWriter, *http.Request) {}

// handleRoute adds the route method pattern to c.mux, refusing a pattern
// that ServeMux does not take (it panics on one).
func (c *config) handleRoute(method, pattern string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: route %q: %v", ErrInvalidOptions, method+" "+pattern, p)
		}
	}()
	muxPattern := pattern
	if c.CaseInsensitivePaths {
		muxPattern = strings.ToLower(pattern)
	}
	c.mux.Handle(method+" "+muxPattern, routeName(pattern))
	return nil
}

// matchRoute returns the pattern of Routes (as given) that the request
// with method and cleaned path matches, or false.
func (c *config) matchRoute(method, cleaned string) (string, bool) {
	h, _ := c.mux.Handler(&http.Request{Method: method, URL: &url.URL{Path: cleaned}})
	name, ok := h.(routeName)
	return string(name), ok
}

// stripMethod removes a leading "METHOD " from a ServeMux pattern.
func stripMethod(p string) string {
	if i := strings.IndexAny(p, " \t"); i > 0 && !strings.ContainsAny(p[:i], "/.") {
		return strings.TrimLeft(p[i:], " \t")
	}
	return p
}

// MuxPattern returns a RoutePattern function for a middleware that wraps
// a whole mux: it asks mux which pattern the request matches (the path if
// none does).
func MuxPattern(mux *http.ServeMux) func(*http.Request) string {
	return func(r *http.Request) string {
		if _, p := mux.Handler(r); p != "" {
			return stripMethod(p)
		}
		return r.URL.Path
	}
}
