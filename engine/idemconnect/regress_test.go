package idemconnect_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemconnect"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
)

// The tests in this file turn the breaks an attack campaign found into
// guarantees: each failed before its fix.

type unaryFn = func(context.Context, *connect.Request[structpb.Struct]) (*connect.Response[structpb.Struct], error)

func serveFn(t testing.TB, store engine.Store, o *idemconnect.Options, fn unaryFn, extra ...connect.Interceptor) string {
	t.Helper()
	if o == nil {
		o = &idemconnect.Options{}
	}
	if o.Logger == nil {
		o.Logger = idemtest.QuietLogger()
	}
	icpt, err := idemconnect.New(store, o)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	ics := append([]connect.Interceptor{recoverer{}}, extra...)
	ics = append(ics, icpt)
	mux.Handle(charge, connect.NewUnaryHandler(charge, fn, connect.WithInterceptors(ics...), connect.WithSchema(chargeSchema)))
	srv := &http.Server{Handler: mux, Protocols: new(http.Protocols), ErrorLog: idemtest.QuietHTTPLog()}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// More response headers than a record holds: the response is recorded
// without the excess, and the retry replays it.
func TestMetadataPastTheRecordLimitsNeverRunsTheHandlerTwice(t *testing.T) {
	var runs atomic.Int64
	url := serveFn(t, idemtest.NewEngine(t, nil), nil, func(ctx context.Context, r *connect.Request[structpb.Struct]) (*connect.Response[structpb.Struct], error) {
		runs.Add(1)
		resp := connect.NewResponse(&structpb.Struct{})
		for i := range 120 {
			resp.Header().Set(fmt.Sprintf("X-H%d", i), "v")
		}
		return resp, nil
	})
	c := protocols["connect"](h2c(t), url)
	for i := range 2 {
		if a := call(t, c, "k-many", nil); a.err != nil {
			t.Fatalf("call %d: %v", i, a.err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("the handler ran %d times under one key, want 1", n)
	}
}

// Once broken: an error whose message is not UTF-8 is stored, then every
// retry gets IDEMPOTENCY_RECORD_DAMAGED.
func TestErrorMessageThatIsNotUTF8Replays(t *testing.T) {
	url := serveFn(t, idemtest.NewEngine(t, nil), nil, func(ctx context.Context, r *connect.Request[structpb.Struct]) (*connect.Response[structpb.Struct], error) {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("compte inconnu: é"[:len("compte inconnu: é")-1]))
	})
	for name, client := range protocols {
		t.Run(name, func(t *testing.T) {
			c := client(h2c(t), url)
			first, again := call(t, c, "k-utf8-"+name, nil), call(t, c, "k-utf8-"+name, nil)
			if connect.CodeOf(again.err) != connect.CodeOf(first.err) {
				t.Errorf("first %v, retry %v", first.err, again.err)
			}
		})
	}
}

// Once broken: an error with code 0 is stored as an OK reply without a type:
// the first caller sees Unknown, every retry IDEMPOTENCY_RECORD_DAMAGED.
func TestErrorWithCodeZeroIsUnknownAndReleased(t *testing.T) {
	var runs atomic.Int64
	url := serveFn(t, idemtest.NewEngine(t, nil), nil, func(ctx context.Context, r *connect.Request[structpb.Struct]) (*connect.Response[structpb.Struct], error) {
		runs.Add(1)
		return nil, connect.NewError(connect.Code(0), errors.New("no code"))
	})
	c := protocols["connect"](h2c(t), url)
	first, again := call(t, c, "k-zero", nil), call(t, c, "k-zero", nil)
	if connect.CodeOf(first.err) != connect.CodeUnknown || connect.CodeOf(again.err) != connect.CodeUnknown || runs.Load() != 2 {
		t.Errorf("first %v (not stored by policy), retry %v, runs %d", first.err, again.err, runs.Load())
	}
}

// Once broken: a handler that returns a downstream Connect client's error
// (a wire error: its metadata is not sent) -- the replay sends the
// downstream's headers.
func TestWireErrorMetadataIsNotReplayed(t *testing.T) {
	downstream := serveFn(t, idemtest.NewEngine(t, nil), &idemconnect.Options{AllowAnonymous: true}, func(ctx context.Context, r *connect.Request[structpb.Struct]) (*connect.Response[structpb.Struct], error) {
		ce := connect.NewError(connect.CodeNotFound, errors.New("no such account"))
		ce.Meta().Set("X-Internal-Host", "db-7.internal")
		return nil, ce
	})
	dc := connect.NewClient[structpb.Struct, structpb.Struct](h2c(t), downstream+charge)
	url := serveFn(t, idemtest.NewEngine(t, nil), nil, func(ctx context.Context, r *connect.Request[structpb.Struct]) (*connect.Response[structpb.Struct], error) {
		return dc.CallUnary(ctx, connect.NewRequest(r.Msg))
	})
	c := protocols["connect"](h2c(t), url)
	first, again := call(t, c, "k-wire", nil), call(t, c, "k-wire", nil)
	meta := func(err error) string {
		ce := new(connect.Error)
		if errors.As(err, &ce) {
			return ce.Meta().Get("X-Internal-Host")
		}
		return "?"
	}
	if f, a := meta(first.err), meta(again.err); f != a {
		t.Errorf("X-Internal-Host: first call %q, replay %q", f, a)
	}
}

// Once broken: a typed-nil *connect.Error makes the interceptor itself panic.
func TestTypedNilErrorDoesNotPanic(t *testing.T) {
	for _, withIcpt := range []bool{false, true} {
		t.Run(fmt.Sprint("interceptor=", withIcpt), func(t *testing.T) {
			var panicked atomic.Value
			fn := func(ctx context.Context, r *connect.Request[structpb.Struct]) (*connect.Response[structpb.Struct], error) {
				var ce *connect.Error
				return connect.NewResponse(&structpb.Struct{}), ce
			}
			rec := catcher{&panicked}
			mux := http.NewServeMux()
			ics := []connect.Interceptor{rec}
			if withIcpt {
				icpt, _ := idemconnect.New(idemtest.NewEngine(t, nil), &idemconnect.Options{Logger: idemtest.QuietLogger()})
				ics = append(ics, icpt)
			}
			mux.Handle(charge, connect.NewUnaryHandler(charge, fn, connect.WithInterceptors(ics...), connect.WithSchema(chargeSchema)))
			srv := &http.Server{Handler: mux, ErrorLog: idemtest.QuietHTTPLog()}
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
			c := connect.NewClient[structpb.Struct, structpb.Struct](http.DefaultClient, "http://"+ln.Addr().String()+charge)
			if a := call(t, c, "k-typed-nil", nil); connect.CodeOf(a.err) != connect.CodeUnknown {
				t.Errorf("%v, want Unknown, as Connect alone answers", a.err)
			}
			if withIcpt && panicked.Load() != nil {
				t.Errorf("the idempotency interceptor panicked: %v", panicked.Load())
			}
		})
	}
}

type catcher struct{ p *atomic.Value }

func (c catcher) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (resp connect.AnyResponse, err error) {
		defer func() {
			if p := recover(); p != nil {
				c.p.Store(fmt.Sprint(p))
				resp, err = nil, connect.NewError(connect.CodeInternal, fmt.Errorf("panic: %v", p))
			}
		}()
		return next(ctx, req)
	}
}
func (catcher) WrapStreamingClient(n connect.StreamingClientFunc) connect.StreamingClientFunc {
	return n
}
func (catcher) WrapStreamingHandler(n connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return n
}

// Once broken: a "-Bin" header whose value is not base64 is dropped from the
// record: the replay lacks it.
func TestBinaryHeaderNotInBase64ReplaysAsSent(t *testing.T) {
	url := serveFn(t, idemtest.NewEngine(t, nil), nil, func(ctx context.Context, r *connect.Request[structpb.Struct]) (*connect.Response[structpb.Struct], error) {
		resp := connect.NewResponse(&structpb.Struct{})
		resp.Header().Set("X-Sig-Bin", "not base64!")
		return resp, nil
	})
	c := protocols["connect"](h2c(t), url)
	first, again := call(t, c, "k-bin", nil), call(t, c, "k-bin", nil)
	if first.err != nil || again.err != nil {
		t.Fatal(first.err, again.err)
	}
	if f, a := first.resp.Header().Get("X-Sig-Bin"), again.resp.Header().Get("X-Sig-Bin"); f != a {
		t.Errorf("X-Sig-Bin: first %q, replay %q", f, a)
	}
}

// Once broken: headers an OUTER interceptor sets through CallInfo are
// recorded as the handler's; the replay sends both the stored and the
// fresh value.
type requestID struct{ n *atomic.Int64 }

func (r requestID) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if info, ok := connect.CallInfoForHandlerContext(ctx); ok {
			info.ResponseHeader().Set("X-Request-Id", fmt.Sprint("r", r.n.Add(1)))
		}
		return next(ctx, req)
	}
}
func (requestID) WrapStreamingClient(n connect.StreamingClientFunc) connect.StreamingClientFunc {
	return n
}
func (requestID) WrapStreamingHandler(n connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return n
}

func TestOuterInterceptorHeadersAreNotRecorded(t *testing.T) {
	url := serveFn(t, idemtest.NewEngine(t, nil), nil, func(ctx context.Context, r *connect.Request[structpb.Struct]) (*connect.Response[structpb.Struct], error) {
		return connect.NewResponse(&structpb.Struct{}), nil
	}, requestID{new(atomic.Int64)})
	c := protocols["connect"](h2c(t), url)
	first, again := call(t, c, "k-rid", nil), call(t, c, "k-rid", nil)
	if first.err != nil || again.err != nil {
		t.Fatal(first.err, again.err)
	}
	f, a := first.resp.Header().Values("X-Request-Id"), again.resp.Header().Values("X-Request-Id")
	if len(a) != 1 {
		t.Errorf("X-Request-Id: first %q, replay %q", f, a)
	}
}
