package idemconnect_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemconnect"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
)

const charge = "/idemkv.test.Payments/Charge"

// payments is the test handler: Charge answers a Struct with a Struct and
// does what the request's fields ask ("code": fail with that code,
// "sleep_ms": take that long, "panic": panic). It sets header X-Charge-Id,
// binary header X-Raw-Bin and trailer X-Ledger.
type payments struct{ runs atomic.Int64 }

func (p *payments) charge(ctx context.Context, req *connect.Request[structpb.Struct]) (*connect.Response[structpb.Struct], error) {
	n := p.runs.Add(1)
	f := req.Msg.GetFields()
	if ms := f["sleep_ms"].GetNumberValue(); ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	if f["panic"].GetBoolValue() {
		panic("the card network is on fire")
	}
	if c := f["code"].GetNumberValue(); c > 0 {
		ce := connect.NewError(connect.Code(c), errors.New("card declined"))
		if d, err := connect.NewErrorDetail(&errdetails.ErrorInfo{Reason: "CARD_DECLINED", Domain: "payments.test"}); err == nil {
			ce.AddDetail(d)
		}
		return nil, ce
	}
	id := fmt.Sprintf("ch_%d", n)
	msg, err := structpb.NewStruct(map[string]any{"id": id, "amount": f["amount"].GetNumberValue()})
	if err != nil {
		return nil, err
	}
	resp := connect.NewResponse(msg)
	resp.Header().Set("X-Charge-Id", id)
	resp.Header().Set("X-Raw-Bin", connect.EncodeBinaryHeader([]byte{0, 0xff, 'r'}))
	resp.Trailer().Set("X-Ledger", "entry-"+id)
	return resp, nil
}

// recoverer answers a panic with Internal, as a server's recovery
// interceptor does; it goes before idemconnect's.
type recoverer struct{}

func (recoverer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (resp connect.AnyResponse, err error) {
		defer func() {
			if p := recover(); p != nil {
				resp, err = nil, connect.NewError(connect.CodeInternal, fmt.Errorf("panic: %v", p))
			}
		}()
		return next(ctx, req)
	}
}
func (recoverer) WrapStreamingClient(n connect.StreamingClientFunc) connect.StreamingClientFunc {
	return n
}
func (recoverer) WrapStreamingHandler(n connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return n
}

// serve starts the Connect handler on a loopback port (HTTP/1.1 and
// HTTP/2 without TLS, so that gRPC clients reach it too) and returns its
// base URL.
func serve(t testing.TB, store engine.Store, o *idemconnect.Options, p *payments) string {
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
	mux.Handle(charge, connect.NewUnaryHandler(charge, p.charge, connect.WithInterceptors(recoverer{}, icpt)))
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

// h2c is an HTTP client speaking HTTP/2 without TLS: what gRPC needs, and
// what lets a thousand calls share one connection.
func h2c(t testing.TB) *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

type answer struct {
	resp *connect.Response[structpb.Struct]
	err  error
}

func call(t testing.TB, c *connect.Client[structpb.Struct, structpb.Struct], key string, fields map[string]any, hdr ...string) answer {
	t.Helper()
	msg, err := structpb.NewStruct(fields)
	if err != nil {
		t.Fatal(err)
	}
	req := connect.NewRequest(msg)
	req.Header().Set("Authorization", "Bearer sk_test_1")
	if key != "" {
		req.Header().Set("Idempotency-Key", key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header().Add(hdr[i], hdr[i+1])
	}
	resp, err := c.CallUnary(context.Background(), req)
	return answer{resp, err}
}

func errorInfo(err error) *errdetails.ErrorInfo {
	ce := new(connect.Error)
	if !errors.As(err, &ce) {
		return nil
	}
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if ei, ok := v.(*errdetails.ErrorInfo); ok {
				return ei
			}
		}
	}
	return nil
}

