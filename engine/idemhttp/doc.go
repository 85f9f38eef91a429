// Package idemhttp is idemkv's net/http middleware: it gives an HTTP API the
// idempotency-key contract of the best payment APIs, over an idempotency
// store such as engine.Engine.
//
//	eng, _ := engine.Open("idemkv-data", nil)
//	idem, _ := idemhttp.New(eng, nil)
//	mux.Handle("POST /v1/calls", idem.Handler(createCall))
//
// # The contract
//
// A request is selected by its method (POST, PUT, PATCH and DELETE by
// default) or by an allow-list of routes (Options.Routes). A selected
// request that carries a key in Idempotency-Key (or X-Idempotency-Key) gets
// one of these answers; every answer of idemkv's own is an RFC 9457 problem
// (application/problem+json, Cache-Control: no-store) with a "code":
//
//	situation                          status  what the client gets
//	first request                      handler's  handler's response, X-Request-Id,
//	                                              Idempotency-Replay: false
//	retry, same request                stored  the stored status, body and allowed
//	                                           headers, Idempotency-Replay: true,
//	                                           Idempotent-Replayed: true
//	same key, different request        409/422 idempotency_conflict,
//	                                           fields.conflicts_with = original's id
//	duplicate while the first runs     (wait)  waits (WaitTimeout), then the replay;
//	                                   409     or idempotency_request_in_progress
//	                                           with Retry-After (RejectInProgress, or
//	                                           after WaitTimeout)
//	malformed key                      400     idempotency_key_invalid
//	no key on a route that needs one   400     idempotency_key_missing
//	a key but no tenant credential     400     idempotency_scope_missing (Anonymous)
//	two Authorization headers          400     idempotency_scope_invalid
//	body over MaxRequestBody           413     request_body_too_large
//	store failing                      503     idempotency_store_unavailable,
//	                                           Retry-After; the handler never runs
//	stored record damaged              500     idempotency_record_damaged
//
// Keys are scoped per tenant: by default a digest of the Authorization
// header, normalised (NormalizeCredential: "bearer  x" is "Bearer x"), or
// of Options.ScopeHeader or Options.ScopeCookie, keyed with the store's
// secret (engine.Scoper), so the raw credential is never stored and its
// digest cannot be tested without the secret (Options.Scope replaces it). A
// keyed request without one is refused with 400 idempotency_scope_missing
// unless Options.Anonymous says otherwise (PassAnonymous: no idempotency;
// ShareAnonymous: one shared scope, single-tenant APIs only). The
// endpoint is the method and the route pattern (Request.Pattern of a
// ServeMux route, else the path): one key on two endpoints is two records.
//
// A request's fingerprint is an xxhash64 of its method, endpoint, request
// target (path and query) and body (optionally with JSON canonicalised); a
// retry must match it to be replayed. The path is included so that a key
// reused on another resource of one route (/v1/calls/1, /v1/calls/2) is a
// conflict, never another resource's response.
//
// # Recording
//
// The handler's response is held back until the handler returns, recorded
// (with Options.ShouldStore: by default 2xx and 4xx except 408, 409, 425 and
// 429), and only then sent: a client that sees a response can always have
// it replayed. Recording uses a context that a client disconnect cannot
// cancel. A response that is not recorded releases the claim, so that a
// retry runs the handler again: a status ShouldStore refuses (5xx by
// default), a panic (re-raised after the release), a streamed response
// (the handler flushed), a hijacked connection, or a body larger than
// Options.MaxResponseBody; the claim is released when the handler returns,
// never while it still runs, so a duplicate cannot run beside it. Headers are
// taken as they are when the handler returns; trailers are sent but not
// recorded. If the store fails to record a response, the
// response is sent all the same and the failure logged: the handler ran, and
// hiding its result would be worse than a retry that runs it again.
//
// Recorded headers are an allow-list: Content-Type, Content-Encoding,
// Location, ETag, Last-Modified, Content-Language, Content-Location and
// X-Request-Id, plus Options.StoredHeaders. Set-Cookie, Date,
// Content-Length and hop-by-hop headers are never recorded. Content-Encoding
// is recorded, beyond the list of the IETF draft, because the stored body's
// bytes depend on it.
//
// # Caveats
//
//   - The request body is read into memory (up to MaxRequestBody) to
//     fingerprint it before the handler runs; the handler reads it from
//     there.
//   - The whole response is held in memory until the handler returns, so a
//     handler cannot stream to the client without giving up the record.
//   - When the middleware wraps a whole ServeMux, Request.Pattern is not set
//     yet: pass Options.RoutePattern = MuxPattern(mux), or wrap each handler.
//
// # Handlers in steps
//
// A handler with several side effects (insert, charge, email) records a
// recovery point after each with Checkpoint; a retry that recovers the key
// after a crash finds the last one with LastCheckpoint and skips the steps
// already done (see examples/payments). FromContext tells a handler
// whether it is such a retry (Call.Recovered).
package idemhttp
