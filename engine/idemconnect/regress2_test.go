package idemconnect_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
	"github.com/idemkv/idemkv/engine/internal/rpcidem"
	"github.com/idemkv/idemkv/record"
)

// A retry in another codec (JSON, keys in another order) is the same
// request: it replays the binary call's response.
func TestRetryInAnotherCodecReplays(t *testing.T) {
	var runs atomic.Int64
	fn := func(ctx context.Context, r *connect.Request[structpb.Struct]) (*connect.Response[structpb.Struct], error) {
		runs.Add(1)
		m, _ := structpb.NewStruct(map[string]any{"n": float64(runs.Load()), "echo": r.Msg.AsMap()})
		resp := connect.NewResponse(m)
		resp.Header().Set("X-A", "1")
		return resp, nil
	}
	url := serveFn(t, idemtest.NewEngine(t, nil), nil, fn)
	hc := h2c(t)
	json := connect.NewClient[structpb.Struct, structpb.Struct](hc, url+charge, connect.WithProtoJSON())
	bin := connect.NewClient[structpb.Struct, structpb.Struct](hc, url+charge)
	a := call(t, json, "k-j", map[string]any{"b": 1, "a": "x"})
	b := call(t, bin, "k-j", map[string]any{"a": "x", "b": 1})
	if a.err != nil || b.err != nil || !proto.Equal(a.resp.Msg, b.resp.Msg) || runs.Load() != 1 {
		t.Errorf("json %v %v / bin %v %v runs %d", a.resp, a.err, b.resp, b.err, runs.Load())
	}
	if b.resp.Header().Get("Idempotency-Replay") != "true" {
		t.Error("no replay header")
	}
}

// A duplicate whose deadline passes while it waits for the first call is
// answered DeadlineExceeded; the first call goes on and runs once.
func TestDuplicateWhoseDeadlinePassesWhileWaiting(t *testing.T) {
	var runs atomic.Int64
	release := make(chan struct{})
	fn := func(ctx context.Context, r *connect.Request[structpb.Struct]) (*connect.Response[structpb.Struct], error) {
		runs.Add(1)
		<-release
		return connect.NewResponse(&structpb.Struct{}), nil
	}
	url := serveFn(t, idemtest.NewEngine(t, nil), nil, fn)
	c := protocols["grpc"](h2c(t), url)
	done := make(chan answer)
	go func() { done <- call(t, c, "k-c", nil) }()
	idemtest.WaitFor(t, "the first call to run", func() bool { return runs.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req := connect.NewRequest(&structpb.Struct{})
	req.Header().Set("Authorization", "Bearer sk_test_1")
	req.Header().Set("Idempotency-Key", "k-c")
	if _, err := c.CallUnary(ctx, req); connect.CodeOf(err) != connect.CodeDeadlineExceeded {
		t.Errorf("the waiting duplicate: %v, want DeadlineExceeded", err)
	}
	close(release)
	if a := <-done; a.err != nil || runs.Load() != 1 {
		t.Errorf("the first call: %v, %d runs", a.err, runs.Load())
	}
}

// A record whose message type is not the procedure's response type
// (made before a deploy changed it) is never decoded as the other type:
// Internal, IDEMPOTENCY_RECORD_DAMAGED, and the handler does not run.
func TestRecordOfAnotherResponseTypeIsNeverReplayed(t *testing.T) {
	eng := idemtest.NewEngine(t, nil)
	var runs atomic.Int64
	fn := func(ctx context.Context, r *connect.Request[structpb.Struct]) (*connect.Response[structpb.Struct], error) {
		runs.Add(1)
		return connect.NewResponse(&structpb.Struct{}), nil
	}
	url := serveFn(t, eng, nil, fn)
	// What an earlier deploy, whose Charge answered a Duration, stored.
	b, _ := rpcidem.MarshalForFingerprint(&structpb.Struct{}, nil)
	req := engine.Request{
		Key:         record.Key{Scope: eng.Scoper().Scope(idemhttp.NormalizeCredential("Bearer sk_test_1")), Endpoint: charge, Key: "k-foreign"},
		Fingerprint: rpcidem.Fingerprint(charge, b), RequestID: "req_old", WhenInProgress: engine.Wait,
	}
	res, err := eng.Begin(context.Background(), req)
	if err != nil || res.Outcome != engine.Proceed {
		t.Fatal(res, err)
	}
	body, _ := proto.Marshal(durationpb.New(90 * time.Second))
	resp, _ := (&rpcidem.Reply{Type: "google.protobuf.Duration", Message: body}).Response(0)
	if err := res.Claim.Complete(context.Background(), resp); err != nil {
		t.Fatal(err)
	}
	c := protocols["connect"](h2c(t), url)
	a := call(t, c, "k-foreign", nil)
	if connect.CodeOf(a.err) != connect.CodeInternal || errorInfo(a.err).GetReason() != "IDEMPOTENCY_RECORD_DAMAGED" || runs.Load() != 0 {
		t.Errorf("%v; %d runs", a.err, runs.Load())
	}
}

// chargeSchema is the descriptor of idemkv.test.Payments.Charge (a
// Struct for a Struct), registered as generated code registers it, and
// handed to the test handlers with connect.WithSchema as generated code
// does: the interceptor checks stored responses against its output.
var chargeSchema = func() protoreflect.MethodDescriptor {
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:       proto.String("idemkv/test/payments.proto"),
		Package:    proto.String("idemkv.test"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/protobuf/struct.proto"},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("Payments"),
			Method: []*descriptorpb.MethodDescriptorProto{{
				Name: proto.String("Charge"), InputType: proto.String(".google.protobuf.Struct"), OutputType: proto.String(".google.protobuf.Struct"),
			}},
		}},
	}, protoregistry.GlobalFiles)
	if err != nil {
		panic(err)
	}
	if err := protoregistry.GlobalFiles.RegisterFile(fd); err != nil {
		panic(err)
	}
	return fd.Services().Get(0).Methods().Get(0)
}()
