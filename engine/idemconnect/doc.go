// Package idemconnect gives Connect (connectrpc.com/connect) handlers
// idemkv's idempotency contract, for unary calls, whichever protocol the
// client speaks: Connect, gRPC or gRPC-Web.
//
//	icpt, err := idemconnect.New(store, nil) // store: an *engine.Engine, a redisstore.Store
//	path, handler := paymentsv1connect.NewPaymentsHandler(svc, connect.WithInterceptors(recovery, icpt))
//
// A call that carries an Idempotency-Key header runs once; a retry with
// the same key and the same request gets the stored response with its
// headers and trailers, and Idempotency-Replay: true; the handler does not
// run again. A duplicate that arrives while the first runs waits for it
// (up to Options.MaxWait, within its own deadline) and gets the same
// answer. A call without a key passes through, and so do streams.
//
// Everything else is as package idemgrpc documents: keys per procedure
// ("/payments.v1.Payments/Charge") and per caller (a keyed digest of the
// Authorization header, normalised as idemhttp does, or Options.Scope),
// the fingerprint over the deterministically encoded request, the same
// answers of its own with the same google.rpc.ErrorInfo reasons and
// RetryInfo (a conflict is FailedPrecondition, in progress Aborted, a
// failing store Unavailable, with a Retry-After header as well), the same
// store policy by code, and the same record layout.
//
// # What a replay looks like to other interceptors
//
// Connect's interceptors see responses as connect.AnyResponse, whose
// concrete type (*connect.Response[T]) the generated handler fixes and an
// interceptor cannot create for a T it does not know. A replayed response
// is therefore a *connect.Response[Replayed], whose Message is the stored
// response decoded into its generated type: it encodes on the wire exactly
// as the original, and interceptors that work with proto.Message see the
// same fields, but an interceptor outside this one that type-asserts
// response.Any() to the generated type must unwrap a *Replayed first. Put
// such interceptors inside (after) this one, or unwrap.
//
// # Clients
//
// A Connect client over the Connect protocol sends metadata as HTTP
// headers, so idemclient.Transport, as the client's http.Client transport,
// gives every call a key and retries it safely (503, 429 and the like);
// gRPC clients use idemgrpc.UnaryClientInterceptor.
//
// This package is its own Go module, so that programs that use idemkv
// without Connect do not get it in their module graph.
package idemconnect
