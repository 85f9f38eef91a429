package rpcidem

// The status codes of gRPC and Connect (the same numbers in both).
const (
	OK                 uint32 = 0
	Canceled           uint32 = 1
	Unknown            uint32 = 2
	InvalidArgument    uint32 = 3
	DeadlineExceeded   uint32 = 4
	NotFound           uint32 = 5
	AlreadyExists      uint32 = 6
	PermissionDenied   uint32 = 7
	ResourceExhausted  uint32 = 8
	FailedPrecondition uint32 = 9
	Aborted            uint32 = 10
	OutOfRange         uint32 = 11
	Unimplemented      uint32 = 12
	Internal           uint32 = 13
	Unavailable        uint32 = 14
	DataLoss           uint32 = 15
	Unauthenticated    uint32 = 16
)

// ShouldStore is the default store policy: a call's outcome is recorded
// (and replayed to every retry) when it is an answer to the request, and
// released (so that a retry runs the handler again) when it says "this
// time it did not work". It is idemhttp's policy (2xx and 4xx stored, 5xx
// and 408, 409, 425, 429 released) spelled in status codes:
//
//	stored    OK, InvalidArgument, NotFound, AlreadyExists,
//	          PermissionDenied, FailedPrecondition, OutOfRange,
//	          Unauthenticated
//	released  Canceled, Unknown, DeadlineExceeded, ResourceExhausted,
//	          Aborted, Unimplemented, Internal, Unavailable, DataLoss, and any code
//	          above 16
func ShouldStore(code uint32) bool {
	switch code {
	case OK, InvalidArgument, NotFound, AlreadyExists, PermissionDenied,
		FailedPrecondition, OutOfRange, Unauthenticated:
		return true
	}
	return false
}

// HTTPStatus is the HTTP status a code stands for (the mapping of
// google.rpc.Code): the status a record is stored with, which is what
// `idemkv inspect` and the store's statistics show.
func HTTPStatus(code uint32) int {
	switch code {
	case OK:
		return 200
	case Canceled:
		return 499
	case InvalidArgument, FailedPrecondition, OutOfRange:
		return 400
	case DeadlineExceeded:
		return 504
	case NotFound:
		return 404
	case AlreadyExists, Aborted:
		return 409
	case PermissionDenied:
		return 403
	case ResourceExhausted:
		return 429
	case Unimplemented:
		return 501
	case Unavailable:
		return 503
	case Unauthenticated:
		return 401
	}
	return 500 // Unknown, Internal, DataLoss, and codes out of range
}
