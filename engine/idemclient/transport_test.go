package idemclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// seen is one request as the test server received it.
type seen struct {
	method string
	header http.Header
	body   []byte
}

// step answers one try.
type step func(w http.ResponseWriter, r *http.Request)

// testServer answers its tries with steps in order, the last step
// repeating, and records every request.
type testServer struct {
	*httptest.Server
	mu    sync.Mutex
	reqs  []seen // mu guards reqs
	steps []step
	hit   chan struct{} // gets a value for each request, if not full
}

func newServer(t *testing.T, steps ...step) *testServer {
	t.Helper()
	s := &testServer{steps: steps, hit: make(chan struct{}, 64)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("server: reading body: %v", err)
		}
		s.mu.Lock()
		s.reqs = append(s.reqs, seen{r.Method, r.Header.Clone(), b})
		n := len(s.reqs)
		s.mu.Unlock()
		select {
		case s.hit <- struct{}{}:
		default:
		}
		s.steps[min(n, len(s.steps))-1](w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *testServer) requests() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.reqs...)
}

// transport returns a Transport to s with tiny backoff delays.
func (s *testServer) transport() *Transport {
	return &Transport{Base: s.Client().Transport, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}
}

func status(code int, body string) step {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

func retryAfter(code int, after string) step {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", after)
		w.WriteHeader(code)
		io.WriteString(w, "later")
	}
}

func problem(code int, pcode, contentType string) step {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"type":"about:blank","title":%q,"status":%d,"code":%q}`, http.StatusText(code), code, pcode)
	}
}

// drop closes the connection without an answer.
func drop(w http.ResponseWriter, r *http.Request) {
	c, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	c.Close()
}

var ok = status(http.StatusCreated, "created")

func post(t *testing.T, tr http.RoundTripper, url string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, tr, req)
}

func do(t *testing.T, tr http.RoundTripper, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading response body: %v", err)
	}
	return resp, b
}

// sameKey checks that every request carries one key and returns it.
func sameKey(t *testing.T, reqs []seen, header string) string {
	t.Helper()
	if len(reqs) == 0 {
		t.Fatal("no requests")
	}
	key := reqs[0].header.Get(header)
	for i, r := range reqs {
		if got := r.header.Values(header); len(got) != 1 || got[0] != key || key == "" {
			t.Fatalf("try %d: %s = %q; want one, the first try's %q", i+1, header, got, key)
		}
	}
	return key
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestRetriesWithSameKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		steps     []step
		maxTries  int
		wantTries int
		wantCode  int
		wantBody  string
	}{
		{"first try", []step{ok}, 0, 1, 201, "created"},
		{"503", []step{status(503, "x"), ok}, 0, 2, 201, "created"},
		{"500", []step{status(500, "x"), ok}, 0, 2, 201, "created"},
		{"502 504", []step{status(502, "x"), status(504, "x"), ok}, 0, 3, 201, "created"},
		{"429", []step{status(429, "x"), ok}, 0, 2, 201, "created"},
		{"409 in progress", []step{problem(409, codeInProgress, problemJSON), ok}, 0, 2, 201, "created"},
		{"409 in progress, charset", []step{problem(409, codeInProgress, "application/problem+json; charset=utf-8"), ok}, 0, 2, 201, "created"},
		{"all of them", []step{status(503, "x"), status(500, "x"), status(429, "x"), problem(409, codeInProgress, problemJSON), ok}, 5, 5, 201, "created"},
		{"dropped connections", []step{drop, drop, ok}, 0, 3, 201, "created"},
		{"MaxTries 3", []step{status(503, "still down")}, 3, 3, 503, "still down"},
		{"MaxTries default", []step{status(500, "still down")}, 0, DefaultMaxTries, 500, "still down"},
		{"MaxTries 1", []step{status(503, "down")}, 1, 1, 503, "down"},
		{"last is in progress", []step{problem(409, codeInProgress, problemJSON)}, 2, 2, 409,
			`{"type":"about:blank","title":"Conflict","status":409,"code":"idempotency_request_in_progress"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, tt.steps...)
			tr := s.transport()
			tr.MaxTries = tt.maxTries
			retries := 0
			tr.OnRetry = func(try int, resp *http.Response, err error, delay time.Duration) {
				retries++
				if try != retries || (resp == nil) == (err == nil) || delay < 0 || delay > tr.MaxDelay {
					t.Errorf("OnRetry(%d, %v, %v, %v) on retry %d", try, resp, err, delay, retries)
				}
			}
			resp, body := post(t, tr, s.URL, strings.NewReader("payload"))
			if resp.StatusCode != tt.wantCode || string(body) != tt.wantBody {
				t.Errorf("got %d %q; want %d %q", resp.StatusCode, body, tt.wantCode, tt.wantBody)
			}
			reqs := s.requests()
			if len(reqs) != tt.wantTries || retries != tt.wantTries-1 {
				t.Fatalf("got %d tries, %d retries; want %d", len(reqs), retries, tt.wantTries)
			}
			if key := sameKey(t, reqs, "Idempotency-Key"); !uuidRE.MatchString(key) {
				t.Errorf("key %q is not a UUIDv4", key)
			}
			for i, r := range reqs {
				if string(r.body) != "payload" {
					t.Errorf("try %d: body %q; want %q", i+1, r.body, "payload")
				}
			}
		})
	}
}

