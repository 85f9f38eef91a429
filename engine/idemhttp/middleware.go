package idemhttp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/internal/earlier"
	"github.com/idemkv/idemkv/record"
)

// Middleware adds the idempotency contract to HTTP handlers. It is safe
// for concurrent use; one Middleware may wrap any number of handlers, which
// then share its options and statistics.
type Middleware struct {
	store   engine.Store
	c       *config
	st      stats
	budget  bodyBudget // request bodies held (see limits.go)
	waiters waiters    // duplicates waiting
	eps     endpoints  // outcomes by endpoint
}

// New returns a Middleware over store. A nil o means the defaults
// documented on Options. It returns an error matching ErrInvalidOptions
// for options that cannot work.
func New(store engine.Store, o *Options) (*Middleware, error) {
	if store == nil {
		return nil, errors.New("idemhttp: nil store")
	}
	c, err := newConfig(o)
	if err != nil {
		return nil, err
	}
	if c.Scope == nil && store.Scoper() == nil {
		return nil, fmt.Errorf("%w: the store cannot digest credentials (a read-only engine without its scope secret)", ErrInvalidOptions)
	}
	if c.Anonymous == ShareAnonymous {
		c.Logger.Warn("idemhttp: requests without a scope share one anonymous scope (Anonymous: ShareAnonymous): a client that sends another's key gets that client's stored response",
			"scope_header", c.ScopeHeader)
	}
	m := &Middleware{store: store, c: c}
	m.eps.max = c.MaxEndpoints
	m.budget.limit = c.MaxBufferedBytes
	m.waiters.max, m.waiters.perKey, m.waiters.refused = c.MaxWaiters, c.MaxWaitersPerKey, &m.st.waitersRefused
	return m, nil
}

// Handler returns next wrapped with the idempotency contract. Its type is
// the standard middleware signature, func(http.Handler) http.Handler.
func (m *Middleware) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.serve(next, w, r, "")
	})
}

// ServeRoute serves r as Handler(next) does, with route as its route
// pattern, without the method ("/v1/calls/:id"), in place of what
// Options.RoutePattern would return: for adapters of routers that know
// which route a request matched (packages idemgin and idemecho), so that
// their route templates become endpoints and are what Options.Routes and
// RouteTTL name. An empty route asks Options.RoutePattern, as Handler does.
func (m *Middleware) ServeRoute(w http.ResponseWriter, r *http.Request, route string, next http.Handler) {
	m.serve(next, w, r, route)
}

// Response headers the middleware sets.
const (
	headerReplay    = "Idempotency-Replay"
	headerReplayed  = "Idempotent-Replayed" // Stripe's name
	headerRetry     = "Retry-After"
	contentTypeJSON = "application/problem+json"
)

// selects reports whether r is handled, its route pattern, and whether a
// key is required.
//
// Methods are compared in upper case: a router that takes "post" for POST
// must not let it past a route guard. Without a ServeMux pattern, the
// cleaned path is matched (see cleanPath). A route given by an adapter
// (ServeRoute) is taken as it is.
func (m *Middleware) selects(r *http.Request, given string) (route string, require, ok bool) {
	method := strings.ToUpper(r.Method)
	if given != "" {
		if m.c.routes == nil {
			return given, m.c.RequireKey, m.c.methods[method]
		}
		require, ok = m.c.routes[method+" "+given]
		return given, require, ok
	}
	if m.c.routes != nil {
		if m.c.mux != nil && r.Pattern == "" {
			if route, ok = m.c.matchRoute(method, m.c.cleanPath(r.URL.Path)); !ok {
				return "", false, false
			}
		} else {
			route = m.c.RoutePattern(r)
		}
		require, ok = m.c.routes[method+" "+route]
		return route, require, ok
	}
	if !m.c.methods[method] {
		return "", false, false
	}
	return m.c.RoutePattern(r), m.c.RequireKey, true
}

