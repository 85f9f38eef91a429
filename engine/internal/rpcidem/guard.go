package rpcidem

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/internal/earlier"
	"github.com/idemkv/idemkv/record"
)

// Config configures a Guard; the adapters fill it from their Options
// (which document each field for their users).
type Config struct {
	Store engine.Store
	// ShouldStore decides by code whether an outcome is recorded.
	// Default ShouldStore.
	ShouldStore func(code uint32) bool
	// TTL by full method name ("/payments.v1.Payments/Charge").
	TTL map[string]time.Duration
	// Methods, if not empty, are the full method names handled (Selects).
	Methods []string
	// RequireKey refuses a call of one of Methods without a key.
	RequireKey bool
	// FingerprintExclude are request fields left out of fingerprints
	// (ParseExclude).
	FingerprintExclude []string
	// OwnScope is set when the adapter's Options.Scope names callers, so
	// that the store need not digest credentials.
	OwnScope bool
	// MaxWait bounds how long a duplicate waits for the call it
	// duplicates (besides its own deadline) before it is answered
	// Aborted, in progress. Default one minute.
	MaxWait time.Duration
	// RetryDelay is the delay the RetryInfo of an Aborted or Unavailable
	// answer suggests. Default one second.
	RetryDelay time.Duration
	// AllowAnonymous lets calls with a key and no scope share one
	// anonymous scope; default: they are refused (Unauthenticated).
	AllowAnonymous bool
	// MaxResponse is the largest response (or error) recorded, in bytes;
	// a larger one is returned unrecorded and its claim released.
	// Default 16 MiB.
	MaxResponse int
	Logger      *slog.Logger
}

// Guard runs unary calls under the idempotency contract.
type Guard struct {
	c       Config
	methods map[string]bool
	exclude Exclude
}

