package idemgrpc_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemgrpc"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
	"github.com/idemkv/idemkv/engine/internal/rpcidem"
	"github.com/idemkv/idemkv/record"
)

const (
	service = "idemkv.test.Payments"
	charge  = "/" + service + "/Charge"
)

// payments is the test service: Charge answers a Struct with a Struct
// and does what the request's fields ask ("code": fail with that code,
// "sleep_ms": take that long, "panic": panic, "fail_times": fail
// Unavailable that many times first). It sets header metadata
// x-charge-id and trailer metadata x-ledger.
type payments struct {
	runs  atomic.Int64
	fails atomic.Int64
	keys  sync.Map // idempotency keys seen, with counts
}

func (p *payments) charge(ctx context.Context, req *structpb.Struct) (*structpb.Struct, error) {
	n := p.runs.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	for _, k := range md.Get("idempotency-key") {
		c, _ := p.keys.LoadOrStore(k, new(atomic.Int64))
		c.(*atomic.Int64).Add(1)
	}
	f := req.GetFields()
	if ms := f["sleep_ms"].GetNumberValue(); ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	if f["panic"].GetBoolValue() {
		panic("the card network is on fire")
	}
	if times := f["fail_times"].GetNumberValue(); times > 0 && p.fails.Add(1) <= int64(times) {
		return nil, status.Error(codes.Unavailable, "the card network is busy")
	}
	if c := f["code"].GetNumberValue(); c > 0 {
		st, _ := status.New(codes.Code(c), "card declined").WithDetails(&errdetails.ErrorInfo{Reason: "CARD_DECLINED", Domain: "payments.test"})
		return nil, st.Err()
	}
	id := fmt.Sprintf("ch_%d", n)
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-charge-id", id, "x-bin-bin", "\x00\xffraw"))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-ledger", "entry-"+id))
	return structpb.NewStruct(map[string]any{"id": id, "amount": f["amount"].GetNumberValue()})
}

var paymentsDesc = grpc.ServiceDesc{
	ServiceName: service,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Charge",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(structpb.Struct)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				return srv.(*payments).charge(ctx, req.(*structpb.Struct))
			}
			if interceptor == nil {
				return h(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: charge}, h)
		},
	}},
}

// recoverer turns a panic into Internal, as a server's recovery
// interceptor does; it goes before idemgrpc's.
func recoverer(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = status.Errorf(codes.Internal, "panic: %v", p)
		}
	}()
	return h(ctx, req)
}

// serve starts a grpc.Server on a loopback port with the interceptor over
// store, and returns a client connection to it.
func serve(t testing.TB, store engine.Store, o *idemgrpc.Options, p *payments, clientOpts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	if o == nil {
		o = &idemgrpc.Options{}
	}
	if o.Logger == nil {
		o.Logger = idemtest.QuietLogger()
	}
	icpt, err := idemgrpc.UnaryServerInterceptor(store, o)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(recoverer, icpt))
	srv.RegisterService(&paymentsDesc, p)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, clientOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

type answer struct {
	resp            *structpb.Struct
	err             error
	header, trailer metadata.MD
}

func call(t testing.TB, cc *grpc.ClientConn, key string, fields map[string]any, md ...string) answer {
	t.Helper()
	req, err := structpb.NewStruct(fields)
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), append([]string{"authorization", "Bearer sk_test_1"}, md...)...)
	if key != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "idempotency-key", key)
	}
	var a answer
	a.resp = new(structpb.Struct)
	a.err = cc.Invoke(ctx, charge, req, a.resp, grpc.Header(&a.header), grpc.Trailer(&a.trailer))
	return a
}

func errorInfo(err error) *errdetails.ErrorInfo {
	for _, d := range status.Convert(err).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei
		}
	}
	return nil
}

func retryInfo(err error) *errdetails.RetryInfo {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri
		}
	}
	return nil
}