func TestNoRetry(t *testing.T) {
	t.Parallel()
	big := `{"code":"` + codeInProgress + `","detail":"` + strings.Repeat("x", maxProblemBody) + `"}`
	tests := []struct {
		name string
		step step
	}{
		{"200", status(200, "fine")},
		{"404", status(404, "no such thing")},
		{"400", problem(400, "idempotency_key_invalid", problemJSON)},
		{"409 conflict", problem(409, "idempotency_conflict", problemJSON)},
		{"422 conflict", problem(422, "idempotency_conflict", problemJSON)},
		{"409 in progress, not a problem", problem(409, codeInProgress, "application/json")},
		{"409 no content type", status(409, `{"code":"idempotency_request_in_progress"}`)},
		{"409 problem, bad JSON", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", problemJSON)
			w.WriteHeader(409)
			io.WriteString(w, `{"code":"idempotency_request_in_progress"`)
		}},
		{"409 problem, too long", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", problemJSON)
			w.WriteHeader(409)
			io.WriteString(w, big)
		}},
		{"501", status(501, "not implemented")},
		{"505", status(505, "no such version")},
		{"Retry-After too long", retryAfter(503, "3600")},
		{"Retry-After date too far", retryAfter(429, time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, tt.step, ok)
			want := httptest.NewRecorder()
			tt.step(want, httptest.NewRequest("POST", "/", nil))
			tr := s.transport()
			tr.OnRetry = func(int, *http.Response, error, time.Duration) { t.Error("OnRetry called") }
			resp, body := post(t, tr, s.URL, strings.NewReader("payload"))
			if resp.StatusCode != want.Code || !bytes.Equal(body, want.Body.Bytes()) {
				t.Errorf("got %d %.80q (%d bytes); want %d %.80q (%d bytes)",
					resp.StatusCode, body, len(body), want.Code, want.Body.Bytes(), want.Body.Len())
			}
			if n := len(s.requests()); n != 1 {
				t.Errorf("got %d tries; want 1", n)
			}
		})
	}
}

func TestCallerKeyKept(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		header     string // Transport.Header
		set        http.Header
		wantHeader string
		wantKey    string
		absent     string // a header that must not be sent
	}{
		{"Idempotency-Key", "", http.Header{"Idempotency-Key": {"order-1"}}, "Idempotency-Key", "order-1", ""},
		{"X-Idempotency-Key", "", http.Header{"X-Idempotency-Key": {"order-2"}}, "X-Idempotency-Key", "order-2", "Idempotency-Key"},
		{"custom header", "x-request-key", http.Header{"X-Request-Key": {"order-3"}}, "X-Request-Key", "order-3", "Idempotency-Key"},
		{"custom header, standard key", "X-Request-Key", http.Header{"Idempotency-Key": {"order-4"}}, "Idempotency-Key", "order-4", "X-Request-Key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, status(503, ""), ok)
			tr := s.transport()
			tr.Header = tt.header
			tr.NewKey = func() string { t.Error("NewKey called"); return "new" }
			req, _ := http.NewRequest("PUT", s.URL, strings.NewReader("x"))
			req.Header = tt.set
			resp, _ := do(t, tr, req)
			reqs := s.requests()
			if resp.StatusCode != 201 || len(reqs) != 2 {
				t.Fatalf("got %d after %d tries; want 201 after 2", resp.StatusCode, len(reqs))
			}
			if key := sameKey(t, reqs, tt.wantHeader); key != tt.wantKey {
				t.Errorf("got key %q; want %q", key, tt.wantKey)
			}
			if tt.absent != "" && reqs[0].header.Get(tt.absent) != "" {
				t.Errorf("%s = %q sent; want none", tt.absent, reqs[0].header.Get(tt.absent))
			}
		})
	}
}

