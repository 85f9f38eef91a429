package idemgrpc_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/idemkv/idemkv/engine/idemgrpc"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
)

func keyCount(p *payments) map[string]int64 {
	m := map[string]int64{}
	p.keys.Range(func(k, v any) bool { m[k.(string)] = v.(*atomic.Int64).Load(); return true })
	return m
}

// The client interceptor keys a call once and retries it with that key
// while the server answers Unavailable: three tries, one key.
func TestClientRetriesUnderOneKey(t *testing.T) {
	p := &payments{}
	var retries atomic.Int64
	cc := serve(t, idemtest.NewEngine(t, nil), nil, p, grpc.WithUnaryInterceptor(idemgrpc.UnaryClientInterceptor(&idemgrpc.ClientOptions{
		BaseDelay: time.Millisecond,
		OnRetry:   func(int, error, time.Duration) { retries.Add(1) },
	})))
	a := call(t, cc, "", map[string]any{"amount": 3, "fail_times": 2})
	if a.err != nil {
		t.Fatal(a.err)
	}
	keys := keyCount(p)
	if len(keys) != 1 || retries.Load() != 2 || p.runs.Load() != 3 {
		t.Fatalf("keys %v, %d retries, %d runs; want one key sent 3 times", keys, retries.Load(), p.runs.Load())
	}
	for _, n := range keys {
		if n != 3 {
			t.Errorf("the key was sent %d times, want 3", n)
		}
	}
}

// A duplicate answered "in progress" (Aborted, with RetryInfo) is retried
// after the delay the server asked for, and gets the replay.
func TestClientRetriesInProgressIntoTheReplay(t *testing.T) {
	p := &payments{}
	cc := serve(t, idemtest.NewEngine(t, nil), &idemgrpc.Options{MaxWait: 10 * time.Millisecond, RetryDelay: 50 * time.Millisecond}, p,
		grpc.WithUnaryInterceptor(idemgrpc.UnaryClientInterceptor(&idemgrpc.ClientOptions{MaxTries: 20})))
	done := make(chan answer)
	go func() { done <- call(t, cc, "k-1", map[string]any{"sleep_ms": 200}) }()
	idemtest.WaitFor(t, "the first call to run", func() bool { return p.runs.Load() == 1 })
	dup := call(t, cc, "k-1", map[string]any{"sleep_ms": 200})
	first := <-done
	if first.err != nil || dup.err != nil || !proto.Equal(first.resp, dup.resp) {
		t.Fatalf("first %v %v, duplicate %v %v", first.resp, first.err, dup.resp, dup.err)
	}
	if p.runs.Load() != 1 {
		t.Errorf("the handler ran %d times, want 1", p.runs.Load())
	}
}

// A call the server answers with a code that is an answer is not retried;
// one that keeps failing stops after MaxTries with ErrRetriesExhausted.
func TestClientStopsOnAnswersAndAfterMaxTries(t *testing.T) {
	p := &payments{}
	cc := serve(t, idemtest.NewEngine(t, nil), nil, p, grpc.WithUnaryInterceptor(idemgrpc.UnaryClientInterceptor(&idemgrpc.ClientOptions{
		BaseDelay: time.Millisecond, MaxTries: 3,
	})))
	if a := call(t, cc, "", map[string]any{"code": float64(codes.NotFound)}); status.Code(a.err) != codes.NotFound || p.runs.Load() != 1 {
		t.Fatalf("%v after %d runs, want NotFound after 1", a.err, p.runs.Load())
	}
	a := call(t, cc, "", map[string]any{"code": float64(codes.Internal)})
	if !errors.Is(a.err, idemgrpc.ErrRetriesExhausted) || status.Code(a.err) != codes.Internal {
		t.Fatalf("%v, want ErrRetriesExhausted", a.err)
	}
	if p.runs.Load() != 4 {
		t.Errorf("%d runs, want 1 + 3", p.runs.Load())
	}
	// The caller's own key is kept.
	req, _ := structpb.NewStruct(map[string]any{"amount": 1})
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer sk_test_1", "idempotency-key", "mine")
	if err := cc.Invoke(ctx, charge, req, new(structpb.Struct)); err != nil {
		t.Fatal(err)
	}
	if keyCount(p)["mine"] != 1 {
		t.Errorf("the caller's key was not sent as it was: %v", keyCount(p))
	}
}
