package record_test

import (
	"fmt"

	"github.com/idemkv/idemkv/codec"
	"github.com/idemkv/idemkv/record"
)

func Example() {
	// A fingerprint over the method, the endpoint and the request body.
	h := record.NewHasher()
	h.FieldString("POST")
	h.FieldString("/v1/calls")
	_, _ = h.Write([]byte(`{"to":"+442079460000"}`))

	r := &record.Record{
		State:       record.Completed,
		RequestID:   "req_123",
		Fingerprint: h.Sum(),
		Status:      201,
		Header:      []record.Header{{Name: "Content-Type", Value: "application/json"}},
		Body:        []byte(`{"data":{"id":"call_1"}}`),
	}
	enc, err := record.Append(nil, r, codec.Auto)
	if err != nil {
		panic(err)
	}
	got, err := record.Decode(enc)
	if err != nil {
		panic(err)
	}
	fmt.Println(got.State, got.Status, got.Header[0].Value, string(got.Body), got.Fingerprint == r.Fingerprint)

	key := record.Key{Scope: "tenant-a", Endpoint: "POST /v1/calls", Key: "abc"}
	fmt.Printf("%x\n", key.Append(nil))
	// Output:
	// completed 201 application/json {"data":{"id":"call_1"}} true
	// 0874656e616e742d610e504f5354202f76312f63616c6c7303616263
}
