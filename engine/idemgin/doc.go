// Package idemgin plugs idemkv's idempotency contract into gin: one line,
//
//	router.Use(idemgin.Middleware(idem)) // idem, _ := idemhttp.New(store, nil)
//
// and every route the idemhttp.Middleware selects (by method, or by
// Options.Routes) gets the contract that package idemhttp documents: the
// first request runs, a retry with the same key and body gets the stored
// response with Idempotency-Replay: true, the same key with another body
// gets 409 idempotency_conflict, a duplicate that arrives while the first
// runs waits for it, and the handler never runs twice.
//
// What gin adds:
//
//   - The endpoint of a key is the method and gin's route template
//     (c.FullPath(): "POST /v1/calls/:id"), so one key on two routes is two
//     records, and Options.Routes and Options.RouteTTL name gin's
//     templates. A request that matched no route is keyed by its cleaned
//     path.
//   - Everything the handlers after the middleware write, including what an
//     abort writes (c.AbortWithStatusJSON) and what later middleware writes,
//     is recorded when the chain returns, and sent only then; the same
//     status policy applies (Options.ShouldStore: 2xx and most 4xx stored,
//     5xx released so that a retry runs again).
//   - A replay, a conflict or any other answer of the middleware's own
//     aborts the chain (c.IsAborted): the handlers after it do not run.
//   - A panic releases the key and goes on up to gin's recovery middleware,
//     which should therefore come first: router.Use(gin.Recovery(),
//     idemgin.Middleware(idem)).
//   - Handlers read c.Request as usual; its body has been read by the
//     middleware (to fingerprint it) and is handed to them whole.
//
// This package is its own Go module, so that programs that use idemkv
// without gin do not get gin in their module graph.
package idemgin
