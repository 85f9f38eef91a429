package idemgin

import (
	"bufio"
	"io"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/idemkv/idemkv/engine/idemhttp"
)

// Middleware returns gin middleware that gives the routes after it the
// contract of m (see the package documentation). One Middleware may serve
// any number of routers and routes; they share its options and statistics.
func Middleware(m *idemhttp.Middleware) gin.HandlerFunc {
	return func(c *gin.Context) {
		ran := false
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ran = true
			outerW, outerR := c.Writer, c.Request
			gw := &writer{w: w, status: http.StatusOK, size: noWrite}
			c.Writer, c.Request = gw, r
			defer func() { c.Writer, c.Request = outerW, outerR }()
			c.Next()
			gw.WriteHeaderNow()
		})
		m.ServeRoute(c.Writer, c.Request, c.FullPath(), next)
		if !ran {
			// The middleware answered (a replay, a conflict, a refusal):
			// nothing after it may run.
			c.Abort()
		}
	}
}

// noWrite is writer.size before the header is written.
const noWrite = -1

// writer is the gin.ResponseWriter that the handlers after the middleware
// write to: gin's semantics (the status is held until the first write or
// the end of the chain) over the middleware's recording writer.
type writer struct {
	w      http.ResponseWriter
	status int
	size   int
}

var _ gin.ResponseWriter = (*writer)(nil)

func (g *writer) Header() http.Header { return g.w.Header() }

// WriteHeader sets the status to send; as in gin, it is sent with the
// first byte of the body or when the chain returns, and a status set after
// the header was sent is ignored.
func (g *writer) WriteHeader(code int) {
	if code > 0 && !g.Written() {
		g.status = code
	}
}

func (g *writer) WriteHeaderNow() {
	if !g.Written() {
		g.size = 0
		g.w.WriteHeader(g.status)
	}
}

func (g *writer) Write(p []byte) (int, error) {
	g.WriteHeaderNow()
	n, err := g.w.Write(p)
	g.size += n
	return n, err
}

func (g *writer) WriteString(s string) (int, error) {
	g.WriteHeaderNow()
	n, err := io.WriteString(g.w, s)
	g.size += n
	return n, err
}

func (g *writer) Status() int   { return g.status }
func (g *writer) Size() int     { return g.size }
func (g *writer) Written() bool { return g.size != noWrite }

// Flush streams the response: the middleware then sends it as it comes and
// records nothing (the key is released when the chain returns).
func (g *writer) Flush() {
	g.WriteHeaderNow()
	_ = http.NewResponseController(g.w).Flush()
}

// Hijack hands the connection over; nothing is recorded.
func (g *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if g.size < 0 {
		g.size = 0
	}
	return http.NewResponseController(g.w).Hijack()
}

// CloseNotify is http.CloseNotifier's (deprecated: use the request's
// context); it reports nothing when the writer below cannot.
func (g *writer) CloseNotify() <-chan bool {
	//lint:ignore SA1019 gin.ResponseWriter requires CloseNotify.
	if cn, ok := g.w.(http.CloseNotifier); ok {
		return cn.CloseNotify()
	}
	return make(chan bool)
}

// Pusher returns nil: HTTP/2 server push is not recorded or replayed.
func (g *writer) Pusher() http.Pusher { return nil }

// Unwrap lets http.ResponseController reach the writer below.
func (g *writer) Unwrap() http.ResponseWriter { return g.w }
