package idemjob_test

import (
	"context"
	"fmt"
	"log"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemjob"
)

// A queue consumer: the message is delivered twice (the broker did not
// see the first acknowledgement); the invoice is sent once, and the
// redelivery gets the same receipt.
func ExampleDo() {
	store, err := engine.Open("", &engine.Options{InMemory: true})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	type Receipt struct{ Invoice string }
	sent := 0
	sendInvoice := func(ctx context.Context, run *idemjob.Run) (Receipt, error) {
		sent++
		return Receipt{Invoice: "inv_0042"}, nil
	}
	for _, delivery := range []string{"first", "redelivery"} {
		msg := idemjob.Call{Name: "send-invoice", Key: "msg-0042", Input: []byte(`{"order":42}`)}
		res, err := idemjob.Do(context.Background(), store, msg, sendInvoice, nil)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: %s (replayed %v)\n", delivery, res.Value.Invoice, res.Replayed)
	}
	fmt.Println("invoices sent:", sent)
	// Output:
	// first: inv_0042 (replayed false)
	// redelivery: inv_0042 (replayed true)
	// invoices sent: 1
}
