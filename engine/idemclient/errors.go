package idemclient

import "errors"

// ErrRetriesExhausted is returned, wrapped together with the error of the
// last try, when a request still failed with a transport error after its
// last try: MaxTries were made, or the request's context deadline left no
// time for another. errors.Is matches both it and the cause.
var ErrRetriesExhausted = errors.New("idemclient: retries exhausted")
