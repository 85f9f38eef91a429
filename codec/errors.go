package codec

import "errors"

// ErrCorrupt is returned when a frame is truncated, damaged (its checksum
// does not match), or otherwise malformed. Errors returned by [Decode] and
// [DecodedLen] for bad input wrap it.
var ErrCorrupt = errors.New("idemkv/codec: corrupt frame")

// ErrVersion is returned when a frame was written by a newer, unknown
// version of the format. It also matches [ErrCorrupt], since the frame
// cannot be read.
var ErrVersion = versionError{}

type versionError struct{}

func (versionError) Error() string        { return "idemkv/codec: unknown frame version" }
func (versionError) Is(target error) bool { return target == ErrCorrupt }

// ErrTooLarge is returned by [Append] when the body is longer than
// [MaxLen]. It is the one "too large" error of idemkv: record.ErrTooLarge
// and engine.ErrTooLarge are this error.
var ErrTooLarge = errors.New("idemkv: too large")
