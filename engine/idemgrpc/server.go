package idemgrpc

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/internal/rpcidem"
)

// Options configure the server interceptor. The zero value, and a nil
// *Options, give the documented defaults.
type Options struct {
	// KeyMetadata are the request metadata keys read for the idempotency
	// key, in order. Default "idempotency-key", then
	// "x-idempotency-key".
	KeyMetadata []string

	// ScopeMetadata is the request metadata key whose value identifies
	// the caller (an API key, a bearer token). Keys are stored under a
	// digest of it keyed with the store's secret (engine.Scoper); the
	// value itself is never stored. Default "authorization".
	ScopeMetadata string

	// Scope, if set, replaces ScopeMetadata: it returns the caller of a
	// call ("" for none), for servers that authenticate in an earlier
	// interceptor and put the account in the context. What it returns is
	// stored as it is, so it should not be a secret.
	Scope func(ctx context.Context) string

	// AllowAnonymous lets calls that carry a key but no caller share one
	// anonymous scope. Default false: they are refused with
	// Unauthenticated, since any client could otherwise replay another's
	// stored response by sending its key.
	AllowAnonymous bool

	// Methods, if not empty, are the full method names
	// ("/payments.v1.Payments/Charge") whose calls are handled; calls of
	// other methods pass through untouched. Default: every unary call
	// that carries a key.
	Methods []string

	// RequireKey refuses a call of one of Methods that carries no key,
	// with InvalidArgument. Default false: it passes through unprotected.
	RequireKey bool

	// ShouldStore says whether a call that ended with this code is
	// recorded (and replayed to its retries) or released (a retry runs
	// the handler again). Default DefaultShouldStore.
	ShouldStore func(codes.Code) bool

	// MethodTTL sets how long the outcomes of some methods are replayed,
	// by full method name, instead of the store's TTL (at most the
	// store's; see engine.Response.TTL).
	MethodTTL map[string]time.Duration

	// FingerprintExclude names request fields left out of the
	// fingerprint: values that change between a call and its retry
	// without making it another call (a client timestamp, a trace id). A
	// name is a field of the request message ("requested_at"); a dotted
	// path ("meta.trace_id") one inside singular message fields. A path
	// a method's request does not have is ignored.
	FingerprintExclude []string

	// MaxWait bounds how long a duplicate call waits for the call it
	// duplicates, within its own deadline, before it is answered Aborted
	// (in progress, with RetryInfo). Default one minute.
	MaxWait time.Duration

	// RetryDelay is the delay that the RetryInfo of an Aborted or
	// Unavailable answer suggests. Default one second.
	RetryDelay time.Duration

	// MaxResponseSize is the largest response (or error) recorded, in
	// bytes; a larger one is returned unrecorded and the key released.
	// Default 16 MiB.
	MaxResponseSize int

	// Logger receives store failures. Default slog.Default().
	Logger *slog.Logger
}

// DefaultShouldStore records a call's outcome when it answers the request
// and releases it when it says "this time it did not work":
//
//	stored    OK, InvalidArgument, NotFound, AlreadyExists,
//	          PermissionDenied, FailedPrecondition, OutOfRange,
//	          Unauthenticated
//	released  Canceled, Unknown, DeadlineExceeded, ResourceExhausted,
//	          Aborted, Unimplemented, Internal, Unavailable, DataLoss
//
// It is idemhttp.DefaultShouldStore (2xx and 4xx stored, 5xx, 408, 409,
// 425 and 429 released) in gRPC's codes. A handler's plain Go error is
// Unknown: released.
func DefaultShouldStore(c codes.Code) bool { return rpcidem.ShouldStore(uint32(c)) }

type server struct {
	guard    *rpcidem.Guard
	keys     []string
	scopeKey string
	scope    func(context.Context) string
}

