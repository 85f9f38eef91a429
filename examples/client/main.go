// Command client calls the demo API through idemclient.Transport, which
// gives each POST an idempotency key and retries it with the same key when
// the network or the server fails.
//
//	go run ./cmd/idemkv serve            # in one terminal
//	go run ./examples/client             # in another
//
// It creates a call (the transport picks the key), sends the same request
// again with that key (a replay: the same call comes back), and exits 1 if
// the server did not keep its promise.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/idemkv/idemkv/engine/idemclient"
)

func main() {
	server := flag.String("server", "http://127.0.0.1:8080", "base URL of `idemkv serve`")
	token := flag.String("token", "sk_demo", "bearer token (the demo API accepts any; it names the tenant)")
	flag.Parse()

	client := &http.Client{
		Timeout: 30 * time.Second, // for all the tries of one request
		Transport: &idemclient.Transport{
			MaxTries: 5,
			OnRetry: func(try int, resp *http.Response, err error, delay time.Duration) {
				why := fmt.Sprint(err)
				if resp != nil {
					why = resp.Status
				}
				log.Printf("try %d failed (%s); retrying with the same key in %v", try, why, delay)
			},
		},
	}
	post := func(key string) (status int, usedKey, replay string, body []byte) {
		req, err := http.NewRequest("POST", *server+"/v1/calls", bytes.NewReader([]byte(`{"to":"+15550100","agent":"agent_7"}`)))
		if err != nil {
			log.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+*token)
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := client.Do(req)
		if err != nil {
			log.Fatalf("%v (is the demo server running? go run ./cmd/idemkv serve)", err)
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		if err != nil {
			log.Fatal(err)
		}
		// The key the transport chose travels on the request it sent.
		return resp.StatusCode, resp.Request.Header.Get("Idempotency-Key"), resp.Header.Get("Idempotency-Replay"), body
	}

	status, key, replay, first := post("")
	fmt.Printf("first:  %d key=%s replay=%s %s", status, key, replay, first)
	status2, _, replay2, again := post(key)
	fmt.Printf("retry:  %d key=%s replay=%s %s", status2, key, replay2, again)
	if status != http.StatusCreated || status2 != status || replay2 != "true" || !bytes.Equal(first, again) {
		fmt.Println("the retry did not replay the first response")
		os.Exit(1)
	}
	fmt.Println("one call created, whatever the number of tries")
}
