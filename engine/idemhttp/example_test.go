package idemhttp_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
)

func Example() {
	dir, _ := os.MkdirTemp("", "idemkv-example")
	defer os.RemoveAll(dir)
	eng, err := engine.Open(dir, nil)
	if err != nil {
		panic(err)
	}
	defer eng.Close()
	idem, err := idemhttp.New(eng, nil)
	if err != nil {
		panic(err)
	}

	created := 0
	mux := http.NewServeMux()
	mux.Handle("POST /v1/payments", idem.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		created++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"data":{"id":"pay_%d"}}`, created)
	})))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	var firstID string
	post := func(body string) {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/payments", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sk_test_1")
		req.Header.Set("Idempotency-Key", "order-1001")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("Content-Type") == "application/problem+json" {
			var p idemhttp.Problem
			json.Unmarshal(b, &p)
			fmt.Println(resp.StatusCode, p.Code, "conflicts with the first request:",
				p.Fields["conflicts_with"] == firstID)
			return
		}
		if firstID == "" {
			firstID = resp.Header.Get("X-Request-Id")
		}
		fmt.Println(resp.StatusCode, "replay:", resp.Header.Get("Idempotency-Replay"), string(b))
	}
	post(`{"amount":100}`) // runs the handler
	post(`{"amount":100}`) // a retry: replayed, the handler does not run
	post(`{"amount":999}`) // the key reused for another request: refused
	fmt.Println("payments created:", created)
	// Output:
	// 201 replay: false {"data":{"id":"pay_1"}}
	// 201 replay: true {"data":{"id":"pay_1"}}
	// 409 idempotency_conflict conflicts with the first request: true
	// payments created: 1
}

// A handler in two steps records a recovery point after the first. Here
// the first attempt "crashes" (the engine closes under it); the retry, on
// the reopened engine, finds the point and does not charge again.
func ExampleCheckpoint() {
	dir, _ := os.MkdirTemp("", "idemkv-example")
	defer os.RemoveAll(dir)
	charges := 0
	crash := make(chan struct{})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		charge := ""
		if phase, data, ok := idemhttp.LastCheckpoint(ctx); ok && phase == "charged" {
			charge = string(data) // charged before the crash
		} else {
			charges++
			charge = fmt.Sprintf("ch_%d", charges)
			if err := idemhttp.Checkpoint(ctx, "charged", []byte(charge)); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		if crash != nil {
			close(crash) // the process dies here, before it answers
			select {}
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"charge":%q}`, charge)
	})
	send := func(srv *httptest.Server) {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/payments", strings.NewReader(`{"amount":100}`))
		req.Header.Set("Idempotency-Key", "p1")
		req.Header.Set("Authorization", "Bearer sk_test_1")
		resp, err := srv.Client().Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		fmt.Println(resp.StatusCode, string(b), "charges:", charges)
	}

	eng, _ := engine.Open(dir, nil)
	idem, _ := idemhttp.New(eng, nil)
	srv := httptest.NewServer(idem.Handler(handler))
	go send(srv)
	<-crash
	_ = eng.Close() // the crash: the claim is never finished
	srv.CloseClientConnections()

	crash = nil
	eng, _ = engine.Open(dir, nil)
	defer eng.Close()
	idem, _ = idemhttp.New(eng, nil)
	srv2 := httptest.NewServer(idem.Handler(handler))
	defer srv2.Close()
	send(srv2)
	// Output:
	// 201 {"charge":"ch_1"} charges: 1
}
