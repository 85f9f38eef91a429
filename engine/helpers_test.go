package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

var ctx = context.Background()

// newTestEngine opens an engine on a fresh temporary directory and closes
// it when the test ends.
func newTestEngine(t testing.TB, o *engine.Options) (*engine.Engine, string) {
	t.Helper()
	dir := t.TempDir()
	e, err := engine.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e, dir
}

func key(k string) record.Key {
	return record.Key{Scope: "tenant-a", Endpoint: "POST /v1/calls", Key: k}
}

func req(k, body string) engine.Request {
	return engine.Request{Key: key(k), Fingerprint: record.Sum([]byte(body)), RequestID: "req-" + k + "-" + body}
}

func response(body string) engine.Response {
	return engine.Response{
		Status: 201,
		Header: []record.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Location", Value: "/v1/calls/1"}},
		Body:   []byte(body),
	}
}

func begin(t testing.TB, e *engine.Engine, r engine.Request) engine.Result {
	t.Helper()
	res, err := e.Begin(ctx, r)
	if err != nil {
		t.Fatalf("Begin(%v): %v", r.Key, err)
	}
	return res
}

func mustOutcome(t testing.TB, res engine.Result, want engine.Outcome) {
	t.Helper()
	if res.Outcome != want {
		t.Fatalf("outcome = %v; want %v (result %+v)", res.Outcome, want, res)
	}
}

func assertReplay(t testing.TB, res engine.Result, want engine.Response) {
	t.Helper()
	mustOutcome(t, res, engine.Replay)
	r := res.Record
	if r.Status != want.Status || !bytes.Equal(r.Body, want.Body) || fmt.Sprint(r.Header) != fmt.Sprint(want.Header) {
		t.Fatalf("replayed %d %q %v; want %d %q %v", r.Status, r.Body, r.Header, want.Status, want.Body, want.Header)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// bodyOf is the response body stored for key k: big enough that a few
// hundred fill a small memtable and reach tables.
func bodyOf(k string) string { return "body of " + k + strings.Repeat(" padding", 40) }

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
