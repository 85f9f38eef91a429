package idemhttp_test

import (
	"bytes"
	"fmt"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/idemkv/idemkv/bench/payload"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
)

// BenchmarkMiddleware measures the middleware in process (no network):
// a bare handler, the first request of each key (Relaxed durability, so
// the figure is the middleware's cost and not the disk's), and replays.
func BenchmarkMiddleware(b *testing.B) {
	resp := payload.JSON(nil, 2048, 1)
	reqBody := []byte(`{"to":"+15550100","agent":"agent_7","metadata":{"campaign":"spring"}}`)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		w.Write(resp)
	})
	serve := func(b *testing.B, h http.Handler, key func(i int) string) {
		b.ReportAllocs()
		b.SetBytes(int64(len(resp)))
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := int(n.Add(1))
				req := httptest.NewRequest("POST", "/v1/calls", bytes.NewReader(reqBody))
				req.Header.Set("Authorization", "Bearer sk_bench")
				req.Header.Set("Idempotency-Key", key(i))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 201 {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
	b.Run("bare", func(b *testing.B) {
		serve(b, handler, strconv.Itoa)
	})
	b.Run("fresh", func(b *testing.B) {
		m, _ := idemhttp.New(idemtest.NewEngine(b, &engine.Options{Durability: engine.Relaxed}), nil)
		serve(b, m.Handler(handler), strconv.Itoa)
	})
	b.Run("replay", func(b *testing.B) {
		m, _ := idemhttp.New(idemtest.NewEngine(b, nil), nil)
		h := m.Handler(handler)
		const keys = 1024
		serve(b, h, func(i int) string { return fmt.Sprint(i % keys) })
	})
}
