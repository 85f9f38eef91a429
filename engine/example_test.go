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

// A handler in steps records a recovery point after each; after a crash,
// the claim that recovers the key carries the last one. Here the "crash"
// is a Close with the claim unfinished, and the restart an Open.
func ExampleClaim_Checkpoint() {
	dir, _ := os.MkdirTemp("", "idemkv-example-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	req := engine.Request{
		Key:         record.Key{Scope: "tenant-a", Endpoint: "POST /v1/payments", Key: "p1"},
		Fingerprint: record.Sum([]byte(`{"amount":100}`)),
		RequestID:   "req_1",
	}

	e, _ := engine.Open(dir, nil)
	res, _ := e.Begin(ctx, req)
	_ = res.Claim.Checkpoint(ctx, "charged", []byte("ch_42")) // the card is charged
	_ = e.Close()                                             // the process dies before it answers

	e, _ = engine.Open(dir, nil)
	defer e.Close()
	res, _ = e.Begin(ctx, req)
	cp := res.Claim.LastCheckpoint()
	fmt.Println(res.Outcome, res.Recovered, res.Claim.Attempt(), cp.Phase, string(cp.Data))
	// Skip the charge, send the receipt, answer:
	_ = res.Claim.Complete(ctx, engine.Response{Status: 201, Body: []byte(`{"charge":"ch_42"}`)})
	// Output:
	// proceed true 2 charged ch_42
}