func TestCustomHeaderAndNewKey(t *testing.T) {
	t.Parallel()
	s := newServer(t, status(500, ""), ok)
	tr := s.transport()
	tr.Header = "x-my-key"
	tr.NewKey = func() string { return "k-1" }
	post(t, tr, s.URL, nil)
	reqs := s.requests()
	if key := sameKey(t, reqs, "X-My-Key"); key != "k-1" || len(reqs) != 2 {
		t.Errorf("got key %q after %d tries; want k-1 after 2", key, len(reqs))
	}
	if k := reqs[0].header.Get("Idempotency-Key"); k != "" {
		t.Errorf("Idempotency-Key %q sent; want none", k)
	}
}

func TestOtherMethodsUntouched(t *testing.T) {
	t.Parallel()
	tests := []struct {
		method  string
		methods []string
	}{
		{"GET", nil}, {"HEAD", nil}, {"OPTIONS", nil}, {"", nil}, {"PUT", []string{"POST"}},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, status(503, "down"), ok)
			tr := s.transport()
			tr.Methods = tt.methods
			req, _ := http.NewRequest(tt.method, s.URL, nil)
			resp, _ := do(t, tr, req)
			reqs := s.requests()
			if resp.StatusCode != 503 || len(reqs) != 1 {
				t.Fatalf("got %d after %d tries; want 503 after 1", resp.StatusCode, len(reqs))
			}
			if k := reqs[0].header.Get("Idempotency-Key"); k != "" {
				t.Errorf("got key %q; want none", k)
			}
		})
	}
	t.Run("selected by Methods", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, status(503, "down"), ok)
		tr := s.transport()
		tr.Methods = []string{"GET"}
		req, _ := http.NewRequest("GET", s.URL, nil)
		if resp, _ := do(t, tr, req); resp.StatusCode != 201 {
			t.Fatalf("got %d; want 201", resp.StatusCode)
		}
		sameKey(t, s.requests(), "Idempotency-Key")
	})
}

// closeTracker is a request body without GetBody that records its Close.
type closeTracker struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeTracker) Close() error { c.closed.Store(true); return nil }

func TestBodyRewound(t *testing.T) {
	t.Parallel()
	large := make([]byte, 3<<20+17)
	rand.Read(large)
	type bodyCase struct {
		name    string
		body    []byte
		getBody bool
		length  int64 // ContentLength to set when getBody is false; 0 unknown
		nilBody bool
	}
	tests := []bodyCase{
		{name: "nil body", nilBody: true},
		{name: "NoBody"},
		{name: "small, GetBody", body: []byte("hello"), getBody: true},
		{name: "small, no GetBody", body: []byte("hello")},
		{name: "small, no GetBody, length known", body: []byte("hello"), length: 5},
		{name: "empty, GetBody", body: []byte{}, getBody: true},
		{name: "empty, no GetBody", body: []byte{}},
		{name: "large, GetBody", body: large, getBody: true},
		{name: "large, no GetBody", body: large},
		{name: "large, no GetBody, length known", body: large, length: int64(len(large))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, status(503, ""), drop, status(429, ""), ok)
			var req *http.Request
			var tracker *closeTracker
			switch {
			case tt.nilBody:
				req, _ = http.NewRequest("POST", s.URL, nil)
				req.Body = nil
			case tt.body == nil:
				req, _ = http.NewRequest("POST", s.URL, http.NoBody)
			case tt.getBody:
				req, _ = http.NewRequest("POST", s.URL, bytes.NewReader(tt.body))
			default:
				tracker = &closeTracker{Reader: bytes.NewReader(tt.body)}
				req, _ = http.NewRequest("POST", s.URL, tracker)
				req.ContentLength = tt.length
			}
			orig := *req
			resp, err := s.transport().RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			reqs := s.requests()
			if resp.StatusCode != 201 || len(reqs) != 4 {
				t.Fatalf("got %d after %d tries; want 201 after 4", resp.StatusCode, len(reqs))
			}
			sameKey(t, reqs, "Idempotency-Key")
			for i, r := range reqs {
				if !bytes.Equal(r.body, tt.body) {
					t.Errorf("try %d: got %d bytes of body; want the %d sent", i+1, len(r.body), len(tt.body))
				}
			}
			if tracker != nil && !tracker.closed.Load() {
				t.Error("the caller's body was not closed")
			}
			// The caller's request is as it was.
			if len(req.Header) != 0 || req.ContentLength != orig.ContentLength || req.Body != orig.Body ||
				(req.GetBody == nil) != (orig.GetBody == nil) {
				t.Errorf("request changed: header %v, ContentLength %d, GetBody set %v",
					req.Header, req.ContentLength, req.GetBody != nil)
			}
		})
	}
}