// New returns a Guard with c's defaults filled in, or an error for a
// configuration that cannot work.
func New(c Config) (*Guard, error) {
	if c.Store == nil {
		return nil, errors.New("nil store")
	}
	if !c.OwnScope && c.Store.Scoper() == nil {
		return nil, errors.New("the store cannot digest credentials (a read-only engine without its scope secret); set Options.Scope")
	}
	exclude, err := ParseExclude(c.FingerprintExclude)
	if err != nil {
		return nil, err
	}
	if c.ShouldStore == nil {
		c.ShouldStore = ShouldStore
	}
	if c.MaxWait == 0 {
		c.MaxWait = time.Minute
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = time.Second
	}
	if c.MaxResponse == 0 {
		c.MaxResponse = 16 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	for m, ttl := range c.TTL {
		if ttl < 0 {
			return nil, fmt.Errorf("TTL of %s is negative", m)
		}
	}
	if c.MaxWait < 0 || c.RetryDelay < 0 || c.MaxResponse < 0 {
		return nil, fmt.Errorf("MaxWait, RetryDelay and MaxResponseSize cannot be negative")
	}
	g := &Guard{c: c, exclude: exclude}
	if len(c.Methods) > 0 {
		g.methods = make(map[string]bool, len(c.Methods))
		for _, m := range c.Methods {
			g.methods[m] = true
		}
	}
	return g, nil
}

// Prepare turns a unary call to method, with the values of its key
// metadata (those of the first key name present) and its request, into
// the Call to Serve: or says to pass it through untouched (a method not
// selected, no key), or refuses it (two keys; a required key missing; a
// request that is not a protobuf message). The adapter then sets the
// call's caller.
func (g *Guard) Prepare(method string, keys []string, req any) (c Call, pass bool, refused *Refusal) {
	if g.methods != nil && !g.methods[method] {
		return Call{}, true, nil
	}
	switch {
	case len(keys) == 0 && g.c.RequireKey && g.methods != nil:
		return Call{}, false, RefuseKey("this method requires an idempotency key")
	case len(keys) == 0:
		return Call{}, true, nil
	case len(keys) > 1:
		return Call{}, false, RefuseKey("a call carries one idempotency key, not several")
	}
	msg, ok := req.(proto.Message)
	if !ok {
		return Call{}, false, &Refusal{Code: Internal, Message: fmt.Sprintf("the request of %s is a %T, not a protobuf message", method, req)}
	}
	b, err := MarshalForFingerprint(msg, g.exclude)
	if err != nil {
		return Call{}, false, &Refusal{Code: Internal, Message: fmt.Sprintf("the request cannot be encoded: %v", err)}
	}
	return Call{Method: method, Key: keys[0], Fingerprint: Fingerprint(method, b)}, false, nil
}

// Caller sets c's caller from the values of the credential metadata
// (named name), digested under the store's secret: an Authorization
// credential normalised as idemhttp does, so that one credential is one
// tenant over HTTP, gRPC and Connect. Two values are refused.
func (c *Call) Caller(name string, values []string) *Refusal {
	if len(values) > 1 {
		return &Refusal{Code: InvalidArgument, Reason: ReasonScope, Message: "a call carries one " + name + ", not several"}
	}
	if len(values) == 1 {
		c.Credential = strings.Trim(values[0], " \t")
		if strings.EqualFold(name, "authorization") {
			c.Credential = idemhttp.NormalizeCredential(values[0])
		}
	}
	return nil
}

// Call is one unary call with an idempotency key.
type Call struct {
	// Method is the full method name; the endpoint of the key.
	Method string
	// Key is the idempotency key.
	Key string
	// Credential is the caller's credential, digested with the store's
	// Scoper into the scope; or, with ScopeSet, Scope is used as it is.
	Credential string
	Scope      string
	ScopeSet   bool
	// Fingerprint is the request's (see Fingerprint).
	Fingerprint record.Fingerprint
}

// Refusal is an answer of the Guard's own, which the adapter renders as
// its framework's error with a google.rpc.ErrorInfo detail (Reason, in
// domain "idemkv.dev", with Metadata) and, if RetryDelay is set, a
// google.rpc.RetryInfo.
type Refusal struct {
	Code       uint32
	Reason     string
	Message    string
	Metadata   map[string]string
	RetryDelay time.Duration
}

// The ErrorInfo reasons of refusals, and its domain.
const (
	Domain            = "idemkv.dev"
	ReasonConflict    = "IDEMPOTENCY_CONFLICT"
	ReasonInProgress  = "IDEMPOTENCY_IN_PROGRESS"
	ReasonKeyInvalid  = "IDEMPOTENCY_KEY_INVALID"
	ReasonScope       = "IDEMPOTENCY_SCOPE_MISSING"
	ReasonUnavailable = "IDEMPOTENCY_STORE_UNAVAILABLE"
	ReasonDamaged     = "IDEMPOTENCY_RECORD_DAMAGED"
)

// RefuseKey is the refusal of a malformed key (two keys, or an invalid
// one).
func RefuseKey(msg string) *Refusal {
	return &Refusal{Code: InvalidArgument, Reason: ReasonKeyInvalid, Message: msg}
}

// Fingerprint is the fingerprint of a call to method with a request
// encoded as msg.
func Fingerprint(method string, msg []byte) record.Fingerprint {
	h := record.NewHasher()
	h.FieldString("rpc")
	h.FieldString(method)
	h.Write(msg)
	return h.Sum()
}

// Serve runs c under the contract. It returns the stored reply to replay,
// or a refusal to answer with, or neither: then run was called (at most
// once), ran the handler, and its outcome was recorded or released, and
// the adapter returns what the handler returned. run returns the outcome
// to record, or nil when it cannot be recorded (the claim is released).
// A panic in run releases the claim and goes on.
func (g *Guard) Serve(ctx context.Context, c Call, run func(ctx context.Context) *Reply) (*Reply, *Refusal) {
	scope := c.Scope
	if !c.ScopeSet && c.Credential != "" {
		scope = g.c.Store.Scoper().Scope(c.Credential)
	}
	if scope == "" && !g.c.AllowAnonymous {
		return nil, &Refusal{Code: Unauthenticated, Reason: ReasonScope,
			Message: "a call with an idempotency key must identify its caller (its keys are kept per caller)"}
	}
	req := engine.Request{
		Key:            record.Key{Scope: scope, Endpoint: c.Method, Key: c.Key},
		Fingerprint:    c.Fingerprint,
		RequestID:      newRequestID(),
		WhenInProgress: engine.Wait,
	}
	wctx, cancel := context.WithTimeout(ctx, g.c.MaxWait)
	res, err := g.c.Store.Begin(wctx, req)
	cancel()
	if err != nil {
		return nil, g.beginFailed(ctx, req, err)
	}
	if !c.ScopeSet {
		res = earlier.Check(ctx, g.c.Store, res, req, c.Credential, c.Credential)
	}
	switch res.Outcome {
	case engine.Replay:
		r, err := Decode(res.Record)
		if err != nil {
			return nil, g.beginFailed(ctx, req, err)
		}
		return r, nil
	case engine.Conflict:
		return nil, &Refusal{Code: FailedPrecondition, Reason: ReasonConflict,
			Message:  "this idempotency key was already used with a different request; use a new key for a new request",
			Metadata: map[string]string{"conflicts_with": res.OriginalRequestID}}
	case engine.InProgress:
		return nil, g.inProgress(res.OriginalRequestID)
	case engine.Proceed:
	default:
		return nil, g.beginFailed(ctx, req, fmt.Errorf("the store answered %v", res.Outcome))
	}
	g.run(ctx, req, res.Claim, run)
	return nil, nil
}

func (g *Guard) run(ctx context.Context, req engine.Request, claim *engine.Claim, run func(ctx context.Context) *Reply) {
	done := false
	defer func() {
		if !done {
			g.release(claim, "the handler panicked")
		}
	}()
	r := run(ctx)
	done = true
	switch {
	case r == nil:
		g.release(claim, "the outcome cannot be recorded")
		return
	case !g.c.ShouldStore(r.Status.Code):
		g.release(claim, "the store policy releases its code")
		return
	}
	resp, dropped := r.Response(g.c.TTL[req.Key.Endpoint])
	if dropped > 0 {
		g.c.Logger.Warn("idemkv: metadata past the record's limits is not stored; a replay lacks it",
			"method", req.Key.Endpoint, "key", req.Key.Key, "entries_dropped", dropped)
	}
	if len(resp.Body) > g.c.MaxResponse {
		g.release(claim, "the response is larger than MaxResponse")
		return
	}
	err := claim.Complete(context.WithoutCancel(ctx), resp)
	if err == nil {
		return
	}
	if errors.Is(err, engine.ErrTooLarge) || errors.Is(err, engine.ErrInvalid) {
		// Refused before anything was written: the claim is held.
		g.release(claim, err.Error())
		return
	}
	g.c.Logger.Error("idemkv: recording a call's outcome failed; a retry will not replay it",
		"method", req.Key.Endpoint, "key", req.Key.Key, "err", err)
}

func (g *Guard) release(claim *engine.Claim, why string) {
	if err := claim.Release(context.Background()); err != nil {
		g.c.Logger.Warn("idemkv: releasing a claim failed (a retry recovers it once its lease is over)",
			"key", claim.Key().Key, "why", why, "err", err)
	}
}

func (g *Guard) inProgress(original string) *Refusal {
	r := &Refusal{Code: Aborted, Reason: ReasonInProgress, RetryDelay: g.c.RetryDelay,
		Message: "a call with this idempotency key is still being processed; retry later with the same key"}
	if original != "" {
		r.Metadata = map[string]string{"request_in_progress": original}
	}
	return r
}

func (g *Guard) beginFailed(ctx context.Context, req engine.Request, err error) *Refusal {
	switch {
	case ctx.Err() != nil:
		code := Canceled
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			code = DeadlineExceeded
		}
		return &Refusal{Code: code, Message: ctx.Err().Error()}
	case errors.Is(err, context.DeadlineExceeded):
		// MaxWait is over and the call it waits for still runs.
		return g.inProgress("")
	case errors.Is(err, engine.ErrInvalidKey):
		return RefuseKey(err.Error())
	case errors.Is(err, engine.ErrCorrupt):
		g.c.Logger.Error("idemkv: stored record is damaged; it will not be replayed",
			"method", req.Key.Endpoint, "key", req.Key.Key, "err", err)
		return &Refusal{Code: Internal, Reason: ReasonDamaged,
			Message: "the stored outcome of this idempotency key is damaged and cannot be replayed"}
	}
	g.c.Logger.Error("idemkv: idempotency store failed", "method", req.Key.Endpoint, "err", err)
	return &Refusal{Code: Unavailable, Reason: ReasonUnavailable, RetryDelay: g.c.RetryDelay,
		Message: "the idempotency store is unavailable; retry later with the same key"}
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "req_" + hex.EncodeToString(b[:])
}
