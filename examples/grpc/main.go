// Command grpc serves a gRPC payments service with idemkv's interceptor,
// and calls it through idemkv's retrying client interceptor.
//
//	go run ./examples/grpc [-listen 127.0.0.1:8094] [-data DIR] [-once]
//
// With -once it calls itself: a first charge, a retry with the same key (a
// replay: the handler does not run), the same key with another amount (a
// conflict: FAILED_PRECONDITION), and eight identical charges at once
// under a new key (the handler runs once); it checks every answer and
// exits non-zero if one is wrong.
//
// The service is written out by hand (the grpc.ServiceDesc that
// protoc-gen-go-grpc would generate) around google.protobuf.Struct, so
// that the example needs no code generation; generated services work the
// same way. This example is a module of its own, like the adapter it
// shows.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemgrpc"
)

const chargeMethod = "/payments.v1.Payments/Charge"

type payments struct{ charges atomic.Int64 }

func (p *payments) charge(ctx context.Context, req *structpb.Struct) (*structpb.Struct, error) {
	amount := req.GetFields()["amount"].GetNumberValue()
	if amount <= 0 {
		return nil, status.Error(codes.InvalidArgument, "amount must be positive") // stored: an answer
	}
	time.Sleep(50 * time.Millisecond) // the card network
	n := p.charges.Add(1)
	id := fmt.Sprintf("ch_%d", n)
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-charge-id", id))
	return structpb.NewStruct(map[string]any{"id": id, "amount": amount})
}

var paymentsDesc = grpc.ServiceDesc{
	ServiceName: "payments.v1.Payments",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Charge",
		Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(structpb.Struct)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				return srv.(*payments).charge(ctx, req.(*structpb.Struct))
			}
			if icpt == nil {
				return h(ctx, in)
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: chargeMethod}, h)
		},
	}},
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8094", "address to serve on")
	data := flag.String("data", "", "data directory (default: a new temporary directory)")
	once := flag.Bool("once", false, "call itself, check the answers and exit")
	flag.Parse()

	dir := *data
	if dir == "" {
		d, err := os.MkdirTemp("", "idemkv-grpc-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	eng, err := engine.Open(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer eng.Close()
	// Keys per method and per caller (the authorization metadata).
	idem, err := idemgrpc.UnaryServerInterceptor(eng, nil)
	if err != nil {
		log.Fatal(err)
	}
	p := &payments{}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(idem))
	srv.RegisterService(&paymentsDesc, p)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if !*once {
		fmt.Printf("serving payments.v1.Payments on %s\n", ln.Addr())
		log.Fatal(srv.Serve(ln))
	}
	go srv.Serve(ln)
	defer srv.Stop()
	if err := selfTest(ln.Addr().String(), p); err != nil {
		log.Fatal(err)
	}
}

func selfTest(addr string, p *payments) error {
	// The client interceptor keys calls that have no key and retries them,
	// with that key, through Unavailable and in-progress answers.
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(idemgrpc.UnaryClientInterceptor(nil)))
	if err != nil {
		return err
	}
	defer cc.Close()
	charge := func(key string, amount float64) (*structpb.Struct, metadata.MD, error) {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer sk_demo", "idempotency-key", key)
		req, _ := structpb.NewStruct(map[string]any{"amount": amount})
		resp, header := new(structpb.Struct), metadata.MD{}
		err := cc.Invoke(ctx, chargeMethod, req, resp, grpc.Header(&header))
		return resp, header, err
	}
	first, _, err := charge("pay-1", 42)
	if err != nil {
		return err
	}
	fmt.Println("first:   ", first.AsMap())
	again, header, err := charge("pay-1", 42)
	if err != nil {
		return err
	}
	fmt.Println("retry:   ", again.AsMap(), "idempotency-replay:", header.Get("idempotency-replay"))
	if !proto.Equal(first, again) || len(header.Get("idempotency-replay")) == 0 || header.Get("idempotency-replay")[0] != "true" {
		return fmt.Errorf("the retry was not a replay of the first charge")
	}
	_, _, err = charge("pay-1", 43)
	fmt.Println("conflict:", status.Code(err), status.Convert(err).Message())
	if status.Code(err) != codes.FailedPrecondition {
		return fmt.Errorf("the same key with another amount got %v, want FailedPrecondition", err)
	}

	var wg sync.WaitGroup
	dups := make([]*structpb.Struct, 8)
	errs := make([]error, len(dups))
	for i := range dups {
		wg.Go(func() { dups[i], _, errs[i] = charge("pay-2", 7) })
	}
	wg.Wait()
	for i := range dups {
		if errs[i] != nil {
			return errs[i]
		}
		if !proto.Equal(dups[i], dups[0]) {
			return fmt.Errorf("concurrent duplicates got different answers: %v and %v", dups[0], dups[i])
		}
	}
	fmt.Printf("%d concurrent duplicates: %v\n", len(dups), dups[0].AsMap())
	fmt.Println("charges made:", p.charges.Load())
	if p.charges.Load() != 2 {
		return fmt.Errorf("the handler ran %d times, want 2", p.charges.Load())
	}
	return nil
}
