package engine

import "sync"

// paddedMutex keeps each stripe's hot mutex on its own cache line.
type paddedMutex struct {
	sync.Mutex
	_ [64 - 8]byte
}