func (m *Middleware) serve(next http.Handler, w http.ResponseWriter, r *http.Request, given string) {
	route, require, ok := m.selects(r, given)
	if !ok {
		next.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	ev := Event{Endpoint: strings.ToUpper(r.Method) + " " + route}
	refuse := func(counter *atomic.Uint64, status int, code, detail string) {
		counter.Add(1)
		m.problem(w, "", status, code, detail, nil)
		ev.Status = status
		m.done(r.Context(), &ev, outcomeRefused, start)
	}
	pass := func(counter *atomic.Uint64) {
		counter.Add(1)
		if m.c.OnOutcome == nil {
			next.ServeHTTP(w, r)
		} else {
			// The hook is told the status sent.
			sw := statusWriter{ResponseWriter: w}
			next.ServeHTTP(&sw, r)
			ev.Status = sw.sent()
		}
		m.done(r.Context(), &ev, outcomePassed, start)
	}
	key, err := ParseKey(r.Header, m.c.KeyHeaders)
	if err != nil {
		refuse(&m.st.badRequests, http.StatusBadRequest, CodeKeyInvalid, err.Error())
		return
	}
	if key == "" {
		if require {
			refuse(&m.st.badRequests, http.StatusBadRequest, CodeKeyMissing,
				"this endpoint requires an idempotency key in the "+m.c.KeyHeaders[0]+" header")
			return
		}
		pass(&m.st.passedThrough)
		return
	}
	ev.Key = key
	var scope, credential, asSent string
	if m.c.Scope != nil {
		scope = m.c.Scope(r)
	} else if credential, asSent, ok = m.credential(r); ok {
		scope = m.store.Scoper().Scope(credential)
	} else {
		refuse(&m.st.badRequests, http.StatusBadRequest, CodeScopeInvalid, m.c.scopeTwice)
		return
	}
	if scope == "" {
		switch m.c.Anonymous {
		case RefuseAnonymous:
			refuse(&m.st.anonymousRefused, http.StatusBadRequest, CodeScopeMissing, m.c.scopeMissing)
			return
		case PassAnonymous:
			pass(&m.st.anonymousPassed)
			return
		}
	}
	m.st.requests.Add(1)

	buf := getBuffer()
	defer putBuffer(buf)
	var held int64 // bytes of the budget this request holds
	defer func() { m.budget.give(held) }()
	if code, detail := m.readBody(r, buf, &held); code != 0 {
		if code == http.StatusServiceUnavailable {
			w.Header().Set(headerRetry, m.c.retry)
			refuse(&m.st.overBudget, code, CodeOverloaded, detail)
			return
		}
		refuse(&m.st.badRequests, code, codeForStatus(code), detail)
		return
	}
	body := buf.Bytes()
	req := engine.Request{
		Key:            record.Key{Scope: scope, Endpoint: ev.Endpoint, Key: key},
		Fingerprint:    m.fingerprint(r, ev.Endpoint, body),
		RequestID:      m.c.NewRequestID(),
		WhenInProgress: engine.Wait,
	}
	if len(req.RequestID) > record.MaxRequestIDLen {
		req.RequestID = req.RequestID[:record.MaxRequestIDLen]
	}
	ev.RequestID = req.RequestID
	res, err := m.begin(r.Context(), req)
	if err != nil {
		ev.Status, ev.Err = m.beginFailed(w, r, req, err), err
		m.done(r.Context(), &ev, outcomeError, start)
		return
	}
	res = earlier.Check(r.Context(), m.store, res, req, credential, asSent)
	switch res.Outcome {
	case engine.Proceed:
		m.st.proceeded.Add(1)
		if res.Recovered {
			m.st.recovered.Add(1)
		}
		ev.Attempt, ev.Recovered = res.Claim.Attempt(), res.Recovered
		ev.Status, ev.Recorded = m.run(next, w, r, req, res, body)
		m.done(r.Context(), &ev, outcomeProceed, start)
	case engine.Replay:
		m.replayed(w, r, &ev, res.Record, start)
	case engine.Conflict:
		if rec := m.storedBeforeContentType(r, req, res, body); rec != nil {
			m.replayed(w, r, &ev, rec, start)
			return
		}
		m.st.conflicts.Add(1)
		m.problem(w, req.RequestID, m.c.ConflictStatus, CodeConflict,
			"this idempotency key was already used with a different request; use a new key for a new request",
			map[string]string{"conflicts_with": res.OriginalRequestID})
		ev.Status, ev.OriginalRequestID = m.c.ConflictStatus, res.OriginalRequestID
		m.done(r.Context(), &ev, outcomeConflict, start)
	case engine.InProgress:
		m.st.inProgress.Add(1)
		m.inProgress(w, req.RequestID, res.OriginalRequestID)
		ev.Status, ev.OriginalRequestID = http.StatusConflict, res.OriginalRequestID
		m.done(r.Context(), &ev, outcomeInProgress, start)
	default:
		err := errors.New("idemhttp: store gave no answer")
		ev.Status, ev.Err = m.beginFailed(w, r, req, err), err
		m.done(r.Context(), &ev, outcomeError, start)
	}
}

// replayed sends a stored response and ends the request as a replay.
func (m *Middleware) replayed(w http.ResponseWriter, r *http.Request, ev *Event, rec *record.Record, start time.Time) {
	m.st.replayed.Add(1)
	m.replay(w, rec)
	ev.Status, ev.OriginalRequestID, ev.Attempt = rec.Status, rec.RequestID, rec.Attempt
	m.done(r.Context(), ev, outcomeReplay, start)
}

// statusWriter notes the status a handler run without idempotency sends,
// for Event.Status.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush and Hijack keep what the writer below offers (a handler that
// type-asserts http.Flusher or http.Hijacker still finds them).
func (s *statusWriter) Flush() {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(s.ResponseWriter).Hijack()
}

func (s *statusWriter) sent() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

// begin asks the store, bounding a wait for a running duplicate by
// WaitTimeout, or not waiting at all under RejectInProgress. A duplicate
// waits only if the waiter limits let it (MaxWaiters, MaxWaitersPerKey:
// the store asks m's gate), and is otherwise answered InProgress at once.
func (m *Middleware) begin(ctx context.Context, req engine.Request) (engine.Result, error) {
	if m.c.WhenInProgress == RejectInProgress {
		req.WhenInProgress = engine.NoWait
		return m.store.Begin(ctx, req)
	}
	req.Gate = &m.waiters
	ctx, cancel := context.WithTimeout(ctx, m.c.WaitTimeout)
	defer cancel()
	return m.store.Begin(ctx, req)
}

// readBody reads r's body into buf, holding (in *held) the bytes of the
// memory budget that buf takes (see limits.go): a body of known length
// reserves them before it is read. It returns a status and a message for
// the client when the body cannot be used: 503 when the budget cannot
// take it.
func (m *Middleware) readBody(r *http.Request, buf *bytes.Buffer, held *int64) (int, string) {
	limit := m.c.MaxRequestBody
	tooLarge := "the request body is larger than " + strconv.FormatInt(limit, 10) + " bytes"
	const overloaded = "the server holds as many request bodies as it may (MaxBufferedBytes); retry later"
	if r.ContentLength > limit {
		return http.StatusRequestEntityTooLarge, tooLarge
	}
	if r.Body == nil || r.Body == http.NoBody {
		return 0, ""
	}
	var err error
	if r.ContentLength >= 0 {
		// A known length: reserve it (and room for the end of the read)
		// before the buffer grows, then what the buffer took. net/http
		// delivers no more than the length, so the read does not grow
		// the buffer again.
		want := max(r.ContentLength+bytes.MinRead, int64(buf.Cap()))
		if !m.budget.take(want) {
			discard(r.Body, limit)
			return http.StatusServiceUnavailable, overloaded
		}
		*held = want
		buf.Grow(int(r.ContentLength + bytes.MinRead))
		if c := int64(buf.Cap()); c > *held {
			if !m.budget.take(c - *held) {
				discard(r.Body, limit)
				return http.StatusServiceUnavailable, overloaded
			}
			*held = c
		}
		_, err = buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	} else {
		// Chunked: reserved as the buffer grows. (The count lives here,
		// so that only chunked requests pay for the reader's pointer to
		// it.)
		h := *held
		_, err = buf.ReadFrom(budgetReader{r: io.LimitReader(r.Body, limit+1), buf: buf, b: &m.budget, held: &h})
		*held = h
	}
	switch {
	case errors.Is(err, errOverBudget):
		discard(r.Body, limit-int64(buf.Len()))
		return http.StatusServiceUnavailable, overloaded
	case int64(buf.Len()) > limit:
		return http.StatusRequestEntityTooLarge, tooLarge
	case err != nil:
		return http.StatusBadRequest, "the request body could not be read: " + err.Error()
	}
	return 0, ""
}

// discard reads and drops up to n bytes of a body that is refused, in
// small pieces (no memory held): a client still sending it would
// otherwise have its connection closed under it (the server closes a
// connection whose unread body is large) and see a broken pipe instead of
// the answer.
func discard(body io.Reader, n int64) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, n+1))
}

