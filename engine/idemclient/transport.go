package idemclient

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/idemkv/idemkv/engine/internal/retry"
)

// Defaults of the Transport fields left zero.
const (
	DefaultHeader          = "Idempotency-Key"
	DefaultMaxTries        = 4
	DefaultBaseDelay       = 100 * time.Millisecond
	DefaultMaxDelay        = 5 * time.Second
	DefaultMaxRetryAfter   = 30 * time.Second
	DefaultMaxBufferedBody = 8 << 20 // bytes
)

const (
	// maxProblemBody is the most of a 409's body read to find its code; a
	// larger body is not the middleware's problem, and is not retried.
	maxProblemBody = 16 << 10
	// maxDrain is the most of a retried response's body read before it is
	// closed, so that a small body leaves its connection reusable.
	maxDrain = 64 << 10
	// codeInProgress is the problem code of a 409 that is worth retrying:
	// the first request with the key is still running.
	codeInProgress = "idempotency_request_in_progress"
	problemJSON    = "application/problem+json"
)

// defaultMethods are the methods a Transport keys and retries by default.
var defaultMethods = []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// Transport is an http.RoundTripper that gives each unsafe request an
// idempotency key and retries it with that key; see the package doc for
// what is retried and how.
//
// The zero value is ready to use: every field left zero takes its default.
// A Transport is safe for concurrent use; its fields must not be changed
// once it is in use.
type Transport struct {
	// Base sends each try. Default http.DefaultTransport.
	Base http.RoundTripper

	// Header is the request header that carries the key. Default
	// "Idempotency-Key". A request that already has this header,
	// Idempotency-Key or X-Idempotency-Key keeps the key it has.
	Header string

	// NewKey returns a fresh key for a request that has none. Default: a
	// random (version 4) UUID from crypto/rand, such as
	// "0b7e1f5c-3c1a-4d6e-9f2a-5b8c7d6e4f3a".
	NewKey func() string

	// Methods are the request methods that get a key and are retried.
	// Default (nil or empty) POST, PUT, PATCH and DELETE. Requests of
	// other methods go to Base untouched.
	Methods []string

	// MaxTries is the most times a request is sent, the first time
	// included. Default 4; 1 sends each request once, with its key.
	MaxTries int

	// BaseDelay and MaxDelay bound the backoff: the wait before retry n+1
	// (n from 0) is random in [0, min(MaxDelay, BaseDelay×2ⁿ)]. Defaults
	// 100ms and 5s. A negative BaseDelay means no wait at all. A
	// Retry-After on the response replaces the backoff.
	BaseDelay, MaxDelay time.Duration

	// MaxRetryAfter is the longest Retry-After waited out. A response
	// asking for a longer wait is returned to the caller at once. Default
	// 30s.
	MaxRetryAfter time.Duration

	// MaxBufferedBody is the largest request body, in bytes, read into
	// memory so that it can be sent again, for a request whose GetBody is
	// nil. A larger body is sent once and never retried. Default 8 MiB; a
	// negative value buffers nothing, so that only requests without a
	// body or with GetBody are retried.
	MaxBufferedBody int64

	// OnRetry, if set, is called before each wait for a retry, for
	// logging or metrics: try is the number of the try that failed (1 for
	// the first), resp its response (its body closed; status and headers
	// may be read) or err its transport error, and delay the wait before
	// the next try. It is called on the request's goroutine and must not
	// keep resp.
	OnRetry func(try int, resp *http.Response, err error, delay time.Duration)
}

// config is a Transport's fields with the defaults filled in.
type config struct {
	base                          http.RoundTripper
	header                        string
	newKey                        func() string
	maxTries                      int
	baseDelay, maxDelay, maxAfter time.Duration
	maxBuffered                   int64
	onRetry                       func(int, *http.Response, error, time.Duration)
}

func (t *Transport) config() config {
	c := config{
		base: t.Base, header: t.Header, newKey: t.NewKey, maxTries: t.MaxTries,
		baseDelay: t.BaseDelay, maxDelay: t.MaxDelay, maxAfter: t.MaxRetryAfter,
		maxBuffered: t.MaxBufferedBody, onRetry: t.OnRetry,
	}
	if c.base == nil {
		c.base = http.DefaultTransport
	}
	if c.header == "" {
		c.header = DefaultHeader
	}
	c.header = http.CanonicalHeaderKey(c.header)
	if c.newKey == nil {
		c.newKey = newUUID
	}
	if c.maxTries <= 0 {
		c.maxTries = DefaultMaxTries
	}
	if c.baseDelay == 0 {
		c.baseDelay = DefaultBaseDelay
	}
	if c.maxDelay <= 0 {
		c.maxDelay = DefaultMaxDelay
	}
	if c.maxAfter <= 0 {
		c.maxAfter = DefaultMaxRetryAfter
	}
	if c.maxBuffered == 0 {
		c.maxBuffered = DefaultMaxBufferedBody
	}
	return c
}

func (t *Transport) selects(method string) bool {
	if len(t.Methods) == 0 {
		return slices.Contains(defaultMethods, method)
	}
	return slices.Contains(t.Methods, method)
}

