package redisstore

import (
	"errors"
	"fmt"

	"github.com/idemkv/idemkv/engine"
)

// ErrCollision is returned when two different keys map to one Redis key
// (their SHA-256 prefixes collide). The request is refused rather than
// answered from another key's record. It also matches engine.ErrStorage.
var ErrCollision = errors.New("redisstore: two idempotency keys share one Redis key")

// storageErr wraps an error from Redis for op so that it matches
// engine.ErrStorage (the middleware answers 503).
func storageErr(op string, err error) error {
	return fmt.Errorf("redisstore: %s: %w: %w", op, engine.ErrStorage, err)
}
