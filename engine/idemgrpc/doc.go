// Package idemgrpc gives gRPC servers idemkv's idempotency contract, for
// unary calls:
//
//	icpt, err := idemgrpc.UnaryServerInterceptor(store, nil) // store: an *engine.Engine, a redisstore.Store
//	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(recovery, icpt))
//
// A call that carries an "idempotency-key" metadata entry runs once; a
// retry with the same key and the same request gets the stored response
// message with its header and trailer metadata, and the header
// "idempotency-replay: true"; the handler does not run again. A duplicate
// that arrives while the first runs waits for it (up to Options.MaxWait,
// within its own deadline) and gets the same answer. A call without a key
// passes through.
//
// # Keys
//
// The endpoint of a key is the full method name
// ("/payments.v1.Payments/Charge"), and its scope is the caller: a digest,
// keyed with the store's secret, of the "authorization" metadata
// (Options.ScopeMetadata), or what Options.Scope returns. A keyed call
// with no caller is refused (Unauthenticated), since otherwise any client
// could replay another's response by sending its key. The fingerprint is
// over the full method name and the request message as this server
// decodes it, deterministically encoded (unknown fields included): a
// retry whose request differs gets a conflict. Options.FingerprintExclude
// leaves fields out (a client timestamp, a trace id). A deploy that adds
// a field the client already sends changes how that field is encoded
// (known, not unknown), and so the fingerprint: a retry across such a
// deploy gets a conflict, never a second run.
//
// # Answers of its own
//
// Every refusal carries a google.rpc.ErrorInfo (domain "idemkv.dev") whose
// reason names it, and those worth retrying a google.rpc.RetryInfo:
//
//	FAILED_PRECONDITION  IDEMPOTENCY_CONFLICT: the key was used with another
//	                     request; metadata conflicts_with names the
//	                     original call's request id
//	ABORTED              IDEMPOTENCY_IN_PROGRESS (+ RetryInfo): a call with
//	                     the key still runs past MaxWait
//	UNAVAILABLE          IDEMPOTENCY_STORE_UNAVAILABLE (+ RetryInfo): the
//	                     store failed (closed, disk error, Redis down);
//	                     the handler did not run
//	INTERNAL             IDEMPOTENCY_RECORD_DAMAGED: the stored outcome is
//	                     damaged (or no longer decodes); it is never
//	                     replayed, and the handler does not run
//	INVALID_ARGUMENT     IDEMPOTENCY_KEY_INVALID: two keys, or a key over
//	                     255 bytes
//	UNAUTHENTICATED      IDEMPOTENCY_SCOPE_MISSING: a key and no caller
//
// A conflict is FAILED_PRECONDITION, not ALREADY_EXISTS: handlers return
// ALREADY_EXISTS for their own duplicates (an e-mail already registered),
// and a client must be able to tell those from a reused key; and
// FAILED_PRECONDITION says what gRPC documents for it, that retrying will
// not help until the client changes something (here: uses a new key for
// a new request). In progress is ABORTED because gRPC documents ABORTED
// as a concurrency conflict to retry at a higher level, which is what the
// client interceptor does.
//
// # What is stored
//
// The outcome is recorded when DefaultShouldStore (or
// Options.ShouldStore) says so: responses and errors that answer the
// request (InvalidArgument, NotFound, FailedPrecondition...) are stored
// and replayed with their code, message and details; errors that say
// "not this time" (Unavailable, Internal, Unknown, Aborted,
// DeadlineExceeded, ResourceExhausted, Canceled, DataLoss, and
// Unimplemented, which a deploy may change) are released,
// so that a retry runs the handler again. A handler's plain Go error is
// Unknown. A panic releases the key and goes on up to the server's
// recovery interceptor. Metadata the handler sets with grpc.SetHeader,
// SendHeader and SetTrailer is stored, except the protocol's own (grpc-*,
// content-type, ...) and set-cookie.
//
// Metadata past a record's limits (100 entries, 64 KiB of names and
// values) is left out of the record, with a warning in the log: a replay
// lacks it, rather than the handler running twice. A handler's nil
// response is stored as nil (gRPC sends an empty message) and replayed so.
// An error message that is not UTF-8 is replayed with the same bytes.
//
// A replayed response is decoded into the message type the first call
// returned, found by name among the types generated code registers
// (protoregistry.GlobalTypes). If the method's response type has changed
// since (a deploy; known when generated code registered the service), the
// record is refused as damaged rather than decoded as the other type.
// Records have the same layout as those of package idemconnect: a gRPC
// server and a Connect handler of the same procedure share records.
//
// A handler that runs longer than the store's lease (engine.Options.Lease,
// five minutes by default) loses its claim, as in every idemkv adapter: a
// duplicate that arrives after that runs the handler again. Keep handlers
// shorter than the lease.
//
// # Streams
//
// Streaming calls pass through untouched: a stream has no single response
// to store. Make a streaming method idempotent in the application, or
// offer a unary method for the step that must happen once.
//
// # Clients
//
// UnaryClientInterceptor keys every unary call and retries it with the
// same key while the answer is Unavailable, Aborted, ResourceExhausted,
// Unknown or Internal, honouring RetryInfo.
//
// This package is its own Go module, so that programs that use idemkv
// without gRPC do not get gRPC in their module graph.
package idemgrpc
