package idemgrpc_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemgrpc"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
	"github.com/idemkv/idemkv/engine/internal/rpcidem"
	"github.com/idemkv/idemkv/record"
)

// The tests in this file turn the breaks an attack campaign found into
// guarantees: each failed before its fix.

const doMethod = "/idemkv.test.Attack/Do"

type doFunc func(ctx context.Context, req *structpb.Struct) (any, error)

func serveDo(t testing.TB, store engine.Store, o *idemgrpc.Options, h doFunc) *grpc.ClientConn {
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
	desc := grpc.ServiceDesc{
		ServiceName: "idemkv.test.Attack",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Do",
			Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
				in := new(structpb.Struct)
				if err := dec(in); err != nil {
					return nil, err
				}
				hh := func(ctx context.Context, req any) (any, error) { return h(ctx, req.(*structpb.Struct)) }
				return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: doMethod}, hh)
			},
		}},
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(recoverer, icpt))
	srv.RegisterService(&desc, struct{}{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func doCall(cc *grpc.ClientConn, key string) answer {
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer sk_test_1", "idempotency-key", key)
	var a answer
	a.resp = new(structpb.Struct)
	a.err = cc.Invoke(ctx, doMethod, &structpb.Struct{}, a.resp, grpc.Header(&a.header), grpc.Trailer(&a.trailer))
	return a
}

// A handler that sets more metadata than a record holds (100 entries) has
// its response recorded without the excess: the retry replays, the
// handler does not run again.
func TestMetadataPastTheRecordLimitsNeverRunsTheHandlerTwice(t *testing.T) {
	var runs atomic.Int64
	cc := serveDo(t, idemtest.NewEngine(t, nil), nil, func(ctx context.Context, _ *structpb.Struct) (any, error) {
		n := runs.Add(1)
		md := metadata.MD{}
		for i := range 120 {
			md.Append(fmt.Sprintf("x-h%d", i), "v")
		}
		_ = grpc.SetHeader(ctx, md)
		return structpb.NewStruct(map[string]any{"charge": fmt.Sprint("ch_", n)})
	})
	for i := range 2 {
		if a := doCall(cc, "k-many"); a.err != nil {
			t.Fatalf("call %d: %v", i, a.err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("the handler ran %d times under one key, want 1", n)
	}
}

// Header metadata that gRPC refused (SetHeader after SendHeader) was not
// sent, so it is not replayed either.
func TestMetadataGRPCRefusedIsNotReplayed(t *testing.T) {
	cc := serveDo(t, idemtest.NewEngine(t, nil), nil, func(ctx context.Context, _ *structpb.Struct) (any, error) {
		_ = grpc.SendHeader(ctx, metadata.Pairs("x-sent", "1"))
		err := grpc.SetHeader(ctx, metadata.Pairs("x-never-sent", "secret"))
		if err == nil {
			return nil, status.Error(codes.Internal, "grpc accepted a header after SendHeader")
		}
		return &structpb.Struct{}, nil
	})
	first, again := doCall(cc, "k-sh"), doCall(cc, "k-sh")
	if first.err != nil || again.err != nil {
		t.Fatal(first.err, again.err)
	}
	if f, a := first.header.Get("x-never-sent"), again.header.Get("x-never-sent"); fmt.Sprint(f) != fmt.Sprint(a) {
		t.Errorf("x-never-sent: first call %q, replay %q", f, a)
	}
}

// A stored error whose message is not UTF-8 (cut inside a character) is
// replayed with that message, not refused as a damaged record.
func TestErrorMessageThatIsNotUTF8Replays(t *testing.T) {
	var runs atomic.Int64
	cc := serveDo(t, idemtest.NewEngine(t, nil), nil, func(ctx context.Context, _ *structpb.Struct) (any, error) {
		runs.Add(1)
		msg := "montant refusé"[:14] // cut inside "é"
		return nil, status.Error(codes.InvalidArgument, msg)
	})
	first, again := doCall(cc, "k-utf8"), doCall(cc, "k-utf8")
	if status.Code(first.err) != codes.InvalidArgument {
		t.Fatalf("first: %v", first.err)
	}
	if status.Code(again.err) != codes.InvalidArgument || status.Convert(again.err).Message() != status.Convert(first.err).Message() || runs.Load() != 1 {
		t.Errorf("first call %v; retry %v (handler runs %d)", first.err, again.err, runs.Load())
	}
}

// A negative MaxDelay means no wait; it once made the client
// interceptor panic on its first retry.
func TestClientNegativeMaxDelayDoesNotPanic(t *testing.T) {
	icpt := idemgrpc.UnaryClientInterceptor(&idemgrpc.ClientOptions{MaxDelay: -time.Second})
	invoker := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		return status.Error(codes.Unavailable, "down")
	}
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("the client interceptor panicked: %v", p)
		}
	}()
	err := icpt(context.Background(), doMethod, nil, nil, nil, invoker)
	if !errors.Is(err, idemgrpc.ErrRetriesExhausted) {
		t.Errorf("%v, want ErrRetriesExhausted", err)
	}
}

// Keys at and around the limits.
func TestOddKeys(t *testing.T) {
	var runs atomic.Int64
	cc := serveDo(t, idemtest.NewEngine(t, nil), nil, func(ctx context.Context, _ *structpb.Struct) (any, error) {
		runs.Add(1)
		return &structpb.Struct{}, nil
	})
	for k, want := range map[string]codes.Code{
		"": codes.InvalidArgument, strings.Repeat("k", 256): codes.InvalidArgument,
		" ": codes.OK, strings.Repeat("k", 255): codes.OK, "a,b": codes.OK,
	} {
		if a := doCall(cc, k); status.Code(a.err) != want {
			t.Errorf("key of %d bytes: %v, want %v", len(k), a.err, want)
		}
	}
	if runs.Load() != 3 {
		t.Errorf("%d runs, want 3", runs.Load())
	}
}

// Options that cannot work are refused, not taken to mean something.
func TestNegativeOptionsAreRefused(t *testing.T) {
	for name, o := range map[string]*idemgrpc.Options{
		"MaxWait":         {MaxWait: -time.Second},
		"RetryDelay":      {RetryDelay: -time.Second},
		"MaxResponseSize": {MaxResponseSize: -1},
		"MethodTTL":       {MethodTTL: map[string]time.Duration{doMethod: -time.Second}},
	} {
		if _, err := idemgrpc.UnaryServerInterceptor(idemtest.NewEngine(t, nil), o); err == nil {
			t.Errorf("a negative %s was accepted", name)
		}
	}
}

// Duplicates waiting on calls that panic: each panic releases the key to
// the next waiter; exactly one call ends well.
func TestDuplicatesOfPanickingCallsRunInTurn(t *testing.T) {
	var runs atomic.Int64
	cc := serveDo(t, idemtest.NewEngine(t, nil), nil, func(ctx context.Context, _ *structpb.Struct) (any, error) {
		if runs.Add(1) < 3 {
			time.Sleep(50 * time.Millisecond)
			panic("boom")
		}
		return &structpb.Struct{}, nil
	})
	done := make(chan answer, 3)
	for range 3 {
		go func() { done <- doCall(cc, "k-p") }()
	}
	codesSeen := map[codes.Code]int{}
	for range 3 {
		codesSeen[status.Code((<-done).err)]++
	}
	if codesSeen[codes.Internal] != 2 || codesSeen[codes.OK] != 1 || runs.Load() != 3 {
		t.Errorf("answers %v after %d runs, want 2 Internal, 1 OK, 3 runs", codesSeen, runs.Load())
	}
}

// A handler's nil response (gRPC sends an empty message) is recorded and
// replayed as nil; it once released the key, and the retry ran again.
func TestNilResponseIsRecordedAndReplayed(t *testing.T) {
	var runs atomic.Int64
	cc := serveDo(t, idemtest.NewEngine(t, nil), nil, func(ctx context.Context, _ *structpb.Struct) (any, error) {
		runs.Add(1)
		return nil, nil
	})
	a, b := doCall(cc, "k-nil"), doCall(cc, "k-nil")
	if a.err != nil || b.err != nil || runs.Load() != 1 || len(b.header.Get("idempotency-replay")) != 1 {
		t.Errorf("%v, %v; the handler ran %d times; replay marker %q", a.err, b.err, runs.Load(), b.header.Get("idempotency-replay"))
	}
}

// attackService registers the descriptor of idemkv.test.Attack (Do takes
// and answers a Struct), as generated code registers its services, so
// that the interceptor knows Do's response type.
func init() {
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:       proto.String("idemkv/test/attack.proto"),
		Package:    proto.String("idemkv.test"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/protobuf/struct.proto"},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("Attack"),
			Method: []*descriptorpb.MethodDescriptorProto{{
				Name: proto.String("Do"), InputType: proto.String(".google.protobuf.Struct"), OutputType: proto.String(".google.protobuf.Struct"),
			}},
		}},
	}, protoregistry.GlobalFiles)
	if err != nil {
		panic(err)
	}
	if err := protoregistry.GlobalFiles.RegisterFile(fd); err != nil {
		panic(err)
	}
}

