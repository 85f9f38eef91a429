package idemconnect_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/idemkv/idemkv/engine/idemconnect"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
)

// BenchmarkReplay measures what the interceptor adds to a unary Connect
// call on a replay: "bare" is the handler with no interceptor, "replay"
// serves retries of 1,024 stored keys; both answer a 2 KB response, served
// in process (the handler's ServeHTTP, Connect protocol, binary protobuf),
// so the difference of their ns/op is the interceptor's.
func BenchmarkReplay(b *testing.B) {
	note := strings.Repeat("x", 2000)
	fn := func(ctx context.Context, req *connect.Request[structpb.Struct]) (*connect.Response[structpb.Struct], error) {
		msg, err := structpb.NewStruct(map[string]any{"id": "ch_1", "note": note})
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(msg), nil
	}
	msg, _ := structpb.NewStruct(map[string]any{"amount": 42, "currency": "eur"})
	body, _ := proto.Marshal(msg)
	send := func(b *testing.B, h http.Handler, key int) {
		req := httptest.NewRequest("POST", charge, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/proto")
		req.Header.Set("Authorization", "Bearer sk_bench")
		req.Header.Set("Idempotency-Key", fmt.Sprint(key))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	run := func(b *testing.B, h http.Handler, keys int) {
		if keys < 1<<30 {
			for k := range keys { // store them: what follows are retries
				send(b, h, k)
			}
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(note)))
		var n atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				send(b, h, int(n.Add(1))%keys)
			}
		})
	}
	b.Run("bare", func(b *testing.B) { run(b, connect.NewUnaryHandler(charge, fn), 1<<30) })
	b.Run("replay", func(b *testing.B) {
		icpt, err := idemconnect.New(idemtest.NewEngine(b, nil), &idemconnect.Options{Logger: idemtest.QuietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		run(b, connect.NewUnaryHandler(charge, fn, connect.WithInterceptors(icpt)), 1024)
	})
}