var protocols = map[string]func(*http.Client, string) *connect.Client[structpb.Struct, structpb.Struct]{
	"connect": func(hc *http.Client, url string) *connect.Client[structpb.Struct, structpb.Struct] {
		return connect.NewClient[structpb.Struct, structpb.Struct](hc, url+charge)
	},
	"grpc": func(hc *http.Client, url string) *connect.Client[structpb.Struct, structpb.Struct] {
		return connect.NewClient[structpb.Struct, structpb.Struct](hc, url+charge, connect.WithGRPC())
	},
	"grpc-web": func(hc *http.Client, url string) *connect.Client[structpb.Struct, structpb.Struct] {
		return connect.NewClient[structpb.Struct, structpb.Struct](hc, url+charge, connect.WithGRPCWeb())
	},
}

// Over each protocol a Connect handler speaks: a retry gets the first
// call's response, headers (binary ones included) and trailers with
// Idempotency-Replay: true; the same key with another request is
// FailedPrecondition naming the original; the handler runs once.
func TestEveryProtocolGetsTheContract(t *testing.T) {
	for name, client := range protocols {
		t.Run(name, func(t *testing.T) {
			p := &payments{}
			c := client(h2c(t), serve(t, idemtest.NewEngine(t, nil), nil, p))
			first := call(t, c, "k-1", map[string]any{"amount": 42})
			if first.err != nil {
				t.Fatal(first.err)
			}
			again := call(t, c, "k-1", map[string]any{"amount": 42})
			if again.err != nil {
				t.Fatal(again.err)
			}
			if !proto.Equal(first.resp.Msg, again.resp.Msg) {
				t.Errorf("replay %v, want %v", again.resp.Msg, first.resp.Msg)
			}
			if f, a := first.resp.Header().Get("Idempotency-Replay"), again.resp.Header().Get("Idempotency-Replay"); f != "false" || a != "true" {
				t.Errorf("Idempotency-Replay: first %q, replay %q", f, a)
			}
			for _, k := range []string{"X-Charge-Id", "X-Raw-Bin"} {
				if f, a := first.resp.Header().Get(k), again.resp.Header().Get(k); f == "" || f != a {
					t.Errorf("header %s: first %q, replay %q", k, f, a)
				}
			}
			if f, a := first.resp.Trailer().Get("X-Ledger"), again.resp.Trailer().Get("X-Ledger"); f == "" || f != a {
				t.Errorf("trailer X-Ledger: first %q, replay %q", f, a)
			}
			conflict := call(t, c, "k-1", map[string]any{"amount": 43})
			if connect.CodeOf(conflict.err) != connect.CodeFailedPrecondition {
				t.Fatalf("conflict: %v", conflict.err)
			}
			if ei := errorInfo(conflict.err); ei == nil || ei.Reason != "IDEMPOTENCY_CONFLICT" || !strings.HasPrefix(ei.Metadata["conflicts_with"], "req_") {
				t.Errorf("conflict ErrorInfo %v", ei)
			}
			if n := p.runs.Load(); n != 1 {
				t.Errorf("the handler ran %d times, want 1", n)
			}
		})
	}
}