// A record whose message type is not the method's response type (made
// before a deploy changed it) is never decoded as the other type:
// Internal, IDEMPOTENCY_RECORD_DAMAGED, and the handler does not run.
func TestRecordOfAnotherResponseTypeIsNeverReplayed(t *testing.T) {
	var runs atomic.Int64
	eng := idemtest.NewEngine(t, nil)
	cc := serveDo(t, eng, nil, func(ctx context.Context, _ *structpb.Struct) (any, error) {
		runs.Add(1)
		return &structpb.Struct{}, nil
	})
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&structpb.Struct{})
	key := record.Key{Scope: eng.Scoper().Scope("Bearer sk_test_1"), Endpoint: doMethod, Key: "k-foreign"}
	res, err := eng.Begin(context.Background(), engine.Request{Key: key, Fingerprint: rpcidem.Fingerprint(doMethod, b), RequestID: "req_old"})
	if err != nil || res.Outcome != engine.Proceed {
		t.Fatal(res.Outcome, err)
	}
	body, _ := proto.Marshal(durationpb.New(90 * time.Second))
	resp, _ := (&rpcidem.Reply{Type: "google.protobuf.Duration", Message: body}).Response(0)
	if err := res.Claim.Complete(context.Background(), resp); err != nil {
		t.Fatal(err)
	}
	a := doCall(cc, "k-foreign")
	if status.Code(a.err) != codes.Internal || errorInfo(a.err).GetReason() != "IDEMPOTENCY_RECORD_DAMAGED" || runs.Load() != 0 {
		t.Errorf("%v %v; %d runs", a.resp, a.err, runs.Load())
	}
}