// RoundTrip sends req, with a key and retries if its method is one of
// Methods, else straight through Base. It implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.selects(req.Method) {
		if t.Base == nil {
			return http.DefaultTransport.RoundTrip(req)
		}
		return t.Base.RoundTrip(req)
	}
	c := t.config()
	ctx := req.Context()
	r := req.Clone(ctx) // shares req.Body, which the first try consumes
	if r.Header == nil {
		r.Header = make(http.Header)
	}
	if !hasKey(r.Header, c.header) {
		r.Header.Set(c.header, c.newKey())
	}
	once, err := prepareBody(r, c.maxBuffered)
	if err != nil {
		return nil, err
	}
	for try := 1; ; try++ {
		tr := r
		if try > 1 {
			if tr, err = rewound(r); err != nil {
				return nil, err
			}
		}
		resp, err := c.base.RoundTrip(tr)
		last := once || try >= c.maxTries
		if err != nil {
			switch {
			case ctx.Err() != nil || once:
				return nil, err
			case last:
				return nil, exhausted(try, err)
			}
		} else if last || !retryable(resp) {
			return resp, nil
		}

		delay := backoff(c.baseDelay, c.maxDelay, try-1)
		if resp != nil {
			if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
				if d > c.maxAfter {
					return resp, nil
				}
				delay = d
			}
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay {
			if resp != nil {
				return resp, nil
			}
			return nil, exhausted(try, err)
		}
		if resp != nil {
			io.CopyN(io.Discard, resp.Body, maxDrain)
			resp.Body.Close()
		}
		if c.onRetry != nil {
			c.onRetry(try, resp, err, delay)
		}
		if err := sleep(ctx, delay); err != nil {
			return nil, fmt.Errorf("idemclient: waiting to retry after %s: %w", tries(try), err)
		}
	}
}

// CloseIdleConnections closes the idle connections of Base, if it has a
// CloseIdleConnections method; http.Client.CloseIdleConnections calls it.
func (t *Transport) CloseIdleConnections() {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if ci, ok := base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// hasKey reports whether h carries an idempotency key in header or one of
// the two standard names.
func hasKey(h http.Header, header string) bool {
	return len(h[header]) > 0 || len(h["Idempotency-Key"]) > 0 || len(h["X-Idempotency-Key"]) > 0
}

// prepareBody sets up r's body so that every try can have a fresh one:
// the first try sends r.Body, and each later try a body from r.GetBody. A
// body without GetBody is read into memory, unless it is larger than max;
// then once is true, and r.Body is sent a single time.
func prepareBody(r *http.Request, max int64) (once bool, err error) {
	switch {
	case r.Body == nil || r.Body == http.NoBody || r.GetBody != nil:
		return false, nil
	case max < 0 || r.ContentLength > max:
		return true, nil
	}
	orig := r.Body
	buf, err := io.ReadAll(io.LimitReader(orig, max+1))
	if err != nil {
		orig.Close()
		return false, fmt.Errorf("idemclient: reading request body: %w", err)
	}
	if int64(len(buf)) > max {
		// Too large: send what was read and the rest, once.
		r.Body = readCloser{io.MultiReader(bytes.NewReader(buf), orig), orig}
		return true, nil
	}
	orig.Close()
	if r.ContentLength <= 0 { // unknown; now it is known
		r.ContentLength = int64(len(buf))
	}
	if len(buf) == 0 {
		r.Body = http.NoBody
		r.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		return false, nil
	}
	r.GetBody = func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf)), nil
	}
	r.Body, _ = r.GetBody()
	return false, nil
}

// rewound returns a shallow copy of r with a fresh body for another try.
func rewound(r *http.Request) (*http.Request, error) {
	if r.GetBody == nil { // no body
		return r, nil
	}
	body, err := r.GetBody()
	if err != nil {
		return nil, fmt.Errorf("idemclient: rewinding request body: %w", err)
	}
	r2 := *r
	r2.Body = body
	return &r2, nil
}

// readCloser reads from one reader and closes another.
type readCloser struct {
	io.Reader
	io.Closer
}

// retryable reports whether resp is worth another try. For a 409 problem
// it reads the start of the body to find the code, and puts it back.
func retryable(resp *http.Response) bool {
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests:
		return true
	case s == http.StatusConflict:
		return inProgress(resp)
	case s >= 500 && s <= 599:
		return s != http.StatusNotImplemented && s != http.StatusHTTPVersionNotSupported
	}
	return false
}

// inProgress reports whether a 409 response is an RFC 9457 problem with
// code idempotency_request_in_progress. Whatever it reads of the body is
// put back in front of the rest, so resp stays whole.
func inProgress(resp *http.Response) bool {
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != problemJSON || resp.Body == nil {
		return false
	}
	orig := resp.Body
	buf, err := io.ReadAll(io.LimitReader(orig, maxProblemBody+1))
	resp.Body = readCloser{io.MultiReader(bytes.NewReader(buf), orig), orig}
	if err != nil || len(buf) > maxProblemBody {
		return false
	}
	var p struct {
		Code string `json:"code"`
	}
	return json.Unmarshal(buf, &p) == nil && p.Code == codeInProgress
}

// parseRetryAfter parses a Retry-After value, delta-seconds or an
// HTTP-date, into the wait it asks for from now. A date in the past is a
// wait of 0; a number of seconds too large for a Duration is the longest
// Duration. It returns false for anything else.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.Trim(v, " \t")
	if v == "" {
		return 0, false
	}
	if isDigits(v) {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs > int64(math.MaxInt64/time.Second) {
			return math.MaxInt64, true // err is only ever a range error
		}
		return time.Duration(secs) * time.Second, true
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(at.Sub(now), 0), true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// exhausted wraps the error of the last of n tries.
func exhausted(n int, err error) error {
	return fmt.Errorf("%w after %s: %w", ErrRetriesExhausted, tries(n), err)
}

func tries(n int) string {
	if n == 1 {
		return "1 try"
	}
	return strconv.Itoa(n) + " tries"
}

// The retry helpers this package shares with the gRPC client.
var (
	backoff = retry.Backoff
	sleep   = retry.Sleep
	newUUID = retry.NewUUID
)
