// Command connect serves a Connect payments handler with idemkv's
// interceptor, reachable by Connect, gRPC and gRPC-Web clients.
//
//	go run ./examples/connect [-listen 127.0.0.1:8095] [-data DIR] [-once]
//
// With -once it calls itself with a Connect client (over idemkv's retrying
// HTTP transport): a first charge, a retry with the same key (a replay:
// the handler does not run), the same key with another amount (a
// conflict: FailedPrecondition), and eight identical charges at once
// under a new key, over gRPC (the handler runs once); it checks every
// answer and exits non-zero if one is wrong.
//
// The handler is built with connect.NewUnaryHandler around
// google.protobuf.Struct, so that the example needs no code generation;
// generated handlers take the interceptor the same way
// (connect.WithInterceptors). This example is a module of its own, like
// the adapter it shows.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemclient"
	"github.com/idemkv/idemkv/engine/idemconnect"
)

const chargeProcedure = "/payments.v1.Payments/Charge"

type payments struct{ charges atomic.Int64 }

func (p *payments) charge(ctx context.Context, req *connect.Request[structpb.Struct]) (*connect.Response[structpb.Struct], error) {
	amount := req.Msg.GetFields()["amount"].GetNumberValue()
	if amount <= 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("amount must be positive")) // stored: an answer
	}
	time.Sleep(50 * time.Millisecond) // the card network
	n := p.charges.Add(1)
	msg, err := structpb.NewStruct(map[string]any{"id": fmt.Sprintf("ch_%d", n), "amount": amount})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(msg), nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8095", "address to serve on")
	data := flag.String("data", "", "data directory (default: a new temporary directory)")
	once := flag.Bool("once", false, "call itself, check the answers and exit")
	flag.Parse()

	dir := *data
	if dir == "" {
		d, err := os.MkdirTemp("", "idemkv-connect-")
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
	// Keys per procedure and per caller (the Authorization header).
	idem, err := idemconnect.New(eng, nil)
	if err != nil {
		log.Fatal(err)
	}
	p := &payments{}
	mux := http.NewServeMux()
	mux.Handle(chargeProcedure, connect.NewUnaryHandler(chargeProcedure, p.charge, connect.WithInterceptors(idem)))
	// HTTP/1.1 for Connect and gRPC-Web clients, HTTP/2 without TLS for
	// gRPC clients.
	srv := &http.Server{Handler: mux, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if !*once {
		fmt.Printf("serving %s on http://%s\n", chargeProcedure, ln.Addr())
		log.Fatal(srv.Serve(ln))
	}
	go srv.Serve(ln)
	defer srv.Close()
	if err := selfTest("http://"+ln.Addr().String(), p); err != nil {
		log.Fatal(err)
	}
}

func selfTest(base string, p *payments) error {
	h2 := &http.Transport{Protocols: new(http.Protocols)}
	h2.Protocols.SetUnencryptedHTTP2(true)
	// idemclient.Transport keys requests that have no key and retries them
	// with that key; over the Connect protocol metadata is HTTP headers.
	hc := &http.Client{Transport: &idemclient.Transport{Base: h2}}
	client := connect.NewClient[structpb.Struct, structpb.Struct](hc, base+chargeProcedure)
	grpcClient := connect.NewClient[structpb.Struct, structpb.Struct](&http.Client{Transport: h2}, base+chargeProcedure, connect.WithGRPC())
	charge := func(c *connect.Client[structpb.Struct, structpb.Struct], key string, amount float64) (*connect.Response[structpb.Struct], error) {
		msg, _ := structpb.NewStruct(map[string]any{"amount": amount})
		req := connect.NewRequest(msg)
		req.Header().Set("Authorization", "Bearer sk_demo")
		req.Header().Set("Idempotency-Key", key)
		return c.CallUnary(context.Background(), req)
	}
	first, err := charge(client, "pay-1", 42)
	if err != nil {
		return err
	}
	fmt.Println("first:   ", first.Msg.AsMap())
	again, err := charge(client, "pay-1", 42)
	if err != nil {
		return err
	}
	fmt.Println("retry:   ", again.Msg.AsMap(), "Idempotency-Replay:", again.Header().Get("Idempotency-Replay"))
	if !proto.Equal(first.Msg, again.Msg) || again.Header().Get("Idempotency-Replay") != "true" {
		return fmt.Errorf("the retry was not a replay of the first charge")
	}
	_, err = charge(client, "pay-1", 43)
	fmt.Println("conflict:", connect.CodeOf(err), err)
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		return fmt.Errorf("the same key with another amount got %v, want FailedPrecondition", err)
	}

	var wg sync.WaitGroup
	dups := make([]*connect.Response[structpb.Struct], 8)
	errs := make([]error, len(dups))
	for i := range dups {
		wg.Go(func() { dups[i], errs[i] = charge(grpcClient, "pay-2", 7) })
	}
	wg.Wait()
	for i := range dups {
		if errs[i] != nil {
			return errs[i]
		}
		if !proto.Equal(dups[i].Msg, dups[0].Msg) {
			return fmt.Errorf("concurrent duplicates got different answers: %v and %v", dups[0].Msg, dups[i].Msg)
		}
	}
	fmt.Printf("%d concurrent duplicates over gRPC: %v\n", len(dups), dups[0].Msg.AsMap())
	fmt.Println("charges made:", p.charges.Load())
	if p.charges.Load() != 2 {
		return fmt.Errorf("the handler ran %d times, want 2", p.charges.Load())
	}
	return nil
}
