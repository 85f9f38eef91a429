package idemgrpc_test

import (
	"log"

	"google.golang.org/grpc"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemgrpc"
)

// A server gets the contract with one interceptor (after its recovery
// interceptor); a client keys its calls and retries them safely with
// another.
func ExampleUnaryServerInterceptor() {
	eng, err := engine.Open("data", &engine.Options{InMemory: true})
	if err != nil {
		log.Fatal(err)
	}
	defer eng.Close()
	icpt, err := idemgrpc.UnaryServerInterceptor(eng, nil)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(icpt))
	defer srv.Stop()
	// paymentsv1.RegisterPaymentsServer(srv, payments{}); srv.Serve(ln)

	_ = grpc.WithUnaryInterceptor(idemgrpc.UnaryClientInterceptor(nil)) // for grpc.NewClient
}
