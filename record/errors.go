package record

import (
	"errors"

	"github.com/idemkv/idemkv/codec"
)

// ErrCorrupt is returned when stored bytes (an encoded key or record) are
// truncated, damaged or malformed. It is the same error as codec.ErrCorrupt,
// so one errors.Is check covers a damaged body too.
var ErrCorrupt = codec.ErrCorrupt

// ErrVersion is returned when a record was written by a newer version of
// the format. It also matches [ErrCorrupt].
var ErrVersion = codec.ErrVersion

// ErrInvalidKey is returned when a key is empty or a part of it is longer
// than its limit (MaxScopeLen, MaxEndpointLen, MaxKeyLen).
var ErrInvalidKey = errors.New("idemkv/record: invalid key")

// ErrTooLarge is returned when a record's fields exceed their limits
// (MaxRequestIDLen, MaxHeaders, MaxHeaderBytes, MaxPhaseLen,
// MaxCheckpointData, or codec.MaxLen for the body). It is the same error as
// codec.ErrTooLarge.
var ErrTooLarge = codec.ErrTooLarge