// fingerprint hashes the method, the endpoint, the request target as sent
// (path and query, so that two resources of one route never share a
// response, and a retry of a key spelled otherwise, /v1/charges/ for
// /v1/charges, conflicts rather than replays what may be another
// endpoint's response) and the body.
//
// The request's media type (Content-Type, normalised by mediaType) is
// hashed too, so that the same bytes sent as another type are another
// request. Records stored before it was (legacy) are still replayed: see
// storedBeforeContentType.
func (m *Middleware) fingerprint(r *http.Request, endpoint string, body []byte) record.Fingerprint {
	return m.fingerprintOf(r, endpoint, body, false)
}

func (m *Middleware) fingerprintOf(r *http.Request, endpoint string, body []byte, legacy bool) record.Fingerprint {
	h := record.NewHasher()
	h.FieldString(strings.ToUpper(r.Method))
	h.FieldString(endpoint)
	h.FieldString(r.URL.RequestURI())
	if !legacy {
		h.FieldString("type")
		h.FieldString(mediaType(r.Header.Get("Content-Type")))
	}
	if m.c.FingerprintBody != nil {
		h.FieldString("app")
		h.Write(m.c.FingerprintBody(r, body))
		return h.Sum()
	}
	if m.c.CanonicalJSON || m.c.exclude != nil {
		if cb, ok := canonicalJSONExcluding(body, m.c.exclude); ok {
			h.FieldString("json")
			h.Write(cb)
			return h.Sum()
		}
	}
	h.FieldString("raw")
	h.Write(body)
	return h.Sum()
}

