package redisstore

import (
	"errors"
	"reflect"
	"testing"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

func sampleValues() []*value {
	k := string(record.Key{Scope: "t", Endpoint: "POST /x", Key: "k"}.Append(nil))
	cid := "0123456789abcdef0123456789abcdef0000000000000001"
	rec, err := record.Append(nil, &record.Record{State: record.Completed, RequestID: "r1", Status: 201, Body: []byte(`{"ok":true}`)}, 0)
	if err != nil {
		panic(err)
	}
	return []*value{
		{state: 'f', cid: cid, ttl: 86400000, k: k, fp: record.Sum([]byte("body")), tok: 1, att: 1, ca: 1700000000000000000, rid: "r1"},
		{state: 'f', cid: cid, ttl: 1, k: k, tok: 7, att: 7, ca: 1, rid: "r2", prid: "r1",
			cp: &record.Checkpoint{Phase: "charged", Data: []byte{0, 1, 2}}},
		{state: 'c', cid: cid, ttl: 3600000, k: k, fp: record.Sum([]byte("body")), tok: 1, att: 1, rid: "r1", rec: string(rec)},
	}
}

// TestValueRoundTrips: what appendValue writes, parseValue reads back.
func TestValueRoundTrips(t *testing.T) {
	for _, v := range sampleValues() {
		b := appendValue(nil, v)
		if len(b) < headerLen || b[offWait] != '0' {
			t.Fatalf("header %q", b[:min(len(b), headerLen)])
		}
		got, err := parseValue(string(b))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Fatalf("read %+v\nwrote %+v", got, v)
		}
		b[offWait] = '1' // set in place by lookScript: outside the checksum
		if _, err := parseValue(string(b)); err != nil {
			t.Fatalf("with w set: %v", err)
		}
	}
}

// TestDamagedValueIsCorrupt: every single flipped bit, and every cut, of
// a stored value is refused with ErrCorrupt, but for the w byte turned
// from '0' to '1', which is a waiter's mark.
func TestDamagedValueIsCorrupt(t *testing.T) {
	for _, v := range sampleValues() {
		b := appendValue(nil, v)
		for i := range b {
			for bit := range 8 {
				d := []byte(string(b))
				if d[i] ^= 1 << bit; i == offWait && d[i] == '1' {
					continue // a waiter's mark
				}
				if _, err := parseValue(string(d)); !errors.Is(err, engine.ErrCorrupt) {
					t.Fatalf("byte %d bit %d flipped: %v; want ErrCorrupt", i, bit, err)
				}
			}
		}
		for n := range len(b) {
			if _, err := parseValue(string(b[:n])); !errors.Is(err, engine.ErrCorrupt) {
				t.Fatalf("cut to %d of %d bytes: %v; want ErrCorrupt", n, len(b), err)
			}
		}
	}
}

// FuzzParseValue: parseValue never panics, and what it accepts it writes
// back as a value it reads the same. The input gets a valid checksum, so
// that the fuzzer reaches the fields.
func FuzzParseValue(f *testing.F) {
	for _, v := range sampleValues() {
		b := appendValue(nil, v)
		f.Add(b[:len(b)-4])
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < offCID {
			_, _ = parseValue(string(in))
			return
		}
		b := sealValue(append([]byte(nil), in...), 0)
		v, err := parseValue(string(b))
		if err != nil {
			if !errors.Is(err, engine.ErrCorrupt) {
				t.Fatalf("error %v does not match ErrCorrupt", err)
			}
			return
		}
		again, err := parseValue(string(appendValue(nil, v)))
		if err != nil {
			t.Fatalf("rewritten: %v", err)
		}
		if !reflect.DeepEqual(again, v) {
			t.Fatalf("rewritten %+v\nread %+v", again, v)
		}
	})
}