// The promise under a flood: 1,000 identical calls at once run the
// handler once, and every one gets the same response.
func TestThousandConcurrentIdenticalCallsRunOnce(t *testing.T) {
	p := &payments{}
	c := protocols["connect"](h2c(t), serve(t, idemtest.NewEngine(t, nil), nil, p))
	const n = 1000
	answers := make([]answer, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range answers {
		wg.Go(func() {
			<-start
			answers[i] = call(t, c, "k-flood", map[string]any{"amount": 7, "sleep_ms": 50})
		})
	}
	close(start)
	wg.Wait()
	for i, a := range answers {
		if a.err != nil {
			t.Fatalf("call %d: %v", i, a.err)
		}
		if !proto.Equal(a.resp.Msg, answers[0].resp.Msg) {
			t.Fatalf("call %d got %v, call 0 got %v", i, a.resp.Msg, answers[0].resp.Msg)
		}
	}
	if got := p.runs.Load(); got != 1 {
		t.Errorf("the handler ran %d times, want 1", got)
	}
}

// A stored error replays with its code, message and details; a released
// one (and a panic) lets the retry run the handler again.
func TestErrorsAreStoredOrReleasedByCode(t *testing.T) {
	p := &payments{}
	c := protocols["connect"](h2c(t), serve(t, idemtest.NewEngine(t, nil), nil, p))
	first := call(t, c, "k-bad", map[string]any{"code": float64(connect.CodeInvalidArgument)})
	again := call(t, c, "k-bad", map[string]any{"code": float64(connect.CodeInvalidArgument)})
	if connect.CodeOf(first.err) != connect.CodeInvalidArgument || connect.CodeOf(again.err) != connect.CodeInvalidArgument || first.err.Error() != again.err.Error() {
		t.Errorf("stored error: first %v, replay %v", first.err, again.err)
	}
	if ei := errorInfo(again.err); ei == nil || ei.Reason != "CARD_DECLINED" {
		t.Errorf("replayed details %v", ei)
	}
	ce := new(connect.Error)
	if errors.As(again.err, &ce) && ce.Meta().Get("Idempotency-Replay") != "true" {
		t.Errorf("a replayed error has Idempotency-Replay %q", ce.Meta().Get("Idempotency-Replay"))
	}
	if n := p.runs.Load(); n != 1 {
		t.Fatalf("a stored error: %d runs, want 1", n)
	}
	for i := range 2 {
		if a := call(t, c, "k-down", map[string]any{"code": float64(connect.CodeUnavailable)}); connect.CodeOf(a.err) != connect.CodeUnavailable {
			t.Fatalf("try %d: %v", i, a.err)
		}
	}
	for i := range 2 {
		if a := call(t, c, "k-panic", map[string]any{"panic": true}); connect.CodeOf(a.err) != connect.CodeInternal {
			t.Fatalf("panic, try %d: %v", i, a.err)
		}
	}
	if n := p.runs.Load(); n != 5 {
		t.Errorf("%d runs in all, want 1 + 2 released + 2 panics", n)
	}
}

// A failing store answers Unavailable with RetryInfo, and the handler does
// not run unprotected; malformed calls are refused before anything runs.
func TestRefusals(t *testing.T) {
	p := &payments{}
	eng := idemtest.NewEngine(t, nil)
	c := protocols["connect"](h2c(t), serve(t, eng, nil, p))
	for _, tc := range []struct {
		name string
		key  string
		hdr  []string
		want connect.Code
	}{
		{"two keys", "k-1", []string{"Idempotency-Key", "k-2"}, connect.CodeInvalidArgument},
		{"a key over 255 bytes", strings.Repeat("k", 300), nil, connect.CodeInvalidArgument},
		{"two credentials", "k-1", []string{"Authorization", "Bearer sk_other"}, connect.CodeInvalidArgument},
	} {
		if a := call(t, c, tc.key, map[string]any{"amount": 1}, tc.hdr...); connect.CodeOf(a.err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, a.err, tc.want)
		}
	}
	req := connect.NewRequest(&structpb.Struct{})
	req.Header().Set("Idempotency-Key", "k-anon")
	if _, err := c.CallUnary(context.Background(), req); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("no caller: %v, want Unauthenticated", err)
	}
	eng.Close()
	a := call(t, c, "k-1", map[string]any{"amount": 1})
	if connect.CodeOf(a.err) != connect.CodeUnavailable {
		t.Fatalf("closed store: %v", a.err)
	}
	if ei := errorInfo(a.err); ei == nil || ei.Reason != "IDEMPOTENCY_STORE_UNAVAILABLE" {
		t.Errorf("closed store ErrorInfo %v", ei)
	}
	if n := p.runs.Load(); n != 0 {
		t.Errorf("the handler ran %d times, want 0", n)
	}
}
