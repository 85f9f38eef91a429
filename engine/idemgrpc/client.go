package idemgrpc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/idemkv/idemkv/engine/internal/retry"
)

// Defaults of the ClientOptions fields left zero (those of idemclient's
// HTTP Transport).
const (
	DefaultMaxTries      = 4
	DefaultBaseDelay     = 100 * time.Millisecond
	DefaultMaxDelay      = 5 * time.Second
	DefaultMaxRetryAfter = 30 * time.Second
)

// ErrRetriesExhausted wraps the last error of a call whose tries all
// failed with a retryable code.
var ErrRetriesExhausted = errors.New("idemgrpc: retries exhausted")

// ClientOptions configure the client interceptor. The zero value, and a
// nil *ClientOptions, give the defaults.
type ClientOptions struct {
	// KeyMetadata is the metadata key that carries the key. Default
	// "idempotency-key".
	KeyMetadata string
	// NewKey returns a fresh key for a call that has none in its outgoing
	// metadata. Default a random UUID.
	NewKey func() string
	// Methods, if not empty, are the full method names keyed and
	// retried; other calls pass through. Default every unary call.
	Methods []string
	// MaxTries is how many times a call is sent at most, the first
	// included. Default 4; 1 sends each call once, with its key.
	MaxTries int
	// BaseDelay and MaxDelay shape the backoff: the wait before retry n
	// (n from 0) is random in [0, min(MaxDelay, BaseDelay×2ⁿ)], or the
	// delay of the answer's google.rpc.RetryInfo when it has one.
	BaseDelay, MaxDelay time.Duration
	// MaxRetryAfter is the longest RetryInfo delay honoured; an answer
	// asking for a longer wait is returned at once.
	MaxRetryAfter time.Duration
	// OnRetry, if set, is called before each retry.
	OnRetry func(try int, err error, delay time.Duration)
}

// UnaryClientInterceptor returns a client interceptor that gives every
// unary call an idempotency key (one the caller put in the outgoing
// metadata, or a fresh one) and retries it, with the same key, while it
// fails with a code that says "not this time": Unavailable (the server or
// its store is down, or the connection broke), Aborted (among others: a
// duplicate of the call is still running), ResourceExhausted, Unknown
// and Internal. Each retry waits full-jitter backoff, or the RetryInfo
// delay the server sent; the call's context bounds it all. Since every
// try carries the key, a server with UnaryServerInterceptor runs the
// handler at most once, however many tries reach it.
//
// Streaming calls are not retried; use grpc's own retry policy for those
// that are safe.
func UnaryClientInterceptor(o *ClientOptions) grpc.UnaryClientInterceptor {
	var c ClientOptions
	if o != nil {
		c = *o
	}
	if c.KeyMetadata == "" {
		c.KeyMetadata = "idempotency-key"
	}
	c.KeyMetadata = strings.ToLower(c.KeyMetadata)
	if c.NewKey == nil {
		c.NewKey = retry.NewUUID
	}
	if c.MaxTries <= 0 {
		c.MaxTries = DefaultMaxTries
	}
	if c.BaseDelay == 0 {
		c.BaseDelay = DefaultBaseDelay
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = DefaultMaxDelay
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	var methods map[string]bool
	if len(c.Methods) > 0 {
		methods = make(map[string]bool, len(c.Methods))
		for _, m := range c.Methods {
			methods[m] = true
		}
	}
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if methods != nil && !methods[method] {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		if md, _ := metadata.FromOutgoingContext(ctx); len(md.Get(c.KeyMetadata)) == 0 {
			ctx = metadata.AppendToOutgoingContext(ctx, c.KeyMetadata, c.NewKey())
		}
		for try := 1; ; try++ {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if err == nil || !retryable(err) || ctx.Err() != nil {
				return err
			}
			if try >= c.MaxTries {
				return fmt.Errorf("%w after %d tries: %w", ErrRetriesExhausted, try, err)
			}
			delay := retry.Backoff(c.BaseDelay, c.MaxDelay, try-1)
			if d, ok := retryDelay(err); ok {
				if d > c.MaxRetryAfter {
					return err
				}
				delay = d
			}
			if c.OnRetry != nil {
				c.OnRetry(try, err, delay)
			}
			if serr := retry.Sleep(ctx, delay); serr != nil {
				return fmt.Errorf("idemgrpc: waiting to retry: %w (the last try: %w)", serr, err)
			}
		}
	}
}

func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted, codes.ResourceExhausted, codes.Unknown, codes.Internal:
		return true
	}
	return false
}

// retryDelay returns the delay of err's google.rpc.RetryInfo, if it has
// one.
func retryDelay(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().IsValid() {
			return max(ri.GetRetryDelay().AsDuration(), 0), true
		}
	}
	return 0, false
}
