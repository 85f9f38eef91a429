// Command echo serves an API on echo (v5) with idemkv's middleware on its
// create endpoints.
//
//	go run ./examples/echo [-listen 127.0.0.1:8093] [-data DIR] [-once]
//
// With -once it sends a first request, a retry and a conflicting request to
// itself, then eight identical requests at once under a new key, prints
// what came back, and exits; it fails unless the handler ran exactly twice.
//
// This example is a module of its own, like the adapter it shows.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"sync/atomic"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemecho"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/examples/internal/selftest"
	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8093", "address to serve on")
	data := flag.String("data", "", "data directory (default: a new temporary directory)")
	once := flag.Bool("once", false, "send requests to itself, print the answers and exit")
	flag.Parse()

	dir := *data
	if dir == "" {
		d, err := os.MkdirTemp("", "idemkv-echo-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	eng, err := engine.Open(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer eng.Close()
	// The endpoint of a key is echo's route template
	// ("POST /v1/teams/:team/invites"); tenants by X-Api-Key.
	idem, err := idemhttp.New(eng, &idemhttp.Options{ScopeHeader: "X-Api-Key"})
	if err != nil {
		log.Fatal(err)
	}

	e := echo.New()
	// Recover first: a panic releases the key, then reaches it.
	e.Use(middleware.Recover(), idemecho.Middleware(idem))

	var invites atomic.Int64
	e.POST("/v1/teams/:team/invites", func(c *echo.Context) error {
		var req struct {
			Email string `json:"email"`
		}
		if err := c.Bind(&req); err != nil || req.Email == "" {
			// Returned errors are rendered inside the recording: this
			// 422 is stored and replayed like any other answer.
			return echo.NewHTTPError(http.StatusUnprocessableEntity, "an email is required")
		}
		n := invites.Add(1)
		return c.JSON(http.StatusCreated, map[string]any{"data": map[string]string{"id": fmt.Sprintf("inv_%d", n), "team": c.Param("team"), "email": req.Email}})
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	if !*once {
		fmt.Printf("listening on %s; try:\n  curl -i %s/v1/teams/t1/invites -H 'Content-Type: application/json' -H 'X-Api-Key: key_1' -H 'Idempotency-Key: i-1' -d '{\"email\":\"a@example.com\"}'\n", base, base)
		log.Fatal(http.Serve(ln, e))
	}
	go http.Serve(ln, e)
	if err := selftest.Run(base+"/v1/teams/t1/invites", invites.Load); err != nil {
		log.Fatal(err)
	}
}