// A retry gets the first call's response, header and trailer metadata
// (binary values included) with idempotency-replay: true, and the
// handler does not run again.
func TestRetryReplaysTheResponseAndItsMetadata(t *testing.T) {
	p := &payments{}
	cc := serve(t, idemtest.NewEngine(t, nil), nil, p)
	first := call(t, cc, "k-1", map[string]any{"amount": 42})
	if first.err != nil {
		t.Fatal(first.err)
	}
	if got := first.header.Get("idempotency-replay"); len(got) != 1 || got[0] != "false" {
		t.Errorf("first call: idempotency-replay = %q, want false", got)
	}
	again := call(t, cc, "k-1", map[string]any{"amount": 42})
	if again.err != nil {
		t.Fatal(again.err)
	}
	if !proto.Equal(first.resp, again.resp) {
		t.Errorf("replay = %v, want %v", again.resp, first.resp)
	}
	if got := again.header.Get("idempotency-replay"); len(got) != 1 || got[0] != "true" {
		t.Errorf("replay: idempotency-replay = %q, want true", got)
	}
	for _, k := range []string{"x-charge-id", "x-bin-bin"} {
		if f, a := first.header.Get(k), again.header.Get(k); len(f) != 1 || fmt.Sprint(f) != fmt.Sprint(a) {
			t.Errorf("header %s: first %q, replay %q", k, f, a)
		}
	}
	if f, a := first.trailer.Get("x-ledger"), again.trailer.Get("x-ledger"); len(f) != 1 || fmt.Sprint(f) != fmt.Sprint(a) {
		t.Errorf("trailer x-ledger: first %q, replay %q", f, a)
	}
	if n := p.runs.Load(); n != 1 {
		t.Errorf("the handler ran %d times, want 1", n)
	}
}

// The same key with another request is FailedPrecondition with an
// ErrorInfo naming the original call; the handler does not run.
func TestConflictIsFailedPreconditionNamingTheOriginal(t *testing.T) {
	p := &payments{}
	cc := serve(t, idemtest.NewEngine(t, nil), nil, p)
	if a := call(t, cc, "k-1", map[string]any{"amount": 42}); a.err != nil {
		t.Fatal(a.err)
	}
	a := call(t, cc, "k-1", map[string]any{"amount": 43})
	if status.Code(a.err) != codes.FailedPrecondition {
		t.Fatalf("conflict: %v, want FailedPrecondition", a.err)
	}
	ei := errorInfo(a.err)
	if ei == nil || ei.Reason != "IDEMPOTENCY_CONFLICT" || ei.Domain != "idemkv.dev" || !strings.HasPrefix(ei.Metadata["conflicts_with"], "req_") {
		t.Errorf("conflict ErrorInfo = %v", ei)
	}
	if n := p.runs.Load(); n != 1 {
		t.Errorf("the handler ran %d times, want 1", n)
	}
}

