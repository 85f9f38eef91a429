// Command quickstart shows idemkv's four answers on an embedded data
// directory: Proceed, Replay, Conflict and InProgress, and a claim recovered
// after a restart.
//
//	go run ./examples/quickstart [-data DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

func main() {
	data := flag.String("data", "", "data directory (default: a new temporary directory)")
	flag.Parse()
	dir := *data
	if dir == "" {
		d, err := os.MkdirTemp("", "idemkv-quickstart-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	if err := run(dir); err != nil {
		log.Fatal(err)
	}
}

func run(dir string) error {
	ctx := context.Background()
	e, err := engine.Open(dir, nil) // nil: the defaults (24h TTL, fsync before Complete returns)
	if err != nil {
		return err
	}
	fmt.Println("opened", dir)

	key := record.Key{Scope: "tenant-a", Endpoint: "POST /v1/calls", Key: "order-42"}
	body := []byte(`{"to":"+442079460000","agent":"agent_7"}`)
	request := engine.Request{Key: key, Fingerprint: record.Sum(body), RequestID: "req_1"}

	// 1. First time: Proceed. Run the handler, then complete the claim.
	res, err := e.Begin(ctx, request)
	if err != nil {
		return err
	}
	fmt.Println("first request:  ", res.Outcome)
	err = res.Claim.Complete(ctx, engine.Response{
		Status: 201,
		Header: []record.Header{{Name: "Content-Type", Value: "application/json"}},
		Body:   []byte(`{"data":{"id":"call_1","status":"queued"}}`),
	})
	if err != nil {
		return err
	}

	// 2. A retry with the same body: Replay, the stored response verbatim.
	res, err = e.Begin(ctx, request)
	if err != nil {
		return err
	}
	fmt.Printf("retry:           %v %d %s\n", res.Outcome, res.Record.Status, res.Record.Body)

	// 3. The same key with a different body: Conflict, naming the original.
	other := request
	other.Fingerprint = record.Sum([]byte(`{"to":"+15555550100"}`))
	other.RequestID = "req_2"
	res, err = e.Begin(ctx, other)
	if err != nil {
		return err
	}
	fmt.Println("different body: ", res.Outcome, "conflicts_with", res.OriginalRequestID)

	// 4. A duplicate while the first is still running: InProgress (or, with
	//    the default Wait policy, it waits and then replays).
	key2 := key
	key2.Key = "order-43"
	running, err := e.Begin(ctx, engine.Request{Key: key2, Fingerprint: record.Sum(body), RequestID: "req_3"})
	if err != nil {
		return err
	}
	dup, err := e.Begin(ctx, engine.Request{Key: key2, Fingerprint: record.Sum(body), WhenInProgress: engine.NoWait})
	if err != nil {
		return err
	}
	fmt.Println("duplicate:      ", dup.Outcome, "running request", dup.OriginalRequestID)

	// 5. The process dies while order-43 runs. After a restart the retry
	//    proceeds, flagged Recovered, so the application can reconcile.
	_ = running // never completed
	if err := e.Close(); err != nil {
		return err
	}
	e, err = engine.Open(dir, nil)
	if err != nil {
		return err
	}
	defer e.Close()
	res, err = e.Begin(ctx, engine.Request{Key: key2, Fingerprint: record.Sum(body), RequestID: "req_4"})
	if err != nil {
		return err
	}
	fmt.Println("after restart:  ", res.Outcome, "recovered", res.Recovered, "attempt", res.Claim.Attempt())
	if err := res.Claim.Release(ctx); err != nil {
		return err
	}
	// The completed record of order-42 survived the restart too.
	res, err = e.Begin(ctx, request)
	if err != nil {
		return err
	}
	fmt.Println("order-42 again: ", res.Outcome)
	return nil
}
