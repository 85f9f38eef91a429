package idemconnect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/internal/rpcidem"
)

// Options configure the interceptor. The zero value, and a nil *Options,
// give the documented defaults.
type Options struct {
	// KeyHeaders are the request headers read for the idempotency key, in
	// order. Default "Idempotency-Key", then "X-Idempotency-Key".
	KeyHeaders []string

	// ScopeHeader is the request header whose value identifies the
	// caller (an API key, a bearer token). Keys are stored under a digest
	// of it keyed with the store's secret (engine.Scoper); the value
	// itself is never stored. Default "Authorization".
	ScopeHeader string

	// Scope, if set, replaces ScopeHeader: it returns the caller of a call
	// ("" for none), for handlers that authenticate in an earlier
	// interceptor or middleware and put the account in the context. What
	// it returns is stored as it is, so it should not be a secret.
	Scope func(ctx context.Context, req connect.AnyRequest) string

	// AllowAnonymous lets calls that carry a key but no caller share one
	// anonymous scope. Default false: they are refused with
	// Unauthenticated.
	AllowAnonymous bool

	// Procedures, if not empty, are the procedures
	// ("/payments.v1.Payments/Charge") whose calls are handled; others
	// pass through untouched. Default: every unary call that carries a
	// key.
	Procedures []string

	// RequireKey refuses a call of one of Procedures that carries no key,
	// with InvalidArgument. Default false: it passes through unprotected.
	RequireKey bool

	// ShouldStore says whether a call that ended with this code (0 for a
	// response) is recorded (and replayed to its retries) or released.
	// Default DefaultShouldStore.
	ShouldStore func(connect.Code) bool

	// ProcedureTTL sets how long the outcomes of some procedures are
	// replayed, instead of the store's TTL (at most the store's).
	ProcedureTTL map[string]time.Duration

	// FingerprintExclude names request fields left out of the
	// fingerprint, as idemgrpc.Options.FingerprintExclude does.
	FingerprintExclude []string

	// MaxWait bounds how long a duplicate call waits for the call it
	// duplicates, within its own deadline, before it is answered Aborted.
	// Default one minute.
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

// DefaultShouldStore is idemgrpc.DefaultShouldStore in Connect's codes
// (the same numbers): responses and errors that answer the request are
// stored; Canceled, Unknown, DeadlineExceeded, ResourceExhausted, Aborted,
// Unimplemented, Internal, Unavailable and DataLoss are released. A
// handler's plain Go error is Unknown: released.
func DefaultShouldStore(c connect.Code) bool { return rpcidem.ShouldStore(uint32(c)) }

// Interceptor is a connect.Interceptor that gives a handler's unary calls
// the idempotency contract. Streaming calls pass through.
type Interceptor struct {
	guard    *rpcidem.Guard
	keys     []string
	scopeKey string
	scope    func(context.Context, connect.AnyRequest) string
}

var _ connect.Interceptor = (*Interceptor)(nil)

// New returns the interceptor over store; pass it to a handler with
// connect.WithInterceptors. It returns an error for options that cannot
// work.
func New(store engine.Store, o *Options) (*Interceptor, error) {
	var opts Options
	if o != nil {
		opts = *o
	}
	c := rpcidem.Config{
		Store:              store,
		TTL:                opts.ProcedureTTL,
		Methods:            opts.Procedures,
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
		c.ShouldStore = func(code uint32) bool { return opts.ShouldStore(connect.Code(code)) }
	}
	g, err := rpcidem.New(c)
	if err != nil {
		return nil, fmt.Errorf("idemconnect: %w", err)
	}
	i := &Interceptor{guard: g, keys: opts.KeyHeaders, scopeKey: opts.ScopeHeader, scope: opts.Scope}
	if len(i.keys) == 0 {
		i.keys = []string{"Idempotency-Key", "X-Idempotency-Key"}
	}
	if i.scopeKey == "" {
		i.scopeKey = "Authorization"
	}
	return i, nil
}

// WrapStreamingClient passes streams through.
func (i *Interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler passes streams through: a stream has no single
// response to store.
func (i *Interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// WrapUnary gives unary handler calls the contract; client calls pass
// through (for clients, see the package documentation).
func (i *Interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		spec := req.Spec()
		if spec.IsClient {
			return next(ctx, req)
		}
		call, pass, refused := i.guard.Prepare(spec.Procedure, first(req.Header(), i.keys), req.Any())
		if pass {
			return next(ctx, req)
		}
		if refused == nil {
			if i.scope != nil {
				call.Scope, call.ScopeSet = i.scope(ctx, req), true
			} else {
				refused = call.Caller(i.scopeKey, req.Header().Values(i.scopeKey))
			}
		}
		if refused != nil {
			return nil, refusal(refused)
		}

		var resp connect.AnyResponse
		var herr error
		replay, refused := i.guard.Serve(ctx, call, func(ctx context.Context) *rpcidem.Reply {
			// Outer interceptors share the call's response metadata
			// (CallInfo): only what is added inside is the handler's.
			var before, beforeTrailer http.Header
			info, hasInfo := connect.CallInfoForHandlerContext(ctx)
			if hasInfo {
				before, beforeTrailer = info.ResponseHeader().Clone(), info.ResponseTrailer().Clone()
			}
			resp, herr = next(ctx, req)
			r := reply(resp, herr)
			if r != nil && hasInfo {
				r.Header = appendHeader(r.Header, added(info.ResponseHeader(), before))
				r.Trailer = appendHeader(r.Trailer, added(info.ResponseTrailer(), beforeTrailer))
			}
			return r
		})
		switch {
		case refused != nil:
			return nil, refusal(refused)
		case replay != nil:
			return replayed(ctx, spec, replay)
		}
		if resp != nil {
			resp.Header().Set(rpcidem.ReplayKey, "false")
		}
		return resp, herr
	}
}

// added returns the values of h that were not in before: those appended
// to a key, or all of a key's values if they were replaced.
func added(h, before http.Header) http.Header {
	out := http.Header{}
	for k, vs := range h {
		bv := before[k]
		if len(vs) >= len(bv) && slices.Equal(vs[:len(bv)], bv) {
			vs = vs[len(bv):]
		}
		if len(vs) > 0 {
			out[k] = vs
		}
	}
	return out
}

// first returns the values of the first of keys present.
func first(h http.Header, keys []string) []string {
	for _, k := range keys {
		if vs := h.Values(k); len(vs) > 0 {
			return vs
		}
	}
	return nil
}

// reply is the handler's outcome as it is recorded (without the metadata
// set through CallInfo); nil if it cannot be.
func reply(resp connect.AnyResponse, err error) *rpcidem.Reply {
	r := &rpcidem.Reply{}
	if err != nil {
		ce := new(connect.Error)
		if !errors.As(err, &ce) || ce == nil {
			// A plain error, or a typed nil *connect.Error: Connect
			// answers Unknown.
			ce = connect.NewError(connect.CodeUnknown, err)
		}
		r.Status = rpcidem.Status{Code: uint32(ce.Code()), Message: ce.Message()}
		if r.Status.Code == rpcidem.OK {
			r.Status.Code = rpcidem.Unknown // an error with code 0 is no answer
		}
		for _, d := range ce.Details() {
			r.Status.Details = append(r.Status.Details, rpcidem.Detail{TypeURL: "type.googleapis.com/" + d.Type(), Value: d.Bytes()})
		}
		if !connect.IsWireError(ce) {
			// Connect does not send a wire error's metadata (one that
			// came from a server this handler called).
			r.Header = appendHeader(r.Header, ce.Meta())
		}
		return r
	}
	if resp == nil {
		return nil
	}
	m, ok := resp.Any().(proto.Message)
	if !ok {
		return nil
	}
	b, merr := proto.Marshal(m)
	if merr != nil {
		return nil
	}
	r.Header = appendHeader(r.Header, resp.Header())
	r.Trailer = appendHeader(r.Trailer, resp.Trailer())
	r.Type, r.Message = string(m.ProtoReflect().Descriptor().FullName()), b
	return r
}

// appendHeader appends h's storable entries, in lower case, binary
// ("-Bin") values decoded, as gRPC metadata holds them.
func appendHeader(dst []rpcidem.Pair, h http.Header) []rpcidem.Pair {
	for k, vs := range h {
		k = strings.ToLower(k)
		if !rpcidem.Storable(k) {
			continue
		}
		for _, v := range vs {
			p := rpcidem.Pair{Key: k, Value: v}
			if strings.HasSuffix(k, "-bin") {
				if b, err := connect.DecodeBinaryHeader(v); err == nil {
					p.Value = string(b)
				} else {
					p.Text = true // not base64: kept as it was sent
				}
			}
			dst = append(dst, p)
		}
	}
	return dst
}

func setHeader(h http.Header, pairs []rpcidem.Pair) {
	for _, p := range pairs {
		v := p.Value
		if strings.HasSuffix(p.Key, "-bin") && !p.Text {
			v = connect.EncodeBinaryHeader([]byte(v))
		}
		h.Add(p.Key, v)
	}
}

// Replayed is what Any() of a replayed response returns: the stored
// response, decoded into its generated type (or, for a type this program
// does not register, a *dynamicpb.Message of the handler's output type),
// in Message. An interceptor cannot create the generated handler's
// *connect.Response[T], so a replay is a *connect.Response[Replayed]:
// outer interceptors that need the concrete type unwrap it,
//
//	if r, ok := resp.Any().(*idemconnect.Replayed); ok { msg = r.Message }
//
// *Replayed is itself a proto.Message (its methods are Message's), so it
// encodes exactly as the original did.
type Replayed struct{ proto.Message }

// replayed answers a call with a stored reply.
func replayed(ctx context.Context, spec connect.Spec, r *rpcidem.Reply) (connect.AnyResponse, error) {
	info, hasInfo := connect.CallInfoForHandlerContext(ctx)
	if hasInfo && len(r.Trailer) > 0 {
		setHeader(info.ResponseTrailer(), r.Trailer)
	}
	if r.Status.Code != rpcidem.OK {
		ce := connect.NewError(connect.Code(r.Status.Code), errors.New(r.Status.Message))
		for _, d := range r.Status.Details {
			if ed, err := connect.NewErrorDetail(&anypb.Any{TypeUrl: d.TypeURL, Value: d.Value}); err == nil {
				ce.AddDetail(ed)
			}
		}
		setHeader(ce.Meta(), r.Header)
		ce.Meta().Set(rpcidem.ReplayKey, "true")
		return nil, ce
	}
	if md, ok := spec.Schema.(protoreflect.MethodDescriptor); ok && string(md.Output().FullName()) != r.Type {
		// The procedure's response type changed since the record was
		// made (a deploy): decoding one type as another would replay
		// garbage.
		return nil, refusal(&rpcidem.Refusal{Code: rpcidem.Internal, Reason: rpcidem.ReasonDamaged,
			Message: fmt.Sprintf("the stored response is a %s; %s now answers %s", r.Type, spec.Procedure, md.Output().FullName())})
	}
	m, err := newMessage(spec, r.Type)
	if err != nil {
		return nil, refusal(&rpcidem.Refusal{Code: rpcidem.Internal, Reason: rpcidem.ReasonDamaged, Message: err.Error()})
	}
	if err := proto.Unmarshal(r.Message, m); err != nil {
		return nil, refusal(&rpcidem.Refusal{Code: rpcidem.Internal, Reason: rpcidem.ReasonDamaged,
			Message: fmt.Sprintf("the stored response does not decode as %s: %v", r.Type, err)})
	}
	resp := connect.NewResponse(&Replayed{m})
	setHeader(resp.Header(), r.Header)
	resp.Header().Set(rpcidem.ReplayKey, "true")
	return resp, nil
}

// newMessage returns an empty message of the stored response's type: the
// generated type registered by generated code, or, failing that, a
// dynamic message of the handler's output type (Spec.Schema) if it has
// that name.
func newMessage(spec connect.Spec, name string) (proto.Message, error) {
	mt, err := rpcidem.MessageType(name)
	if err == nil {
		return mt.New().Interface(), nil
	}
	if md, ok := spec.Schema.(protoreflect.MethodDescriptor); ok && string(md.Output().FullName()) == name {
		return dynamicpb.NewMessage(md.Output()), nil
	}
	return nil, err
}

// refusal renders an answer of the contract's own as a connect.Error
// with a google.rpc.ErrorInfo and, when a retry should wait, a
// google.rpc.RetryInfo.
func refusal(r *rpcidem.Refusal) error {
	ce := connect.NewError(connect.Code(r.Code), errors.New(r.Message))
	if r.Reason == "" {
		return ce
	}
	if d, err := connect.NewErrorDetail(&errdetails.ErrorInfo{Reason: r.Reason, Domain: rpcidem.Domain, Metadata: r.Metadata}); err == nil {
		ce.AddDetail(d)
	}
	if r.RetryDelay > 0 {
		if d, err := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(r.RetryDelay)}); err == nil {
			ce.AddDetail(d)
		}
		ce.Meta().Set("Retry-After", fmt.Sprint(int((r.RetryDelay+time.Second-1)/time.Second)))
	}
	return ce
}