func TestBodyTooLargeToBuffer(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	tests := []struct {
		name      string
		getBody   bool
		length    int64
		max       int64
		wantTries int
	}{
		{"unknown length", false, 0, 1024, 1},
		{"unknown length, chunked", false, -1, 1024, 1},
		{"known length", false, int64(len(body)), 1024, 1},
		{"no buffering", false, 0, -1, 1},
		{"fits exactly", false, 0, int64(len(body)), 3},
		{"GetBody", true, int64(len(body)), 1024, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, status(503, "a"), status(503, "b"), status(503, "c"))
			tr := s.transport()
			tr.MaxTries = 3
			tr.MaxBufferedBody = tt.max
			var req *http.Request
			tracker := &closeTracker{Reader: bytes.NewReader(body)}
			if tt.getBody {
				req, _ = http.NewRequest("POST", s.URL, bytes.NewReader(body))
			} else {
				req, _ = http.NewRequest("POST", s.URL, tracker)
				req.ContentLength = tt.length
			}
			resp, got := do(t, tr, req)
			reqs := s.requests()
			if want := string(rune('a' + tt.wantTries - 1)); resp.StatusCode != 503 || string(got) != want {
				t.Errorf("got %d %q; want 503 %q", resp.StatusCode, got, want)
			}
			if len(reqs) != tt.wantTries {
				t.Fatalf("got %d tries; want %d", len(reqs), tt.wantTries)
			}
			sameKey(t, reqs, "Idempotency-Key")
			for i, r := range reqs {
				if !bytes.Equal(r.body, body) {
					t.Errorf("try %d: got %d bytes of body; want the %d sent", i+1, len(r.body), len(body))
				}
			}
			if !tt.getBody && !tracker.closed.Load() {
				t.Error("the caller's body was not closed")
			}
		})
	}
}

func TestGetBodyError(t *testing.T) {
	t.Parallel()
	s := newServer(t, status(503, ""), ok)
	req, _ := http.NewRequest("POST", s.URL, strings.NewReader("x"))
	errRewind := errors.New("cannot rewind")
	req.GetBody = func() (io.ReadCloser, error) { return nil, errRewind }
	_, err := s.transport().RoundTrip(req)
	if !errors.Is(err, errRewind) || len(s.requests()) != 1 {
		t.Errorf("got %v after %d tries; want %v after 1", err, len(s.requests()), errRewind)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		value func() string
		want  func(time.Duration) bool
	}{
		{"seconds", func() string { return "1" }, func(d time.Duration) bool { return d == time.Second }},
		{"date", func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) },
			func(d time.Duration) bool { return d > 0 && d <= 2*time.Second }},
		{"zero", func() string { return "0" }, func(d time.Duration) bool { return d == 0 }},
		{"date in the past", func() string { return "Sun, 06 Nov 1994 08:49:37 GMT" }, func(d time.Duration) bool { return d == 0 }},
		{"garbage ignored", func() string { return "soon" }, func(d time.Duration) bool { return d <= 2*time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				retryAfter(503, tt.value())(w, r)
			}, ok)
			tr := s.transport()
			tr.BaseDelay, tr.MaxDelay = time.Hour, time.Hour // a backoff would not end in time
			if tt.name == "garbage ignored" {
				tr.BaseDelay = time.Millisecond
			}
			var delay time.Duration
			tr.OnRetry = func(_ int, resp *http.Response, _ error, d time.Duration) { delay = d }
			start := time.Now()
			resp, _ := post(t, tr, s.URL, nil)
			elapsed := time.Since(start)
			if resp.StatusCode != 201 || len(s.requests()) != 2 {
				t.Fatalf("got %d after %d tries; want 201 after 2", resp.StatusCode, len(s.requests()))
			}
			if !tt.want(delay) || elapsed < delay {
				t.Errorf("waited %v (%v in all) for Retry-After %q", delay, elapsed, tt.value())
			}
		})
	}
}

