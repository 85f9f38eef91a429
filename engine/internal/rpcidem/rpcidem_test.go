package rpcidem

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/idemkv/idemkv/codec"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

func statusSeeds() [][]byte {
	return [][]byte{
		nil,
		MarshalStatus(Status{Code: InvalidArgument, Message: "card declined"}),
		MarshalStatus(Status{Code: NotFound, Message: "no such account", Details: []Detail{
			{TypeURL: "type.googleapis.com/google.rpc.ErrorInfo", Value: []byte{0x0a, 0x03, 'A', 'B', 'C'}},
			{TypeURL: "type.googleapis.com/google.rpc.RetryInfo"},
		}}),
		{0x08, 0xff, 0xff, 0xff, 0xff, 0x0f}, // code -1 as int32 encodes (sign-extended here: truncated)
		{0x12, 0x02, 0xff, 0xfe},             // a message that is not UTF-8
		{0x1a, 0x05, 0x0a, 0x10, 'x'},        // a detail whose type URL overruns
		{0x28, 0x01, 0x08, 0x05},             // an unknown field, then the code
	}
}

// A stored error decodes to what was encoded, details and all.
func TestStatusRoundTrips(t *testing.T) {
	for _, s := range []Status{
		{Code: InvalidArgument, Message: "card declined"},
		{Code: FailedPrecondition, Details: []Detail{{TypeURL: "t/x", Value: []byte{0, 1, 2}}, {TypeURL: "t/y", Value: []byte{}}}},
		{Code: 1<<31 - 1},
	} {
		got, err := UnmarshalStatus(MarshalStatus(s))
		if err != nil {
			t.Fatal(err)
		}
		for i := range s.Details {
			if len(s.Details[i].Value) == 0 {
				s.Details[i].Value = nil
			}
		}
		if !reflect.DeepEqual(got, s) {
			t.Errorf("round trip: %+v, want %+v", got, s)
		}
	}
}

// FuzzUnmarshalStatus: any bytes decode to a status or an error, never a
// panic; a status decoded re-encodes to bytes that decode to it again.
func FuzzUnmarshalStatus(f *testing.F) {
	for _, s := range statusSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := UnmarshalStatus(b)
		if err != nil {
			if !errors.Is(err, errStatus) {
				t.Fatalf("error %v does not match errStatus", err)
			}
			return
		}
		again, err := UnmarshalStatus(MarshalStatus(s))
		if err != nil || !reflect.DeepEqual(again, s) {
			t.Fatalf("re-encoded %+v decodes to %+v, %v", s, again, err)
		}
	})
}

// A reply goes into a record and comes out whole.
func TestReplyRoundTripsThroughARecord(t *testing.T) {
	for _, r := range []*Reply{
		{Status: Status{Code: OK}, Type: "payments.v1.Charge", Message: []byte{1, 2, 3},
			Header:  []Pair{{Key: "x-charge-id", Value: "ch_1"}, {Key: "x-raw-bin", Value: "\x00\xff"}, {Key: "x-sig-bin", Value: "not base64!", Text: true}},
			Trailer: []Pair{{Key: "x-ledger", Value: "e1"}}},
		{Status: Status{Code: OK}}, // a nil response
		{Status: Status{Code: InvalidArgument, Message: "montant refus\xc3"}}, // cut inside a character
		{Status: Status{Code: NotFound, Message: "no account", Details: []Detail{{TypeURL: "t/x", Value: []byte{9}}}}},
	} {
		resp, _ := r.Response(0)
		if resp.Status != HTTPStatus(r.Status.Code) {
			t.Errorf("status %d, want %d", resp.Status, HTTPStatus(r.Status.Code))
		}
		got, err := Decode(&record.Record{State: record.Completed, Status: resp.Status, Header: resp.Header, Body: resp.Body})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip: %+v, want %+v", got, r)
		}
	}
}

