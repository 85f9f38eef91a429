// Package idemecho plugs idemkv's idempotency contract into echo (v5):
// one line,
//
//	e.Use(idemecho.Middleware(idem)) // idem, _ := idemhttp.New(store, nil)
//
// and every route the idemhttp.Middleware selects (by method, or by
// Options.Routes) gets the contract that package idemhttp documents: the
// first request runs, a retry with the same key and body gets the stored
// response with Idempotency-Replay: true, the same key with another body
// gets 409 idempotency_conflict, a duplicate that arrives while the first
// runs waits for it, and the handler never runs twice.
//
// What echo adds:
//
//   - The endpoint of a key is the method and echo's route template
//     (c.Path(): "POST /v1/calls/:id"), so one key on two routes is two
//     records, and Options.Routes and Options.RouteTTL name echo's
//     templates.
//   - An error a handler returns is rendered by the Echo's HTTPErrorHandler
//     inside what is recorded: echo.NewHTTPError(422, "card declined")
//     stores and replays that 422; a plain error renders as echo renders it
//     (500 by default), which the store policy (Options.ShouldStore)
//     releases, so that a retry runs the handler again. The error is then
//     returned up the chain, as echo's own middleware does, so that logging
//     and tracing middleware see it; echo's error handlers skip a response
//     already sent, and a custom HTTPErrorHandler must do the same (check
//     Committed, as echo.DefaultHTTPErrorHandler does).
//   - A replay, a conflict or any other answer of the middleware's own is
//     returned without calling the next handler.
//   - A panic releases the key and goes on up to echo's Recover
//     middleware, which should therefore come first:
//     e.Use(middleware.Recover(), idemecho.Middleware(idem)).
//
// # The trap this package avoids
//
// Wiring the net/http middleware with echo.WrapMiddleware(idem.Handler)
// records an empty 200 for every handler that returns an error: echo
// renders a returned error after the whole chain, so after the middleware
// has already recorded (and sent) what the handler wrote, which was
// nothing. Every retry for the next 24 hours would be replayed that empty
// 200. TestWrapMiddlewareRecordsAnEmpty200 shows it. Use this package.
//
// This package is its own Go module, so that programs that use idemkv
// without echo do not get echo in their module graph.
package idemecho
