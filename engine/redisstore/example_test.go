package redisstore_test

import (
	"context"
	"log"
	"net/http"
	"os"

	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/redisstore"
)

// Every replica of a service opens a Store on the same Redis and wraps its
// handlers with the middleware, exactly as with the embedded engine. (Not
// run: it needs a Redis server.)
func Example() {
	// Every replica is given the same scope secret (here from the
	// environment), which keys the digests that credentials are stored as.
	store, err := redisstore.Open(context.Background(), "redis://127.0.0.1:6379/0",
		&redisstore.Options{ScopeSecret: []byte(os.Getenv("IDEMKV_SCOPE_SECRET"))})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	idem, err := idemhttp.New(store, nil)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/payments", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", idem.Handler(mux)))
}