func TestContextDone(t *testing.T) {
	t.Parallel()
	t.Run("canceled while waiting", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, retryAfter(503, "10"), ok)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			<-s.hit
			time.Sleep(20 * time.Millisecond)
			cancel()
		}()
		req, _ := http.NewRequestWithContext(ctx, "POST", s.URL, strings.NewReader("x"))
		start := time.Now()
		resp, err := (&http.Client{Transport: s.transport()}).Do(req)
		if resp != nil || !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, %v; want context.Canceled", resp, err)
		}
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Errorf("returned after %v; want at once", elapsed)
		}
		if n := len(s.requests()); n != 1 {
			t.Errorf("got %d tries; want 1", n)
		}
	})
	t.Run("canceled before", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, ok)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", s.URL, strings.NewReader("x"))
		_, err := s.transport().RoundTrip(req)
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrRetriesExhausted) {
			t.Errorf("got %v; want context.Canceled alone", err)
		}
	})
	t.Run("deadline before the wait ends", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, retryAfter(503, "10"), ok)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", s.URL, strings.NewReader("x"))
		resp, body := do(t, s.transport(), req)
		if resp.StatusCode != 503 || string(body) != "later" || len(s.requests()) != 1 {
			t.Errorf("got %d %q after %d tries; want the 503 after 1", resp.StatusCode, body, len(s.requests()))
		}
	})
}

func TestTransportErrors(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // connections are refused from now on
	retries := 0
	tr := &Transport{BaseDelay: time.Millisecond, MaxTries: 3,
		OnRetry: func(try int, resp *http.Response, err error, _ time.Duration) {
			retries++
			if resp != nil || err == nil {
				t.Errorf("OnRetry(%d, %v, %v)", try, resp, err)
			}
		}}
	req, _ := http.NewRequest("POST", url, strings.NewReader("x"))
	_, err = (&http.Client{Transport: tr}).Do(req)
	if !errors.Is(err, ErrRetriesExhausted) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("got %v; want ErrRetriesExhausted and ECONNREFUSED", err)
	}
	if opErr := new(net.OpError); !errors.As(err, &opErr) {
		t.Errorf("got %v; want a *net.OpError inside", err)
	}
	if !strings.Contains(fmt.Sprint(err), "after 3 tries") || retries != 2 {
		t.Errorf("got %v after %d retries; want 3 tries", err, retries)
	}

	t.Run("dropped every time", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, drop)
		tr := s.transport()
		tr.MaxTries = 2
		req, _ := http.NewRequest("POST", s.URL, strings.NewReader("x"))
		resp, err := tr.RoundTrip(req)
		if resp != nil || !errors.Is(err, ErrRetriesExhausted) || !strings.Contains(fmt.Sprint(err), "after 2 tries") {
			t.Errorf("got %v, %v; want ErrRetriesExhausted after 2 tries", resp, err)
		}
		if n := len(s.requests()); n != 2 {
			t.Errorf("got %d tries; want 2", n)
		}
	})
}