// The promise under a flood: 1,000 identical calls at once over a real
// connection run the handler once, and every one gets the same response.
func TestThousandConcurrentIdenticalCallsRunOnce(t *testing.T) {
	p := &payments{}
	cc := serve(t, idemtest.NewEngine(t, nil), nil, p)
	const n = 1000
	answers := make([]answer, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range answers {
		wg.Go(func() {
			<-start
			answers[i] = call(t, cc, "k-flood", map[string]any{"amount": 7, "sleep_ms": 50})
		})
	}
	close(start)
	wg.Wait()
	for i, a := range answers {
		if a.err != nil {
			t.Fatalf("call %d: %v", i, a.err)
		}
		if !proto.Equal(a.resp, answers[0].resp) {
			t.Fatalf("call %d got %v, call 0 got %v", i, a.resp, answers[0].resp)
		}
	}
	if got := p.runs.Load(); got != 1 {
		t.Errorf("the handler ran %d times, want 1", got)
	}
}

// An error the policy stores is replayed with its code, message and
// details; one it releases lets the retry run the handler again.
func TestErrorsAreStoredOrReleasedByCode(t *testing.T) {
	p := &payments{}
	cc := serve(t, idemtest.NewEngine(t, nil), nil, p)
	first := call(t, cc, "k-bad", map[string]any{"code": float64(codes.InvalidArgument)})
	again := call(t, cc, "k-bad", map[string]any{"code": float64(codes.InvalidArgument)})
	if status.Code(first.err) != codes.InvalidArgument || !proto.Equal(status.Convert(first.err).Proto(), status.Convert(again.err).Proto()) {
		t.Errorf("stored error: first %v, replay %v", first.err, again.err)
	}
	if ei := errorInfo(again.err); ei == nil || ei.Reason != "CARD_DECLINED" {
		t.Errorf("replayed details: %v", ei)
	}
	if got := again.header.Get("idempotency-replay"); len(got) != 1 || got[0] != "true" {
		t.Errorf("replayed error: idempotency-replay = %q", got)
	}
	if n := p.runs.Load(); n != 1 {
		t.Fatalf("a stored error: the handler ran %d times, want 1", n)
	}
	for i := range 2 {
		a := call(t, cc, "k-down", map[string]any{"code": float64(codes.Internal)})
		if status.Code(a.err) != codes.Internal {
			t.Fatalf("try %d: %v", i, a.err)
		}
	}
	if n := p.runs.Load(); n != 3 {
		t.Errorf("a released error: the handler ran %d times in all, want 3", n)
	}
}

// A panic releases the key (the recovery interceptor answers Internal);
// the retry runs the handler again.
func TestPanicReleasesTheKey(t *testing.T) {
	p := &payments{}
	cc := serve(t, idemtest.NewEngine(t, nil), nil, p)
	for i := range 2 {
		if a := call(t, cc, "k-panic", map[string]any{"panic": true}); status.Code(a.err) != codes.Internal {
			t.Fatalf("try %d: %v, want Internal from the recovery interceptor", i, a.err)
		}
	}
	if n := p.runs.Load(); n != 2 {
		t.Errorf("the handler ran %d times, want 2", n)
	}
}

// A store that fails answers Unavailable with a RetryInfo, and the handler
// does not run unprotected.
func TestFailingStoreIsUnavailableWithRetryInfo(t *testing.T) {
	p := &payments{}
	eng := idemtest.NewEngine(t, nil)
	cc := serve(t, eng, nil, p)
	eng.Close()
	a := call(t, cc, "k-1", map[string]any{"amount": 1})
	if status.Code(a.err) != codes.Unavailable {
		t.Fatalf("closed store: %v, want Unavailable", a.err)
	}
	if ri := retryInfo(a.err); ri == nil || ri.RetryDelay.AsDuration() <= 0 {
		t.Errorf("RetryInfo = %v", ri)
	}
	if ei := errorInfo(a.err); ei == nil || ei.Reason != "IDEMPOTENCY_STORE_UNAVAILABLE" {
		t.Errorf("ErrorInfo = %v", ei)
	}
	if n := p.runs.Load(); n != 0 {
		t.Errorf("the handler ran %d times, want 0", n)
	}
}

// A duplicate that waits longer than MaxWait is answered Aborted, in
// progress, with a RetryInfo; the handler runs once.
func TestDuplicateWaitingPastMaxWaitIsAborted(t *testing.T) {
	p := &payments{}
	cc := serve(t, idemtest.NewEngine(t, nil), &idemgrpc.Options{MaxWait: 20 * time.Millisecond}, p)
	done := make(chan answer)
	go func() { done <- call(t, cc, "k-slow", map[string]any{"sleep_ms": 1000}) }()
	idemtest.WaitFor(t, "the first call to run", func() bool { return p.runs.Load() == 1 })
	a := call(t, cc, "k-slow", map[string]any{"sleep_ms": 1000})
	if status.Code(a.err) != codes.Aborted {
		t.Fatalf("duplicate: %v, want Aborted", a.err)
	}
	if ei := errorInfo(a.err); ei == nil || ei.Reason != "IDEMPOTENCY_IN_PROGRESS" {
		t.Errorf("ErrorInfo = %v", ei)
	}
	if retryInfo(a.err) == nil {
		t.Error("no RetryInfo")
	}
	if first := <-done; first.err != nil {
		t.Fatal(first.err)
	}
	if n := p.runs.Load(); n != 1 {
		t.Errorf("the handler ran %d times, want 1", n)
	}
}

// What the interceptor refuses before anything runs.
func TestMalformedCallsAreRefused(t *testing.T) {
	p := &payments{}
	cc := serve(t, idemtest.NewEngine(t, nil), nil, p)
	cases := []struct {
		name string
		key  string
		md   []string
		anon bool
		want codes.Code
	}{
		{name: "two keys", key: "k-1", md: []string{"idempotency-key", "k-2"}, want: codes.InvalidArgument},
		{name: "a key over 255 bytes", key: strings.Repeat("k", 300), want: codes.InvalidArgument},
		{name: "two credentials", key: "k-1", md: []string{"authorization", "Bearer sk_other"}, want: codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := call(t, cc, tc.key, map[string]any{"amount": 1}, tc.md...)
			if status.Code(a.err) != tc.want {
				t.Fatalf("%v, want %v", a.err, tc.want)
			}
		})
	}
	t.Run("no caller", func(t *testing.T) {
		req, _ := structpb.NewStruct(map[string]any{"amount": 1})
		ctx := metadata.AppendToOutgoingContext(context.Background(), "idempotency-key", "k-anon")
		err := cc.Invoke(ctx, charge, req, new(structpb.Struct))
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("%v, want Unauthenticated", err)
		}
	})
	if n := p.runs.Load(); n != 0 {
		t.Errorf("the handler ran %d times, want 0", n)
	}
	// A call without a key is not the interceptor's: it runs every time.
	for range 2 {
		if a := call(t, cc, "", map[string]any{"amount": 1}); a.err != nil {
			t.Fatal(a.err)
		}
	}
	if n := p.runs.Load(); n != 2 {
		t.Errorf("keyless calls: the handler ran %d times, want 2", n)
	}
}

