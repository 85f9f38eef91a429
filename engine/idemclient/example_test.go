package idemclient_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/idemkv/idemkv/engine/idemclient"
)

// A server that is busy on the first try: the client retries with the
// same key, and the server sees one key twice.
func Example() {
	var mu sync.Mutex
	tries := map[string]int{} // idempotency key -> tries
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tries[r.Header.Get("Idempotency-Key")]++
		n := tries[r.Header.Get("Idempotency-Key")]
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "created %s on try %d", body, n)
	}))
	defer srv.Close()

	client := &http.Client{Transport: &idemclient.Transport{}}
	resp, err := client.Post(srv.URL+"/v1/payments", "text/plain", strings.NewReader("pay_1"))
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(b))
	fmt.Println("keys seen:", len(tries))
	// Output:
	// 201 created pay_1 on try 2
	// keys seen: 1
}

// OnRetry logs each retry; a request that keeps failing is returned after
// MaxTries tries with its last response.
func ExampleTransport_onRetry() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "0")
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	defer srv.Close()

	client := &http.Client{Transport: &idemclient.Transport{
		MaxTries: 3,
		OnRetry: func(try int, resp *http.Response, err error, delay time.Duration) {
			fmt.Printf("try %d: %s; retrying in %v\n", try, resp.Status, delay)
		},
	}}
	resp, err := client.Post(srv.URL, "application/json", strings.NewReader(`{}`))
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Printf("gave up: %s: %s", resp.Status, b)
	// Output:
	// try 1: 503 Service Unavailable; retrying in 0s
	// try 2: 503 Service Unavailable; retrying in 0s
	// gave up: 503 Service Unavailable: down for maintenance
}