func TestConcurrentRequests(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	tries := map[string]int{} // key -> tries seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tries[r.Header.Get("Idempotency-Key")]++
		n := tries[r.Header.Get("Idempotency-Key")]
		mu.Unlock()
		if n == 1 {
			w.WriteHeader(503)
			return
		}
		io.Copy(w, r.Body)
	}))
	defer srv.Close()
	tr := &Transport{Base: srv.Client().Transport, BaseDelay: time.Millisecond}
	client := &http.Client{Transport: tr}
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			want := strconv.Itoa(i)
			resp, err := client.Post(srv.URL, "text/plain", strings.NewReader(want))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			if b, _ := io.ReadAll(resp.Body); string(b) != want {
				t.Errorf("got %q; want %q", b, want)
			}
		})
	}
	wg.Wait()
	if len(tries) != n {
		t.Errorf("got %d keys; want %d", len(tries), n)
	}
	for k, c := range tries {
		if c != 2 {
			t.Errorf("key %q: %d tries; want 2", k, c)
		}
	}
	client.CloseIdleConnections()
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		base, max time.Duration
		n         int
		want      time.Duration // upper bound
	}{
		{time.Millisecond, time.Second, 0, time.Millisecond},
		{time.Millisecond, time.Second, 3, 8 * time.Millisecond},
		{time.Millisecond, time.Second, 10, time.Second},
		{time.Millisecond, time.Second, 1000, time.Second},
		{time.Second, time.Millisecond, 0, time.Millisecond},
		{time.Hour, math.MaxInt64, 100, math.MaxInt64},
		{-1, time.Second, 5, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v_%v_%d", tt.base, tt.max, tt.n), func(t *testing.T) {
			var most time.Duration
			for range 1000 {
				d := backoff(tt.base, tt.max, tt.n)
				if d < 0 || d > tt.want {
					t.Fatalf("got %v; want in [0, %v]", d, tt.want)
				}
				most = max(most, d)
			}
			if most < tt.want/4 {
				t.Errorf("longest of 1000 waits %v; want near %v", most, tt.want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"0", 0, true},
		{"1", time.Second, true},
		{" 120\t", 2 * time.Minute, true},
		{"007", 7 * time.Second, true},
		{"9223372036", 9223372036 * time.Second, true},
		{"9223372037", math.MaxInt64, true},
		{"99999999999999999999999", math.MaxInt64, true},
		{"Fri, 02 Jan 2026 03:04:35 GMT", 30 * time.Second, true},
		{"Friday, 02-Jan-26 03:04:35 GMT", 30 * time.Second, true},
		{"Fri Jan  2 03:04:35 2026", 30 * time.Second, true},
		{"Fri, 02 Jan 2026 03:00:00 GMT", 0, true},
		{"", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"1.5", 0, false},
		{"1s", 0, false},
		{"1 2", 0, false},
		{"tomorrow", 0, false},
		{"2026-01-02T03:04:35Z", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := parseRetryAfter(tt.in, now)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("got %v, %v; want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestNewUUID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		k := newUUID()
		if !uuidRE.MatchString(k) || seen[k] {
			t.Fatalf("got %q (repeated: %v); want a fresh UUIDv4", k, seen[k])
		}
		seen[k] = true
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "1", "120", " 5 ", "-1", "1.5", "", "99999999999999999999",
		"Wed, 21 Oct 2015 07:28:00 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := parseRetryAfter(v, now)
		if !ok {
			if d != 0 {
				t.Fatalf("parseRetryAfter(%q) = %v, false; want 0", v, d)
			}
			return
		}
		if d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v; want >= 0", v, d)
		}
		if s := strings.Trim(v, " \t"); isDigits(s) {
			n, err := strconv.ParseInt(s, 10, 64)
			if err == nil && n <= 1<<32 && d != time.Duration(n)*time.Second {
				t.Fatalf("parseRetryAfter(%q) = %v; want %ds", v, d, n)
			}
		}
		if d%time.Second != 0 && d != math.MaxInt64 {
			t.Fatalf("parseRetryAfter(%q) = %v; want whole seconds", v, d)
		}
	})
}

// FuzzInProgress checks that looking into a 409 for its problem code
// never loses or changes a byte of its body.
func FuzzInProgress(f *testing.F) {
	f.Add(problemJSON, []byte(`{"code":"idempotency_request_in_progress"}`))
	f.Add(problemJSON+"; charset=utf-8", []byte(`{"code":"idempotency_conflict","status":409}`))
	f.Add("application/json", []byte(`{"code":"idempotency_request_in_progress"}`))
	f.Add(problemJSON, []byte(`{"code":`))
	f.Add(problemJSON, bytes.Repeat([]byte("a"), maxProblemBody+1))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		resp := &http.Response{StatusCode: 409, Header: http.Header{"Content-Type": {contentType}},
			Body: io.NopCloser(bytes.NewReader(body))}
		got := retryable(resp)
		b, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(b, body) {
			t.Fatalf("body after inspection: %q, %v; want %q", b, err, body)
		}
		var p struct{ Code string }
		want := len(body) <= maxProblemBody && json.Unmarshal(body, &p) == nil && p.Code == codeInProgress &&
			strings.HasPrefix(strings.ToLower(strings.TrimSpace(contentType)), problemJSON)
		if got && !want {
			t.Fatalf("retryable(%q, %q) = true; want false", contentType, body)
		}
	})
}