// UnaryServerInterceptor returns the interceptor that gives a server's
// unary calls the idempotency contract over store (see the package
// documentation). Install it with grpc.ChainUnaryInterceptor after a
// recovery interceptor (a panic releases the key and goes on up to it)
// and after the interceptors that authenticate, when Options.Scope reads
// what they found. It returns an error for options that cannot work.
func UnaryServerInterceptor(store engine.Store, o *Options) (grpc.UnaryServerInterceptor, error) {
	var opts Options
	if o != nil {
		opts = *o
	}
	c := rpcidem.Config{
		Store:              store,
		TTL:                opts.MethodTTL,
		Methods:            opts.Methods,
		RequireKey:         opts.RequireKey,
		FingerprintExclude: opts.FingerprintExclude,
		OwnScope:           opts.Scope != nil,
		MaxWait:            opts.MaxWait,
		RetryDelay:         opts.RetryDelay,
		AllowAnonymous:     opts.AllowAnonymous,
		MaxResponse:        opts.MaxResponseSize,
		Logger:             opts.Logger,
	}
	if opts.ShouldStore != nil {
		c.ShouldStore = func(code uint32) bool { return opts.ShouldStore(codes.Code(code)) }
	}
	g, err := rpcidem.New(c)
	if err != nil {
		return nil, fmt.Errorf("idemgrpc: %w", err)
	}
	s := &server{guard: g, keys: opts.KeyMetadata, scopeKey: strings.ToLower(opts.ScopeMetadata), scope: opts.Scope}
	if len(s.keys) == 0 {
		s.keys = []string{"idempotency-key", "x-idempotency-key"}
	}
	for i, k := range s.keys {
		s.keys[i] = strings.ToLower(k)
	}
	if s.scopeKey == "" {
		s.scopeKey = "authorization"
	}
	return s.intercept, nil
}

func (s *server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	call, pass, refused := s.guard.Prepare(info.FullMethod, first(md, s.keys), req)
	if pass {
		return handler(ctx, req)
	}
	if refused == nil {
		if s.scope != nil {
			call.Scope, call.ScopeSet = s.scope(ctx), true
		} else {
			refused = call.Caller(s.scopeKey, md[s.scopeKey])
		}
	}
	if refused != nil {
		return nil, refusal(refused)
	}
	var resp any
	var herr error
	replay, refused := s.guard.Serve(ctx, call, func(ctx context.Context) *rpcidem.Reply {
		ts := grpc.ServerTransportStreamFromContext(ctx)
		if ts == nil {
			// Not called by a grpc.Server: there is no metadata to record.
			resp, herr = handler(ctx, req)
			return reply(resp, herr, &stream{})
		}
		_ = ts.SetHeader(metadata.Pairs(rpcidem.ReplayKey, "false"))
		st := &stream{ServerTransportStream: ts}
		resp, herr = handler(grpc.NewContextWithServerTransportStream(ctx, st), req)
		return reply(resp, herr, st)
	})
	switch {
	case refused != nil:
		return nil, refusal(refused)
	case replay != nil:
		return replayed(ctx, info.FullMethod, replay)
	}
	return resp, herr
}

// first returns the values of the first of keys present.
func first(md metadata.MD, keys []string) []string {
	for _, k := range keys {
		if vs := md[k]; len(vs) > 0 {
			return vs
		}
	}
	return nil
}

// reply is the handler's outcome as it is recorded; nil if it cannot be.
func reply(resp any, err error, st *stream) *rpcidem.Reply {
	r := &rpcidem.Reply{Header: st.header, Trailer: st.trailer}
	if err != nil {
		p := status.Convert(err).Proto()
		r.Status = rpcidem.Status{Code: uint32(p.GetCode()), Message: p.GetMessage()}
		if r.Status.Code == rpcidem.OK {
			r.Status.Code = rpcidem.Unknown // an error with code OK is no answer
		}
		for _, d := range p.GetDetails() {
			r.Status.Details = append(r.Status.Details, rpcidem.Detail{TypeURL: d.GetTypeUrl(), Value: d.GetValue()})
		}
		return r
	}
	if resp == nil {
		// gRPC sends a nil response as an empty message; so does the
		// replay.
		return r
	}
	m, ok := resp.(proto.Message)
	if !ok {
		return nil
	}
	b, merr := proto.Marshal(m)
	if merr != nil {
		return nil
	}
	r.Type, r.Message = string(m.ProtoReflect().Descriptor().FullName()), b
	return r
}