// storedBeforeContentType returns the completed record to replay for a
// Conflict whose stored fingerprint is this request's fingerprint without
// its media type: a record stored by a version that did not hash the type
// (before 2026-12-05), whose retries must still replay for the record's
// TTL. A record stored since never matches it (its fingerprint hashes the
// type). Nil otherwise, or if the record cannot be read.
func (m *Middleware) storedBeforeContentType(r *http.Request, req engine.Request, res engine.Result, body []byte) *record.Record {
	legacy := m.fingerprintOf(r, req.Key.Endpoint, body, true)
	if res.Record == nil || res.Record.State != record.Completed || res.Record.Fingerprint != legacy {
		return nil
	}
	rec, err := m.store.Get(r.Context(), req.Key)
	if err != nil || rec == nil || rec.State != record.Completed || rec.Fingerprint != legacy {
		return nil
	}
	return rec
}

// mediaType normalises a Content-Type value for the fingerprint: the
// type and parameter names in lower case (as mime.ParseMediaType returns
// them), parameters sorted, a charset's value in lower case; a value that
// does not parse is trimmed and lower-cased.
func mediaType(v string) string {
	if !strings.Contains(v, ";") { // the common case, without allocating
		v = strings.TrimSpace(v)
		if strings.IndexFunc(v, func(c rune) bool { return 'A' <= c && c <= 'Z' }) >= 0 {
			v = strings.ToLower(v)
		}
		return v
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(v))
	}
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(mt)
	for _, k := range names {
		val := params[k]
		if k == "charset" {
			val = strings.ToLower(val)
		}
		b.WriteString("; " + k + "=" + strconv.Quote(val))
	}
	return b.String()
}

// beginFailed answers a request whose Begin failed. The handler never runs
// unprotected.
func (m *Middleware) beginFailed(w http.ResponseWriter, r *http.Request, req engine.Request, err error) (status int) {
	switch {
	case r.Context().Err() != nil:
		// The client is gone (or the server is shutting down); no one
		// reads an answer.
		m.st.canceled.Add(1)
		m.problem(w, req.RequestID, http.StatusServiceUnavailable, CodeUnavailable, "the request was canceled", nil)
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		m.st.inProgress.Add(1)
		m.inProgress(w, req.RequestID, "")
		return http.StatusConflict
	case errors.Is(err, engine.ErrInvalidKey):
		m.st.badRequests.Add(1)
		m.problem(w, req.RequestID, http.StatusBadRequest, CodeKeyInvalid, err.Error(), nil)
		return http.StatusBadRequest
	case errors.Is(err, engine.ErrCorrupt):
		m.st.storeErrors.Add(1)
		m.c.Logger.Error("idemhttp: stored record is damaged; it will not be replayed",
			"endpoint", req.Key.Endpoint, "key", req.Key.Key, "err", err)
		m.problem(w, req.RequestID, http.StatusInternalServerError, CodeRecordDamaged,
			"the stored response for this idempotency key is damaged and cannot be replayed", nil)
		return http.StatusInternalServerError
	default:
		m.st.storeErrors.Add(1)
		m.c.Logger.Error("idemhttp: idempotency store failed", "endpoint", req.Key.Endpoint, "err", err)
		w.Header().Set(headerRetry, m.c.retry)
		m.problem(w, req.RequestID, http.StatusServiceUnavailable, CodeUnavailable,
			"the idempotency store is unavailable; retry later with the same key", nil)
		return http.StatusServiceUnavailable
	}
}

