package idemgrpc_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/idemkv/idemkv/engine/idemgrpc"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
)

// BenchmarkReplay measures what the interceptor adds to a unary call on a
// replay: "bare" is the server with no interceptor, "replay" serves
// retries of 1,024 stored keys; both answer a 2 KB response, over an
// in-memory connection (bufconn: the real gRPC transport, no TCP), so the
// difference of their ns/op is the interceptor's.
func BenchmarkReplay(b *testing.B) {
	note := strings.Repeat("x", 2000)
	desc := grpc.ServiceDesc{
		ServiceName: service,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Charge",
			Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
				in := new(structpb.Struct)
				if err := dec(in); err != nil {
					return nil, err
				}
				h := func(ctx context.Context, req any) (any, error) {
					return structpb.NewStruct(map[string]any{"id": "ch_1", "note": note})
				}
				if icpt == nil {
					return h(ctx, in)
				}
				return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: charge}, h)
			},
		}},
	}
	run := func(b *testing.B, opts []grpc.ServerOption, keys int) {
		ln := bufconn.Listen(1 << 20)
		srv := grpc.NewServer(opts...)
		srv.RegisterService(&desc, struct{}{})
		go srv.Serve(ln)
		defer srv.Stop()
		cc, err := grpc.NewClient("passthrough:///bufnet", grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		req, _ := structpb.NewStruct(map[string]any{"amount": 42, "currency": "eur"})
		send := func(key int) {
			ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer sk_bench", "idempotency-key", fmt.Sprint(key))
			if err := cc.Invoke(ctx, charge, req, new(structpb.Struct)); err != nil {
				b.Fatal(err)
			}
		}
		if keys < 1<<30 {
			for k := range keys { // store them: what follows are retries
				send(k)
			}
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(note)))
		var n atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				send(int(n.Add(1)) % keys)
			}
		})
	}
	b.Run("bare", func(b *testing.B) { run(b, nil, 1<<30) })
	b.Run("replay", func(b *testing.B) {
		icpt, err := idemgrpc.UnaryServerInterceptor(idemtest.NewEngine(b, nil), &idemgrpc.Options{Logger: idemtest.QuietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		run(b, []grpc.ServerOption{grpc.UnaryInterceptor(icpt)}, 1024)
	})
}
