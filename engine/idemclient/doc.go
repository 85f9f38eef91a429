// Package idemclient is the client side of idemkv's idempotency-key
// contract: an http.RoundTripper that gives every unsafe request an
// idempotency key and retries it, with the same key, until the server
// answers for good.
//
//	client := &http.Client{Transport: &idemclient.Transport{}}
//	resp, err := client.Post(url, "application/json", body)
//
// It imports only the standard library, so a client of an idemkv server
// never pulls in the storage engine.
//
// # What it does
//
// A POST, PUT, PATCH or DELETE request (Transport.Methods) that carries no
// Idempotency-Key (Transport.Header) and no X-Idempotency-Key gets a fresh
// random key, a UUIDv4 from crypto/rand; a request that carries one keeps
// it. The request is then sent, and sent again with the same key and the
// same body, after any of these:
//
//	answer                                        retried?
//	transport error (refused, reset, EOF, ...)    yes, unless the context is done
//	5xx                                           yes, except 501 and 505
//	429                                           yes
//	409 problem, code                             yes (the first request still runs)
//	  idempotency_request_in_progress
//	any other status (2xx, 3xx, other 4xx,        no: returned at once
//	  409 idempotency_conflict, 422, ...)
//
// The wait before a retry is the response's Retry-After (delta-seconds or
// an HTTP-date) when it has one, else full-jitter exponential backoff: a
// random time in [0, min(MaxDelay, BaseDelay×2ⁿ)] before retry n+1. A
// request is tried at most MaxTries times in all. Other methods (GET, HEAD,
// OPTIONS, ...) go straight to Transport.Base, untouched.
//
// # Guarantees
//
//   - The caller's *http.Request is never modified: the transport works on
//     a clone, and the caller's body is closed, as http.RoundTripper
//     requires.
//   - Every try sends the same key and the same body bytes. A body is
//     rewound with Request.GetBody when it is set (http.NewRequest sets it
//     for bytes and strings readers); any other body is read into memory
//     once, up to MaxBufferedBody.
//   - The response returned is the last one received, with its body
//     intact: a 409 whose body was inspected for its code is handed back
//     with that body whole. The body of every response that is retried is
//     drained (up to 64 KiB) and closed, so its connection can be reused.
//   - When the request's context is done, a wait stops at once and
//     RoundTrip returns the context's error. A wait that would outlast the
//     context's deadline is not begun: the last response (or error) is
//     returned at once instead.
//   - A Retry-After longer than MaxRetryAfter is not waited out: that
//     response is returned at once.
//   - After the last try, a transport error is returned wrapped so that
//     errors.Is matches both ErrRetriesExhausted and the cause, with the
//     number of tries in its message.
//
// A Transport is safe for concurrent use by multiple goroutines, provided
// its fields are not changed once it is in use.
//
// # Caveats
//
//   - A body larger than MaxBufferedBody, and without GetBody, is sent once,
//     with its key, and never retried: a failure is returned as it is.
//     Give such requests a GetBody to have them retried.
//   - http.Client.Timeout (or the context's deadline) covers every try and
//     every wait of a request, not each try.
//   - A transport error after the request was sent is retried: with an
//     idempotency key that is what makes it safe, but a server that ignores
//     keys may see the request twice.
//   - http.Client follows a redirect with a new request: the transport
//     gives it a new key unless the caller set one (which the client copies).
//   - The generated key is only in the request sent (Response.Request, as
//     net/http's Transport sets it). A caller that needs to know the key
//     beforehand, say to retry later itself, should set the header itself.
package idemclient