func (m *Middleware) inProgress(w http.ResponseWriter, reqID, original string) {
	w.Header().Set(headerRetry, m.c.retry)
	var fields map[string]string
	if original != "" {
		fields = map[string]string{"request_in_progress": original}
	}
	m.problem(w, reqID, http.StatusConflict, CodeInProgress,
		"a request with this idempotency key is still being processed; retry later with the same key", fields)
}

// replay writes a stored response: its status, its stored headers and
// its body, byte for byte.
func (m *Middleware) replay(w http.ResponseWriter, rec *record.Record) {
	h := w.Header()
	for _, hd := range rec.Header {
		h.Del(hd.Name)
	}
	for _, hd := range rec.Header {
		h.Add(hd.Name, hd.Value)
	}
	h.Set(headerReplay, "true")
	if !m.c.OmitIdempotentReplayed {
		h.Set(headerReplayed, "true")
	}
	if bodyAllowed(rec.Status) {
		h.Set("Content-Length", strconv.Itoa(len(rec.Body)))
		if _, typed := h["Content-Type"]; !typed && len(rec.Body) > 0 {
			// The original had no Content-Type (the handler suppressed
			// sniffing, or the body was content-encoded): neither has the
			// replay.
			h["Content-Type"] = nil
		}
	}
	w.WriteHeader(rec.Status)
	w.Write(rec.Body)
}

// run runs the handler for a claimed request and records its response.
func (m *Middleware) run(next http.Handler, w http.ResponseWriter, r *http.Request, req engine.Request, res engine.Result, body []byte) (status int, recorded bool) {
	claim := res.Claim
	call := &Call{Key: req.Key, RequestID: req.RequestID, Attempt: claim.Attempt(), Recovered: res.Recovered, Interrupted: res.Record, claim: claim}
	r2 := r.WithContext(context.WithValue(r.Context(), callKey{}, call))
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.ContentLength = int64(len(body))
	r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }

	h := w.Header()
	h.Set(m.c.RequestIDHeader, req.RequestID)
	h.Set(headerReplay, "false")
	rec := &recorder{w: w, m: m, claim: claim, call: call, reqID: req.RequestID, buf: getBuffer()}
	defer putBuffer(rec.buf)
	// Whatever way the handler ends — returns, panics, runtime.Goexit —
	// a claim that was not recorded is released once it has ended, so a
	// retry runs again; a panic goes on with its own stack (net/http logs
	// it, or aborts the response for http.ErrAbortHandler).
	defer rec.releaseUnlessDone()
	next.ServeHTTP(rec, r2)
	rec.finish()
	return rec.sent(), rec.recorded
}

// release gives up claim on a context that a client disconnect cannot
// cancel.
func (m *Middleware) release(claim *engine.Claim, why string) {
	m.st.released.Add(1)
	err := claim.Release(context.Background())
	if err != nil && !errors.Is(err, engine.ErrClaimDone) {
		m.c.Logger.Warn("idemhttp: releasing a claim failed", "key", claim.Key().Key, "why", why, "err", err)
	}
}

// complete records a response, or releases the claim if it cannot be
// recorded. The response is sent whatever happens: the handler ran, and
// hiding its outcome would be worse than a retry that cannot replay it.
func (m *Middleware) complete(claim *engine.Claim, status int, h http.Header, body []byte) (recorded bool) {
	resp := m.response(claim, status, h, body)
	// The record must be durable before the response goes out, whether
	// or not the client is still there.
	err := claim.Complete(context.Background(), resp)
	if err == nil {
		m.st.recorded.Add(1)
		return true
	}
	m.st.completeErrors.Add(1)
	m.c.Logger.Error("idemhttp: recording a response failed; a retry will not replay it",
		"endpoint", claim.Key().Endpoint, "key", claim.Key().Key, "status", status, "err", err)
	m.release(claim, "recording failed")
	return false
}