// replayed answers a call with a stored reply: its header metadata (with
// idempotency-replay: true), its trailer metadata, and its response or
// error.
func replayed(ctx context.Context, method string, r *rpcidem.Reply) (any, error) {
	header := metadata.MD{rpcidem.ReplayKey: []string{"true"}}
	for _, p := range r.Header {
		header.Append(p.Key, p.Value)
	}
	if err := grpc.SetHeader(ctx, header); err != nil {
		return nil, status.Errorf(codes.Internal, "idemgrpc: %v", err)
	}
	if len(r.Trailer) > 0 {
		trailer := metadata.MD{}
		for _, p := range r.Trailer {
			trailer.Append(p.Key, p.Value)
		}
		if err := grpc.SetTrailer(ctx, trailer); err != nil {
			return nil, status.Errorf(codes.Internal, "idemgrpc: %v", err)
		}
	}
	if r.Status.Code != rpcidem.OK {
		p := &spb.Status{Code: int32(r.Status.Code), Message: r.Status.Message}
		for _, d := range r.Status.Details {
			p.Details = append(p.Details, &anypb.Any{TypeUrl: d.TypeURL, Value: d.Value})
		}
		return nil, status.ErrorProto(p)
	}
	if r.Type == "" {
		return nil, nil // the handler's nil response
	}
	if want := outputOf(method); want != "" && want != r.Type {
		// The method's response type changed since the record was made
		// (a deploy): decoding one type as another would replay garbage.
		return nil, refusal(&rpcidem.Refusal{Code: rpcidem.Internal, Reason: rpcidem.ReasonDamaged,
			Message: fmt.Sprintf("the stored response is a %s; %s now answers %s", r.Type, method, want)})
	}
	mt, err := rpcidem.MessageType(r.Type)
	if err != nil {
		return nil, refusal(&rpcidem.Refusal{Code: rpcidem.Internal, Reason: rpcidem.ReasonDamaged, Message: err.Error()})
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(r.Message, m); err != nil {
		return nil, refusal(&rpcidem.Refusal{Code: rpcidem.Internal, Reason: rpcidem.ReasonDamaged,
			Message: fmt.Sprintf("the stored response does not decode as %s: %v", r.Type, err)})
	}
	return m, nil
}

// outputOf returns the full name of method's response type, from the
// descriptors generated code registers; "" if the service is not
// registered (a hand-written grpc.ServiceDesc).
func outputOf(method string) string {
	svc, name, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok {
		return ""
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return ""
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return ""
	}
	md := sd.Methods().ByName(protoreflect.Name(name))
	if md == nil {
		return ""
	}
	return string(md.Output().FullName())
}

// refusal renders an answer of the contract's own as a status with a
// google.rpc.ErrorInfo and, when a retry should wait, a
// google.rpc.RetryInfo.
func refusal(r *rpcidem.Refusal) error {
	st := status.New(codes.Code(r.Code), r.Message)
	if r.Reason == "" {
		return st.Err()
	}
	p := st.Proto()
	details := []proto.Message{&errdetails.ErrorInfo{Reason: r.Reason, Domain: rpcidem.Domain, Metadata: r.Metadata}}
	if r.RetryDelay > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(r.RetryDelay)})
	}
	for _, d := range details {
		if a, err := anypb.New(d); err == nil {
			p.Details = append(p.Details, a)
		}
	}
	return status.ErrorProto(p)
}

// stream records the metadata a handler sets, and passes it on.
type stream struct {
	grpc.ServerTransportStream
	header, trailer []rpcidem.Pair
}

// Metadata is recorded only once gRPC has taken it: what it refuses (a
// header set after the headers were sent) is not sent, so not replayed.

func (s *stream) SetHeader(md metadata.MD) error {
	err := s.ServerTransportStream.SetHeader(md)
	if err == nil {
		s.header = appendMD(s.header, md)
	}
	return err
}

func (s *stream) SendHeader(md metadata.MD) error {
	err := s.ServerTransportStream.SendHeader(md)
	if err == nil {
		s.header = appendMD(s.header, md)
	}
	return err
}

func (s *stream) SetTrailer(md metadata.MD) error {
	err := s.ServerTransportStream.SetTrailer(md)
	if err == nil {
		s.trailer = appendMD(s.trailer, md)
	}
	return err
}

func appendMD(dst []rpcidem.Pair, md metadata.MD) []rpcidem.Pair {
	for k, vs := range md {
		k = strings.ToLower(k)
		if !rpcidem.Storable(k) {
			continue
		}
		for _, v := range vs {
			dst = append(dst, rpcidem.Pair{Key: k, Value: v})
		}
	}
	return dst
}
