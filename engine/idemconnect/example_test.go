package idemconnect_test

import (
	"log"

	"connectrpc.com/connect"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemconnect"
)

// A Connect handler gets the contract, for Connect, gRPC and gRPC-Web
// clients, with one interceptor (after a recovery interceptor).
func ExampleNew() {
	eng, err := engine.Open("data", &engine.Options{InMemory: true})
	if err != nil {
		log.Fatal(err)
	}
	defer eng.Close()
	icpt, err := idemconnect.New(eng, nil)
	if err != nil {
		log.Fatal(err)
	}
	_ = connect.WithInterceptors(icpt) // paymentsv1connect.NewPaymentsHandler(svc, connect.WithInterceptors(icpt))
}
