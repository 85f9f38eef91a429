package redisstore_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/redisstore"
	"github.com/idemkv/idemkv/engine/redistest"
)

// TestTwoReplicasOverHTTP puts two HTTP servers ("replicas"), each with
// its own Store on one Redis, behind a client that sends every request's
// copies to both: the handler runs once per key and every answer is the
// same response.
func TestTwoReplicasOverHTTP(t *testing.T) {
	url := redistest.Start(t, nil)
	var runs atomic.Int64
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := runs.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"payment":%d}`, n)
	})
	var replicas []*httptest.Server
	for range 2 {
		m, err := idemhttp.New(openStore(t, url, redisstore.Options{Prefix: "http:"}), nil)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(m.Handler(handler))
		t.Cleanup(srv.Close)
		replicas = append(replicas, srv)
	}
	const keys, copies = 20, 8
	bodies := make([][]string, keys)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for k := range keys {
		bodies[k] = make([]string, copies)
		for c := range copies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv := replicas[c%2]
				rq, _ := http.NewRequest("POST", srv.URL+"/v1/payments", strings.NewReader(`{"amount":100}`))
				rq.Header.Set("Idempotency-Key", fmt.Sprint("pay-", k))
				rq.Header.Set("Authorization", "Bearer sk_live")
				resp, err := srv.Client().Do(rq)
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusCreated {
					t.Errorf("key %d copy %d: %d %s", k, c, resp.StatusCode, b)
				}
				mu.Lock()
				bodies[k][c] = string(b)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	if runs.Load() != keys {
		t.Fatalf("the handler ran %d times for %d keys", runs.Load(), keys)
	}
	for k := range keys {
		for c := range copies {
			if bodies[k][c] != bodies[k][0] {
				t.Fatalf("key %d: copy %d got %q, copy 0 %q", k, c, bodies[k][c], bodies[k][0])
			}
		}
	}
}
