// Package idemproxy is a reverse proxy that adds idemkv's idempotency
// contract in front of any HTTP API, whatever its language: the logic of
// the `idemkv proxy` sidecar.
//
// The upstream sees every request as the client sent it (the key headers
// included), with X-Forwarded-For, X-Forwarded-Host and X-Forwarded-Proto
// added, and, on a request with a claim, Idempotency-Attempt and (after an
// interrupted attempt) Idempotency-Recovered: true (HeaderAttempt,
// HeaderRecovered). Since the proxy does not know the upstream's routes, the endpoint
// of a key is the method and the URL path, unless the Middleware was given
// Options.Routes and a RoutePattern.
//
// Streaming: Go's reverse proxy flushes every write of a response of
// unknown length; for a request with a claim the proxy turns those flushes
// off so that such responses (chunked JSON, say) are recorded like any
// other. Only a text/event-stream response is streamed, and so never
// recorded. Requests without a claim (GET, no key) are proxied as they are.
//
// A request with a claim is not canceled at the upstream when its client
// disconnects (see Options.UpstreamTimeout): the response is recorded, and
// the client's retry gets it.
package idemproxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/idemkv/idemkv/engine/idemhttp"
)

// Request headers the proxy sets on a request with a claim, so that an
// upstream in any language can do what Go handlers do with
// idemhttp.FromContext. The proxy drops a client's copies of both.
const (
	// HeaderAttempt is the attempt number of the key: 1, or more after
	// interrupted attempts.
	HeaderAttempt = "Idempotency-Attempt"
	// HeaderRecovered is "true" when an earlier attempt with the key was
	// interrupted (the proxy or its host died, or its lease expired) while
	// the upstream handled it: the upstream may have performed part of
	// the side effect already and should reconcile (look the operation up
	// by its key) before doing it again. Absent otherwise.
	HeaderRecovered = "Idempotency-Recovered"
)

// Options configure a proxy. The zero value gives the defaults.
type Options struct {
	// Transport carries requests to the upstream. Default
	// http.DefaultTransport.
	Transport http.RoundTripper
	// Logger receives upstream errors. Default slog.Default().
	Logger *slog.Logger
	// UpstreamTimeout bounds a request with a claim at the upstream.
	// Such a request is not canceled when its client goes away: the
	// upstream may be performing the side effect, and its response must
	// be recorded for the retry. Default 2m.
	UpstreamTimeout time.Duration
}

// New returns a handler that sends every request to upstream (a URL such
// as http://127.0.0.1:3000, optionally with a base path), through m. A
// failure to reach the upstream answers 502 with a problem body; like any
// 5xx, it is not recorded, so a retry tries the upstream again.
func New(upstream *url.URL, m *idemhttp.Middleware, o *Options) http.Handler {
	if o == nil {
		o = &Options{}
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
			// Only the proxy says these; a client's copies are dropped.
			pr.Out.Header.Del(HeaderRecovered)
			pr.Out.Header.Del(HeaderAttempt)
			if call, ok := idemhttp.FromContext(pr.In.Context()); ok {
				pr.Out.Header.Set(HeaderAttempt, strconv.FormatUint(uint64(call.Attempt), 10))
				if call.Recovered {
					pr.Out.Header.Set(HeaderRecovered, "true")
				}
			}
		},
		Transport: o.Transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			logger.Warn("idemproxy: upstream failed", "method", r.Method, "path", r.URL.Path, "err", err)
			writeBadGateway(w)
		},
	}
	timeout := o.UpstreamTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	return m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, claimed := idemhttp.FromContext(r.Context()); !claimed {
			// Not recorded: stream as the upstream does, and stop when
			// the client goes.
			rp.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), timeout)
		defer cancel()
		rp.ServeHTTP(&noFlush{ResponseWriter: w}, r.WithContext(ctx))
	}))
}

// writeBadGateway answers 502 as a problem document.
func writeBadGateway(w http.ResponseWriter) {
	b, _ := json.Marshal(idemhttp.Problem{
		Type: "about:blank", Title: http.StatusText(http.StatusBadGateway), Status: http.StatusBadGateway,
		Detail: "the upstream server could not be reached", Code: "upstream_unavailable",
	})
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadGateway)
	w.Write(append(b, '\n'))
}

// noFlush hides the reverse proxy's flushes from the recorder, except for
// event streams, which are meant to be streamed.
type noFlush struct {
	http.ResponseWriter
}

func (w *noFlush) FlushError() error {
	ct := w.Header().Get("Content-Type")
	if strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "text/event-stream") {
		return http.NewResponseController(w.ResponseWriter).Flush()
	}
	return nil
}

func (w *noFlush) Flush() { _ = w.FlushError() }

// Unwrap lets the reverse proxy reach Hijack (protocol upgrades) and
// deadlines on the writer below.
func (w *noFlush) Unwrap() http.ResponseWriter { return w.ResponseWriter }
