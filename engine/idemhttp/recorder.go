package idemhttp

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/idemkv/idemkv/engine"
)

// recorder is the ResponseWriter a claimed request's handler writes to. It
// holds the whole response back until the handler returns, so that the
// response is recorded before any of it is sent (model: net/http's
// timeoutWriter). A handler that flushes (streams) or hijacks the
// connection, or writes more than MaxResponseBody, turns it into a plain
// pass-through writer: such a response cannot be replayed, and the claim is
// released once the handler has returned (not before: a duplicate must not
// run beside it).
//
// A recorder is used by the handler's goroutine only, like any
// ResponseWriter.
type recorder struct {
	w     http.ResponseWriter
	m     *Middleware
	claim *engine.Claim
	call  *Call
	reqID string
	buf   *bytes.Buffer

	status   int  // final status, once wrote
	wrote    bool // WriteHeader called with a final status
	mode     mode
	why      string // why the response is not recorded, in pass-through
	done     bool   // the claim was completed or released
	recorded bool   // the response was stored
}

type mode uint8

const (
	buffering mode = iota
	passthrough
	hijacked
)

func (rw *recorder) Header() http.Header { return rw.w.Header() }

func (rw *recorder) WriteHeader(code int) {
	if code < 100 || code > 999 {
		// As net/http does; the panic releases the claim.
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	switch {
	case rw.mode == hijacked:
		return
	case rw.mode == passthrough:
		rw.w.WriteHeader(code)
		return
	case rw.wrote:
		return // superfluous, as net/http ignores it
	case code == http.StatusSwitchingProtocols:
		rw.stream("protocol switch")
		rw.w.WriteHeader(code)
		return
	case code < 200:
		rw.w.WriteHeader(code) // informational (103 Early Hints): sent now, not recorded
		return
	}
	rw.status, rw.wrote = code, true
}

func (rw *recorder) Write(p []byte) (int, error) {
	switch rw.mode {
	case hijacked:
		return 0, http.ErrHijacked
	case passthrough:
		return rw.w.Write(p)
	}
	if !rw.wrote {
		rw.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(rw.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if rw.buf.Len()+len(p) > rw.m.c.MaxResponseBody {
		rw.stream("response larger than MaxResponseBody")
		return rw.w.Write(p)
	}
	return rw.buf.Write(p)
}

// Flush sends what was written so far: the response is streamed, not
// recorded.
func (rw *recorder) Flush() { _ = rw.FlushError() }

// FlushError is Flush for http.ResponseController.
func (rw *recorder) FlushError() error {
	if rw.mode == hijacked {
		return http.ErrHijacked
	}
	rw.stream("response flushed (streamed)")
	return http.NewResponseController(rw.w).Flush()
}

// Hijack hands the connection to the handler; nothing is recorded.
func (rw *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if rw.mode == hijacked {
		return nil, nil, http.ErrHijacked
	}
	// What was written so far goes first, as net/http sends it.
	rw.stream("connection hijacked")
	conn, brw, err := http.NewResponseController(rw.w).Hijack()
	if err != nil {
		rw.mode = passthrough
		return nil, nil, err
	}
	rw.mode = hijacked
	return conn, brw, nil
}

// Unwrap lets http.ResponseController reach the connection's writer for
// what the recorder does not intercept (deadlines, full duplex).
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.w }

// sent is the status sent: 200 if the handler set none.
func (rw *recorder) sent() int {
	if rw.wrote {
		return rw.status
	}
	return http.StatusOK
}

// releaseUnlessDone releases the claim if the response was not recorded.
// The middleware defers it, so that it runs however the handler ended.
func (rw *recorder) releaseUnlessDone() {
	if rw.done {
		return
	}
	rw.done = true
	why := rw.why
	if why == "" {
		why = "handler did not return normally"
	}
	rw.m.rollback(rw.call, why)
	rw.m.release(rw.claim, why)
}

// stream switches from buffering to pass-through and sends what was held
// back. The claim is released when the handler returns.
func (rw *recorder) stream(why string) {
	if rw.mode != buffering {
		return
	}
	rw.why = why
	rw.restoreHeaders()
	rw.mode = passthrough
	if rw.wrote {
		rw.w.WriteHeader(rw.status)
	}
	if rw.buf.Len() > 0 {
		rw.w.Write(rw.buf.Bytes())
		rw.buf.Reset()
	}
}

// restoreHeaders puts back the headers the middleware set before the
// handler ran, which a handler (or a reverse proxy forwarding a 1xx) may
// have cleared; of two request ids, the handler's (the last) wins.
func (rw *recorder) restoreHeaders() {
	h := rw.w.Header()
	name := rw.m.c.RequestIDHeader
	if ids := h[name]; len(ids) == 0 {
		h.Set(name, rw.reqID)
	} else if len(ids) > 1 {
		h.Set(name, ids[len(ids)-1])
	}
	h.Set(headerReplay, "false")
}

// finish records the response the handler left (or releases the claim if
// it is not to be recorded), then sends it.
func (rw *recorder) finish() {
	if rw.mode != buffering {
		return
	}
	status := http.StatusOK
	if rw.wrote {
		status = rw.status
	}
	body := rw.buf.Bytes()
	rw.restoreHeaders()
	h := rw.w.Header()
	_, haveType := h["Content-Type"]
	if !haveType && h.Get("Content-Encoding") == "" && h.Get("Transfer-Encoding") == "" && len(body) > 0 && bodyAllowed(status) {
		// What net/http would sniff when the body is sent; recorded so
		// that a replay sends the same.
		h.Set("Content-Type", http.DetectContentType(body))
	}
	// done is set only once the store has answered: if ShouldStore or
	// the store panics, the deferred release still runs.
	switch {
	case !rw.m.c.ShouldStore(status):
		why := "status " + strconv.Itoa(status) + " is not recorded"
		rw.m.rollback(rw.call, why)
		rw.m.release(rw.claim, why)
	case rw.call.tx != nil:
		if !rw.m.completeTx(rw.call, status, rw.m.response(rw.claim, status, h, body)) {
			// The handler's writes were undone: its response must not
			// go out.
			rw.done = true
			rw.mode = passthrough
			rw.status, rw.wrote = http.StatusServiceUnavailable, true
			for k := range h {
				if k != rw.m.c.RequestIDHeader && k != headerReplay {
					delete(h, k)
				}
			}
			h.Set(headerRetry, rw.m.c.retry)
			rw.m.problem(rw.w, rw.reqID, http.StatusServiceUnavailable, CodeUnavailable,
				"the response could not be committed with the handler's transaction, which was rolled back; retry with the same key", nil)
			return
		}
		rw.recorded = true
	default:
		rw.recorded = rw.m.complete(rw.claim, status, h, body)
	}
	rw.done = true
	if _, set := h["Content-Length"]; !set && bodyAllowed(status) && !hasTrailers(h) {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	rw.mode = passthrough
	rw.w.WriteHeader(status)
	if len(body) > 0 {
		rw.w.Write(body)
	}
}

// hasTrailers reports whether the handler declared trailers, which need a
// chunked body (trailers are sent, not recorded).
func hasTrailers(h http.Header) bool {
	if _, ok := h["Trailer"]; ok {
		return true
	}
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}
