package idemgin_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/idemkv/idemkv/engine/idemgin"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/internal/adaptertest"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
)

func init() { gin.SetMode(gin.ReleaseMode) }

func serve(t *testing.T, r *gin.Engine) string {
	s := httptest.NewServer(r)
	t.Cleanup(s.Close)
	return s.URL
}

func TestGinKeepsTheContract(t *testing.T) {
	adaptertest.RunHTTP(t, "POST /v1/items/:id", func(t *testing.T, m *idemhttp.Middleware, h http.Handler) string {
		r := gin.New()
		r.Use(gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, _ any) { c.AbortWithStatus(500) }), idemgin.Middleware(m))
		r.POST("/v1/items/:id", gin.WrapH(h))
		return serve(t, r)
	})
}

func newMiddleware(t *testing.T) *idemhttp.Middleware {
	m, err := idemhttp.New(idemtest.NewEngine(t, nil), &idemhttp.Options{Logger: idemtest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// An abort writes the response inside what is recorded: a 422 from
// c.AbortWithStatusJSON is stored and replayed, and the handler does not
// run again.
func TestGinAbortIsRecordedAndReplayed(t *testing.T) {
	runs := 0
	r := gin.New()
	r.Use(idemgin.Middleware(newMiddleware(t)))
	r.POST("/v1/orders", func(c *gin.Context) {
		runs++
		c.AbortWithStatusJSON(http.StatusUnprocessableEntity, gin.H{"error": "card declined", "run": runs})
	})
	url := serve(t, r)
	first := idemtest.Do(t, "POST", url+"/v1/orders", "k", `{}`)
	again := idemtest.Do(t, "POST", url+"/v1/orders", "k", `{}`)
	if first.Status != 422 || again.Status != 422 || again.Body != first.Body || again.Header.Get("Idempotency-Replay") != "true" {
		t.Fatalf("first %d %s; retry %d %q %s", first.Status, first.Body, again.Status, again.Header.Get("Idempotency-Replay"), again.Body)
	}
	if runs != 1 {
		t.Fatalf("the handler ran %d times", runs)
	}
}

// Gin renders errors in middleware: one registered after idemgin renders
// inside the recording, so its answer is what a retry gets back.
func TestGinErrorRenderedAfterTheMiddlewareIsRecorded(t *testing.T) {
	runs := 0
	r := gin.New()
	r.Use(idemgin.Middleware(newMiddleware(t)), func(c *gin.Context) {
		c.Next()
		if err := c.Errors.Last(); err != nil {
			c.JSON(http.StatusUnprocessableEntity, gin.H{"error": err.Error()})
		}
	})
	r.POST("/v1/orders", func(c *gin.Context) {
		runs++
		_ = c.Error(errors.New("insufficient funds"))
	})
	url := serve(t, r)
	first := idemtest.Do(t, "POST", url+"/v1/orders", "k", `{}`)
	again := idemtest.Do(t, "POST", url+"/v1/orders", "k", `{}`)
	if first.Status != 422 || again.Status != 422 || again.Body != `{"error":"insufficient funds"}` || again.Header.Get("Idempotency-Replay") != "true" {
		t.Fatalf("first %d %s; retry %d %s", first.Status, first.Body, again.Status, again.Body)
	}
	if runs != 1 {
		t.Fatalf("the handler ran %d times", runs)
	}
}

// c.Status without a body is sent (and stored) when the chain returns, as
// gin sends it.
func TestGinStatusWithoutBodyIsRecorded(t *testing.T) {
	runs := 0
	r := gin.New()
	r.Use(idemgin.Middleware(newMiddleware(t)))
	r.DELETE("/v1/orders/:id", func(c *gin.Context) {
		runs++
		c.Status(http.StatusNoContent)
	})
	url := serve(t, r)
	for i, want := range []string{"false", "true"} {
		rep := idemtest.Do(t, "DELETE", url+"/v1/orders/9", "k", ``)
		if rep.Status != http.StatusNoContent || rep.Header.Get("Idempotency-Replay") != want {
			t.Fatalf("request %d: %d %q", i, rep.Status, rep.Header.Get("Idempotency-Replay"))
		}
	}
	if runs != 1 {
		t.Fatalf("the handler ran %d times", runs)
	}
}

// The handlers after the middleware see the route's parameters and the
// whole body; a replay aborts the chain, so they do not run.
func TestGinHandlersSeeParamsAndBody(t *testing.T) {
	r := gin.New()
	r.Use(idemgin.Middleware(newMiddleware(t)))
	var after int
	r.POST("/v1/accounts/:id/charges", func(c *gin.Context) {
		var in struct{ Amount int }
		if err := c.ShouldBindJSON(&in); err != nil {
			c.AbortWithStatus(400)
			return
		}
		c.JSON(201, gin.H{"account": c.Param("id"), "amount": in.Amount})
	}, func(c *gin.Context) { after++ })
	url := serve(t, r)
	for range 2 {
		rep := idemtest.Do(t, "POST", url+"/v1/accounts/acct_1/charges", "k", `{"amount":42}`)
		if rep.Status != 201 || rep.Body != `{"account":"acct_1","amount":42}` {
			t.Fatalf("%d %s", rep.Status, rep.Body)
		}
	}
	if after != 1 {
		t.Fatalf("the handler after ran %d times", after)
	}
}

// BenchmarkReplay: what idemgin adds to a gin route on a replay (bare
// against replay, same run).
func BenchmarkReplay(b *testing.B) {
	adaptertest.BenchReplay(b, func(m *idemhttp.Middleware, h http.Handler) http.Handler {
		r := gin.New()
		if m != nil {
			r.Use(idemgin.Middleware(m))
		}
		r.POST("/v1/items/:id", gin.WrapH(h))
		return r
	})
}