// response is what the middleware stores of a handler's response.
func (m *Middleware) response(claim *engine.Claim, status int, h http.Header, body []byte) engine.Response {
	resp := engine.Response{Status: status, Body: body, RequestID: h.Get(m.c.RequestIDHeader), TTL: m.c.ttl[claim.Key().Endpoint]}
	for _, name := range m.c.stored {
		for _, v := range h[name] {
			resp.Header = append(resp.Header, record.Header{Name: name, Value: v})
		}
	}
	if len(resp.RequestID) > record.MaxRequestIDLen {
		resp.RequestID = ""
	}
	return resp
}

// bodyAllowed reports whether a response with status may have a body.
func bodyAllowed(status int) bool {
	switch {
	case status >= 100 && status <= 199, status == 204, status == 304:
		return false
	}
	return true
}

// Call describes the claimed request a handler is running, for handlers
// that need to know (see FromContext).
type Call struct {
	Key       record.Key
	RequestID string // the id idemkv generated for this request
	Attempt   uint32 // 1, or more after an interrupted attempt
	// Recovered is set when an earlier attempt with this key was
	// interrupted (a crash, or an expired lease): the handler may have
	// partly run before. Interrupted is that attempt's record.
	Recovered   bool
	Interrupted *record.Record

	claim *engine.Claim
	tx    Transaction // handed over (HandOver); nil once ended
}

type callKey struct{}

// Checkpoint records a recovery point for the request whose context ctx
// is (see engine.Claim.Checkpoint): phase names the step of the handler
// that has just happened, data what the rest of the handler needs to know
// about it. If the process dies later, the retry that recovers the key
// finds the last point with LastCheckpoint and can skip the steps that
// already happened instead of running them twice:
//
//	if phase, data, ok := idemhttp.LastCheckpoint(r.Context()); ok && phase == "charged" {
//		chargeID = string(data) // charged before the crash: do not charge again
//	} else {
//		chargeID = charge(...)
//		if err := idemhttp.Checkpoint(r.Context(), "charged", []byte(chargeID)); err != nil { ... }
//	}
//
// Record the point right after the step's side effect: a crash between
// the two runs the step again, so a step that must never repeat also
// needs its own idempotency (a provider's idempotency key derived from the
// request's, a unique constraint). It returns ErrNoClaim for a request
// without a claim, and the engine's errors (ErrLeaseLost, ErrTooLarge,
// ErrStorage, ...) otherwise. The point is recorded even if the client
// has gone (ctx cancelled): the side effect happened all the same.
func Checkpoint(ctx context.Context, phase string, data []byte) error {
	c, ok := FromContext(ctx)
	if !ok || c.claim == nil {
		return ErrNoClaim
	}
	return c.claim.Checkpoint(context.WithoutCancel(ctx), phase, data)
}

// LastCheckpoint returns the last recovery point of the request whose
// context ctx is: the one its handler recorded, or else the one of the
// interrupted attempt it recovers. ok is false if there is none. data is
// read-only.
func LastCheckpoint(ctx context.Context) (phase string, data []byte, ok bool) {
	c, found := FromContext(ctx)
	if !found || c.claim == nil {
		return "", nil, false
	}
	cp := c.claim.LastCheckpoint()
	if cp == nil {
		return "", nil, false
	}
	return cp.Phase, cp.Data, true
}

// FromContext returns the Call of a request the middleware let through
// to the handler with a claim; ok is false for any other request.
func FromContext(ctx context.Context) (c *Call, ok bool) {
	c, ok = ctx.Value(callKey{}).(*Call)
	return c, ok
}

// newRequestID returns "req_" and 24 random hex digits.
func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	var s [4 + 24]byte
	copy(s[:], "req_")
	hex.Encode(s[4:], b[:])
	return string(s[:])
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuffer() *bytes.Buffer { return bufPool.Get().(*bytes.Buffer) }

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > 256<<10 {
		return
	}
	b.Reset()
	bufPool.Put(b)
}