// A record without an RPC's layout is never replayed: ErrCorrupt.
func TestRecordsNotOfAnRPCAreCorrupt(t *testing.T) {
	ok := []record.Header{{Name: ":code", Value: "0"}, {Name: ":type", Value: "x.Y"}}
	for name, rec := range map[string]*record.Record{
		"an HTTP record":          {Status: 201, Header: []record.Header{{Name: "Content-Type", Value: "application/json"}}, Body: []byte("{}")},
		"no code":                 {Status: 200},
		"a code out of range":     {Header: []record.Header{{Name: ":code", Value: "99999999999"}}},
		"a response with no type": {Header: []record.Header{{Name: ":code", Value: "0"}}},
		"a body with no type":     {Header: []record.Header{{Name: ":code", Value: "0"}, {Name: ":type", Value: ""}}, Body: []byte{1}},
		"an unknown entry":        {Header: append(ok[:2:2], record.Header{Name: "x-plain", Value: "v"})},
		"an empty metadata key":   {Header: append(ok[:2:2], record.Header{Name: "h:", Value: "v"})},
		"a damaged error":         {Header: []record.Header{{Name: ":code", Value: "5"}}, Body: []byte{0x12, 0x09}},
		"codes that disagree":     {Header: []record.Header{{Name: ":code", Value: "5"}}, Body: MarshalStatus(Status{Code: 3})},
	} {
		if _, err := Decode(rec); !errors.Is(err, engine.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

// FuzzDecode: a record of any headers and body decodes to a reply that
// stores back as the same record, or to ErrCorrupt; never a panic.
func FuzzDecode(f *testing.F) {
	f.Add("0", "x.Y", "h:x-a", "1", []byte{1})
	f.Add("5", "", "t:x-b", "2", MarshalStatus(Status{Code: 5, Message: "m"}))
	f.Add("abc", "", "", "", []byte(nil))
	f.Fuzz(func(t *testing.T, code, typ, name, value string, body []byte) {
		h := []record.Header{{Name: ":code", Value: code}}
		if typ != "" {
			h = append(h, record.Header{Name: ":type", Value: typ})
		}
		if name != "" {
			h = append(h, record.Header{Name: name, Value: value})
		}
		r, err := Decode(&record.Record{Header: h, Body: body})
		if err != nil {
			if !errors.Is(err, engine.ErrCorrupt) {
				t.Fatalf("error %v does not match ErrCorrupt", err)
			}
			return
		}
		resp, dropped := r.Response(0)
		if dropped > 0 {
			return // past the limits: left out, by design
		}
		again, err := Decode(&record.Record{Header: resp.Header, Body: resp.Body})
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("stored again, %+v decodes to %+v, %v", r, again, err)
		}
		if r.Status.Code == OK && !bytes.Equal(r.Message, body) {
			t.Fatal("the message is not the body")
		}
	})
}

// The policy in codes is idemhttp's in statuses.
func TestShouldStoreFollowsTheHTTPPolicy(t *testing.T) {
	for code := uint32(0); code <= 20; code++ {
		s := HTTPStatus(code)
		http := s >= 200 && s < 300 || s >= 400 && s < 500 && s != 408 && s != 409 && s != 425 && s != 429 && s != 499
		if code == AlreadyExists {
			http = true // 409 in HTTP, but an answer in gRPC (Aborted is the retryable 409)
		}
		if ShouldStore(code) != http {
			t.Errorf("code %d (HTTP %d): ShouldStore %v, HTTP policy %v", code, s, ShouldStore(code), http)
		}
	}
}

// Metadata past the record's limits is left out, not a reason to release
// the key: the response and the code are always stored.
func TestMetadataPastTheLimitsIsDropped(t *testing.T) {
	r := &Reply{Status: Status{Code: OK}, Type: "x.Y", Message: []byte{1}}
	for i := range 120 {
		r.Header = append(r.Header, Pair{Key: fmt.Sprintf("x-h%d", i), Value: "v"})
	}
	r.Trailer = []Pair{{Key: "x-big", Value: strings.Repeat("b", record.MaxHeaderBytes)}, {Key: "x-small", Value: "s"}}
	resp, dropped := r.Response(0)
	if len(resp.Header) != record.MaxHeaders || dropped != 120+2-(record.MaxHeaders-2) {
		t.Fatalf("%d entries stored, %d dropped", len(resp.Header), dropped)
	}
	rec := &record.Record{State: record.Completed, RequestID: "r", Status: resp.Status, Header: resp.Header, Body: resp.Body}
	if _, err := record.Append(nil, rec, codec.Auto); err != nil {
		t.Fatalf("the record does not fit: %v", err)
	}
	got, err := Decode(rec)
	if err != nil || got.Header[0].Key != "x-h0" || len(got.Trailer) != 0 {
		t.Fatalf("%+v, %v", got, err)
	}
}
