package idemhttp_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/internal/adaptertest"
)

// The contract table that every framework adapter passes, on a bare
// ServeMux: the baseline the adapters are held to.
func TestServeMuxKeepsTheAdapterContract(t *testing.T) {
	adaptertest.RunHTTP(t, "POST /v1/items/{id}", func(t *testing.T, m *idemhttp.Middleware, h http.Handler) string {
		mux := http.NewServeMux()
		mux.Handle("POST /v1/items/{id}", m.Handler(recoverer(h)))
		s := httptest.NewServer(mux)
		t.Cleanup(s.Close)
		return s.URL
	})
}

// recoverer answers a panic with 500, as the frameworks' recovery
// middleware does (net/http itself drops the connection). It sits inside
// the middleware here, so the middleware sees a 500, not the panic.
func recoverer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				http.Error(w, "panic", http.StatusInternalServerError)
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// BenchmarkReplayOverServeMux: what the middleware adds to a ServeMux
// route on a replay (bare against replay, same run).
func BenchmarkReplayOverServeMux(b *testing.B) {
	adaptertest.BenchReplay(b, func(m *idemhttp.Middleware, h http.Handler) http.Handler {
		mux := http.NewServeMux()
		if m != nil {
			h = m.Handler(h)
		}
		mux.Handle("POST /v1/items/{id}", h)
		return mux
	})
}
