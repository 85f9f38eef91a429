package engine_test

import (
	"context"
	"fmt"
	"os"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

func Example() {
	dir, _ := os.MkdirTemp("", "idemkv-example-")
	defer os.RemoveAll(dir)
	e, err := engine.Open(dir, nil)
	if err != nil {
		panic(err)
	}
	defer e.Close()
	ctx := context.Background()

	body := []byte(`{"amount":100}`)
	req := engine.Request{
		Key:         record.Key{Scope: "tenant-a", Endpoint: "POST /v1/charges", Key: "k1"},
		Fingerprint: record.Sum(body),
		RequestID:   "req_1",
	}
	res, _ := e.Begin(ctx, req)
	fmt.Println(res.Outcome)
	_ = res.Claim.Complete(ctx, engine.Response{Status: 201, Body: []byte(`{"id":"ch_1"}`)})

	res, _ = e.Begin(ctx, req)
	fmt.Println(res.Outcome, res.Record.Status, string(res.Record.Body))

	req.Fingerprint = record.Sum([]byte(`{"amount":200}`))
	res, _ = e.Begin(ctx, req)
	fmt.Println(res.Outcome, res.OriginalRequestID)
	// Output:
	// proceed
	// replay 201 {"id":"ch_1"}
	// conflict req_1
}
