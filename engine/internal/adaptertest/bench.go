package adaptertest

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/idemkv/idemkv/bench/payload"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
)

// App builds, in process, the application a benchmark serves: the
// framework with one route, POST /v1/items/{id} in its syntax, whose
// handler is h, and the middleware m plugged in as the adapter documents,
// or no middleware when m is nil (the bare framework).
type App func(m *idemhttp.Middleware, h http.Handler) http.Handler

// BenchReplay measures what an adapter adds to its framework on a replay:
// "bare" serves the route with no middleware, "replay" serves retries of
// 1,024 stored keys through the adapter; the difference of their ns/op is
// the adapter's added latency (the README's table). Both answer 201 with
// a 2 KB JSON body, served in process (no network), so the figure is the
// framework's and the middleware's own.
func BenchReplay(b *testing.B, app App) {
	resp := payload.JSON(nil, 2048, 1)
	reqBody := []byte(`{"to":"+15550100","agent":"agent_7","metadata":{"campaign":"spring"}}`)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		w.Write(resp)
	})
	send := func(b *testing.B, h http.Handler, key int) {
		req := httptest.NewRequest("POST", "/v1/items/42", bytes.NewReader(reqBody))
		req.Header.Set("Authorization", "Bearer sk_bench")
		req.Header.Set("Idempotency-Key", fmt.Sprint(key))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 201 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	serve := func(b *testing.B, h http.Handler, keys int) {
		if keys < 1<<30 {
			for k := range keys { // store them: what follows are retries
				send(b, h, k)
			}
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(resp)))
		var n atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				send(b, h, int(n.Add(1))%keys)
			}
		})
	}
	b.Run("bare", func(b *testing.B) {
		serve(b, app(nil, handler), 1<<30)
	})
	b.Run("replay", func(b *testing.B) {
		m, err := idemhttp.New(idemtest.NewEngine(b, nil), &idemhttp.Options{Logger: idemtest.QuietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		serve(b, app(m, handler), 1024)
	})
}