// Keys are kept per caller: another caller's call with the same key is a
// call of its own.
func TestKeysArePerCaller(t *testing.T) {
	p := &payments{}
	cc := serve(t, idemtest.NewEngine(t, nil), nil, p)
	a := call(t, cc, "k-1", map[string]any{"amount": 1})
	req, _ := structpb.NewStruct(map[string]any{"amount": 1})
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer sk_test_2", "idempotency-key", "k-1")
	b := new(structpb.Struct)
	if err := cc.Invoke(ctx, charge, req, b); err != nil || a.err != nil {
		t.Fatal(err, a.err)
	}
	if proto.Equal(a.resp, b) || p.runs.Load() != 2 {
		t.Errorf("two callers shared a key: %v and %v, %d runs", a.resp, b, p.runs.Load())
	}
}

// FingerprintExclude: a retry that differs only in an excluded field
// replays; one that differs elsewhere conflicts.
func TestFingerprintExcludeIgnoresListedFields(t *testing.T) {
	p := &payments{}
	cc := serve(t, idemtest.NewEngine(t, nil), &idemgrpc.Options{FingerprintExclude: []string{"fields"}}, p)
	_ = cc
	// Struct keeps its values in a map field named "fields": excluding it
	// makes every Struct the same request.
	first := call(t, cc, "k-1", map[string]any{"amount": 1})
	again := call(t, cc, "k-1", map[string]any{"amount": 2})
	if first.err != nil || again.err != nil || !proto.Equal(first.resp, again.resp) {
		t.Fatalf("first %v %v, retry %v %v", first.resp, first.err, again.resp, again.err)
	}
	if _, err := idemgrpc.UnaryServerInterceptor(idemtest.NewEngine(t, nil), &idemgrpc.Options{FingerprintExclude: []string{"a..b"}}); err == nil {
		t.Error("a malformed path was accepted")
	}
}

// An acknowledged response outlives the process: a server on a reopened
// data directory replays it.
func TestReplaySurvivesARestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p := &payments{}
	eng := idemtest.OpenDiskEngine(t, dir, nil)
	first := call(t, serve(t, eng, nil, p), "k-1", map[string]any{"amount": 5})
	if first.err != nil {
		t.Fatal(first.err)
	}
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	again := call(t, serve(t, idemtest.OpenDiskEngine(t, dir, nil), nil, p), "k-1", map[string]any{"amount": 5})
	if again.err != nil || !proto.Equal(first.resp, again.resp) || p.runs.Load() != 1 {
		t.Fatalf("after a restart: %v %v, %d runs", again.resp, again.err, p.runs.Load())
	}
}

