// Command gin serves an API on gin with idemkv's middleware on its create
// endpoints.
//
//	go run ./examples/gin [-listen 127.0.0.1:8092] [-data DIR] [-once]
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

	"github.com/gin-gonic/gin"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemgin"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/examples/internal/selftest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8092", "address to serve on")
	data := flag.String("data", "", "data directory (default: a new temporary directory)")
	once := flag.Bool("once", false, "send requests to itself, print the answers and exit")
	flag.Parse()

	dir := *data
	if dir == "" {
		d, err := os.MkdirTemp("", "idemkv-gin-")
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
	// The endpoint of a key is gin's route template
	// ("POST /v1/teams/:team/invites"); tenants by X-Api-Key.
	idem, err := idemhttp.New(eng, &idemhttp.Options{ScopeHeader: "X-Api-Key"})
	if err != nil {
		log.Fatal(err)
	}

	gin.SetMode(gin.ReleaseMode)
	router := gin.New()
	// Recovery first: a panic releases the key, then reaches it.
	router.Use(gin.Recovery(), idemgin.Middleware(idem))

	var invites atomic.Int64
	router.POST("/v1/teams/:team/invites", func(c *gin.Context) {
		var req struct {
			Email string `json:"email"`
		}
		if err := c.ShouldBindJSON(&req); err != nil {
			c.AbortWithStatusJSON(http.StatusUnprocessableEntity, gin.H{"error": gin.H{"code": "invalid_body"}})
			return
		}
		n := invites.Add(1)
		c.JSON(http.StatusCreated, gin.H{"data": gin.H{"id": fmt.Sprintf("inv_%d", n), "team": c.Param("team"), "email": req.Email}})
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	if !*once {
		fmt.Printf("listening on %s; try:\n  curl -i %s/v1/teams/t1/invites -H 'X-Api-Key: key_1' -H 'Idempotency-Key: i-1' -d '{\"email\":\"a@example.com\"}'\n", base, base)
		log.Fatal(http.Serve(ln, router))
	}
	go http.Serve(ln, router)
	if err := selftest.Run(base+"/v1/teams/t1/invites", invites.Load); err != nil {
		log.Fatal(err)
	}
}
