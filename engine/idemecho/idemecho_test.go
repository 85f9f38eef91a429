package idemecho_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"

	"github.com/idemkv/idemkv/engine/idemecho"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/internal/adaptertest"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
)

func serve(t *testing.T, e *echo.Echo) string {
	s := httptest.NewServer(e)
	t.Cleanup(s.Close)
	return s.URL
}

func TestEchoKeepsTheContract(t *testing.T) {
	adaptertest.RunHTTP(t, "POST /v1/items/:id", func(t *testing.T, m *idemhttp.Middleware, h http.Handler) string {
		e := echo.New()
		e.Logger = idemtest.QuietLogger()
		e.Use(middleware.Recover(), idemecho.Middleware(m))
		e.POST("/v1/items/:id", echo.WrapHandler(h))
		return serve(t, e)
	})
}

func newMiddleware(t *testing.T) *idemhttp.Middleware {
	m, err := idemhttp.New(idemtest.NewEngine(t, nil), &idemhttp.Options{Logger: idemtest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// errorApp is an echo app whose handler fails with err, wired with the
// middleware mw; runs counts the handler's runs.
func errorApp(t *testing.T, mw echo.MiddlewareFunc, err error, runs *int) string {
	e := echo.New()
	e.Logger = idemtest.QuietLogger()
	e.Use(middleware.Recover(), mw)
	e.POST("/v1/orders", func(c *echo.Context) error {
		*runs++
		return err
	})
	return serve(t, e)
}

// A handler's echo.HTTPError is rendered inside the recording: its 422 is
// what is stored and what every retry gets back.
func TestEchoHTTPErrorIsRecordedAndReplayed(t *testing.T) {
	var runs int
	url := errorApp(t, idemecho.Middleware(newMiddleware(t)), echo.NewHTTPError(http.StatusUnprocessableEntity, "card declined"), &runs)
	first := idemtest.Do(t, "POST", url+"/v1/orders", "k", `{}`)
	again := idemtest.Do(t, "POST", url+"/v1/orders", "k", `{}`)
	if first.Status != 422 || first.Body != "{\"message\":\"card declined\"}\n" {
		t.Fatalf("first: %d %q", first.Status, first.Body)
	}
	if again.Status != 422 || again.Body != first.Body || again.Header.Get("Idempotency-Replay") != "true" ||
		again.Header.Get("Content-Type") != first.Header.Get("Content-Type") {
		t.Fatalf("retry: %d %v %q", again.Status, again.Header, again.Body)
	}
	if runs != 1 {
		t.Fatalf("the handler ran %d times", runs)
	}
}

// A plain error renders as echo renders it, a 500, which the default
// policy does not store: the retry runs the handler again.
func TestEchoPlainErrorIsRenderedAndReleased(t *testing.T) {
	var runs int
	url := errorApp(t, idemecho.Middleware(newMiddleware(t)), errors.New("database down"), &runs)
	for i := range 2 {
		r := idemtest.Do(t, "POST", url+"/v1/orders", "k", `{}`)
		if r.Status != 500 || r.Header.Get("Idempotency-Replay") != "false" || r.Body != "{\"message\":\"Internal Server Error\"}\n" {
			t.Fatalf("request %d: %d %q %q", i, r.Status, r.Header.Get("Idempotency-Replay"), r.Body)
		}
	}
	if runs != 2 {
		t.Fatalf("the handler ran %d times, want 2", runs)
	}
}

// The trap the package documents, kept true by this test: echo's own
// WrapMiddleware around the net/http middleware records the empty 200
// that the handler left before echo rendered its error, and replays it.
func TestWrapMiddlewareRecordsAnEmpty200(t *testing.T) {
	var runs int
	m := newMiddleware(t)
	url := errorApp(t, echo.WrapMiddleware(m.Handler), echo.NewHTTPError(http.StatusUnprocessableEntity, "card declined"), &runs)
	idemtest.Do(t, "POST", url+"/v1/orders", "k", `{}`)
	again := idemtest.Do(t, "POST", url+"/v1/orders", "k", `{}`)
	if again.Status != http.StatusOK || again.Body != "" || again.Header.Get("Idempotency-Replay") != "true" {
		t.Fatalf("the trap is gone (update the package documentation): retry %d %q %q", again.Status, again.Header.Get("Idempotency-Replay"), again.Body)
	}
}

// The handlers see the route's parameters and the whole body.
func TestEchoHandlersSeeParamsAndBody(t *testing.T) {
	e := echo.New()
	e.Use(idemecho.Middleware(newMiddleware(t)))
	runs := 0
	e.POST("/v1/accounts/:id/charges", func(c *echo.Context) error {
		runs++
		var in struct{ Amount int }
		if err := c.Bind(&in); err != nil {
			return err
		}
		return c.JSON(201, map[string]any{"account": c.Param("id"), "amount": in.Amount})
	})
	url := serve(t, e)
	for range 2 {
		rep := idemtest.Do(t, "POST", url+"/v1/accounts/acct_1/charges", "k", `{"amount":42}`, "Content-Type", "application/json")
		if rep.Status != 201 || rep.Body != "{\"account\":\"acct_1\",\"amount\":42}\n" {
			t.Fatalf("%d %q", rep.Status, rep.Body)
		}
	}
	if runs != 1 {
		t.Fatalf("the handler ran %d times", runs)
	}
}

// BenchmarkReplay: what idemecho adds to an echo route on a replay (bare
// against replay, same run).
func BenchmarkReplay(b *testing.B) {
	adaptertest.BenchReplay(b, func(m *idemhttp.Middleware, h http.Handler) http.Handler {
		e := echo.New()
		if m != nil {
			e.Use(idemecho.Middleware(m))
		}
		e.POST("/v1/items/:id", echo.WrapHandler(h))
		return e
	})
}