// A response larger than MaxResponseSize is returned, not recorded, and
// its key released: the retry runs again rather than replaying a part.
func TestResponseOverMaxResponseSizeIsReleased(t *testing.T) {
	p := &payments{}
	cc := serve(t, idemtest.NewEngine(t, nil), &idemgrpc.Options{MaxResponseSize: 8}, p)
	for i := range 2 {
		if a := call(t, cc, "k-big", map[string]any{"amount": 1}); a.err != nil || a.resp.Fields["id"].GetStringValue() == "" {
			t.Fatalf("try %d: %v %v", i, a.resp, a.err)
		}
	}
	if n := p.runs.Load(); n != 2 {
		t.Errorf("the handler ran %d times, want 2", n)
	}
}

// With AllowAnonymous, keyed calls without a caller share one scope.
func TestAllowAnonymousSharesOneScope(t *testing.T) {
	p := &payments{}
	cc := serve(t, idemtest.NewEngine(t, nil), &idemgrpc.Options{AllowAnonymous: true}, p)
	req, _ := structpb.NewStruct(map[string]any{"amount": 1})
	var got []*structpb.Struct
	for range 2 {
		resp := new(structpb.Struct)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "idempotency-key", "k-anon")
		if err := cc.Invoke(ctx, charge, req, resp); err != nil {
			t.Fatal(err)
		}
		got = append(got, resp)
	}
	if !proto.Equal(got[0], got[1]) || p.runs.Load() != 1 {
		t.Errorf("anonymous retry: %v then %v, %d runs", got[0], got[1], p.runs.Load())
	}
}

// A stored record that is not a well-formed RPC outcome (another layout,
// a type this program does not know, bytes that do not decode as it) is
// never replayed as if valid, and the handler does not run: Internal,
// IDEMPOTENCY_RECORD_DAMAGED.
func TestUndecodableRecordIsNeverReplayed(t *testing.T) {
	cases := map[string]engine.Response{
		"an HTTP record":   {Status: 201, Header: []record.Header{{Name: "Content-Type", Value: "application/json"}}, Body: []byte(`{}`)},
		"an unknown type":  {Status: 200, Header: []record.Header{{Name: ":code", Value: "0"}, {Name: ":type", Value: "no.such.Message"}}},
		"undecodable body": {Status: 200, Header: []record.Header{{Name: ":code", Value: "0"}, {Name: ":type", Value: "google.protobuf.Struct"}}, Body: []byte{0x0a, 0xff}},
	}
	for name, stored := range cases {
		t.Run(name, func(t *testing.T) {
			p := &payments{}
			eng := idemtest.NewEngine(t, nil)
			req, _ := structpb.NewStruct(map[string]any{"amount": 1})
			b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(req)
			key := record.Key{Scope: eng.Scoper().Scope("Bearer sk_test_1"), Endpoint: charge, Key: "k-1"}
			res, err := eng.Begin(context.Background(), engine.Request{Key: key, Fingerprint: rpcFingerprint(charge, b), RequestID: "req_planted"})
			if err != nil || res.Outcome != engine.Proceed {
				t.Fatal(res.Outcome, err)
			}
			if err := res.Claim.Complete(context.Background(), stored); err != nil {
				t.Fatal(err)
			}
			a := call(t, serve(t, eng, nil, p), "k-1", map[string]any{"amount": 1})
			if status.Code(a.err) != codes.Internal {
				t.Fatalf("%v %v, want Internal", a.resp, a.err)
			}
			if ei := errorInfo(a.err); ei == nil || ei.Reason != "IDEMPOTENCY_RECORD_DAMAGED" {
				t.Errorf("ErrorInfo %v", ei)
			}
			if n := p.runs.Load(); n != 0 {
				t.Errorf("the handler ran %d times, want 0", n)
			}
		})
	}
}

// rpcFingerprint is the interceptor's fingerprint of a request.
var rpcFingerprint = rpcidem.Fingerprint
