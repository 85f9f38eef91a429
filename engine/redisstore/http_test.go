package redisstore_test

import (
	"crypto/sha256"
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

// TestRecordsStoredBeforeNormalisationReplayFromRedis: a record that an
// earlier version stored in Redis under the digest of the credential as
// spelled ("bearer  x") is found after the upgrade, through the store's
// Get: the retry replays it, another body conflicts, the handler never
// runs again.
func TestRecordsStoredBeforeNormalisationReplayFromRedis(t *testing.T) {
	url := redistest.Start(t, nil)
	st := openStore(t, url, redisstore.Options{Prefix: "legacy:"})
	var runs atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "run %d", runs.Add(1))
	})
	serve := func(o *idemhttp.Options) string {
		m, err := idemhttp.New(st, o)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(m.Handler(h))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	post := func(base, body string) (int, string, string) {
		rq, _ := http.NewRequest("POST", base+"/v1/payments", strings.NewReader(body))
		rq.Header.Set("Idempotency-Key", "k")
		rq.Header.Set("Authorization", "bearer  x")
		resp, err := http.DefaultClient.Do(rq)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Idempotency-Replay"), string(b)
	}
	// The earlier version: the version-1 digest of the raw value.
	old := serve(&idemhttp.Options{Scope: func(r *http.Request) string {
		d := sha256.Sum256([]byte("idemkv scope v1\x00" + r.Header.Get("Authorization")))
		return string(d[:])
	}})
	_, _, first := post(old, `{"amount":1}`)
	now := serve(nil)
	if s, replay, b := post(now, `{"amount":1}`); replay != "true" || b != first {
		t.Fatalf("retry after the upgrade: %d %q replay=%q; want the replay of %q", s, b, replay, first)
	}
	if s, _, _ := post(now, `{"amount":2}`); s != http.StatusConflict {
		t.Fatalf("another body after the upgrade: %d; want 409", s)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("handler ran %d times; want 1", n)
	}
}
