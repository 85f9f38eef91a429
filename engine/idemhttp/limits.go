package idemhttp

import (
	"bytes"
	"io"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// Memory limits. A request's body is read (and hashed) before the store
// is asked about its key, and is held until the request ends: while the
// handler runs, and while a duplicate waits for the first request to
// finish, which may take WaitTimeout. Without limits, duplicates of one
// slow request would each hold a body for as long: 500 of 1 MiB are 500
// MiB. So:
//
//   - bodyBudget bounds the bytes of request bodies held at once
//     (Options.MaxBufferedBytes), counted as the buffers' capacity: a
//     request whose body does not fit gets 503 idempotency_overloaded with
//     Retry-After before it is read further.
//   - waiters bounds the duplicates that wait, in all and per key
//     (Options.MaxWaiters, MaxWaitersPerKey): it is the engine.WaitGate
//     of the middleware's requests, so the store answers one over either
//     InProgress instead of waiting, and the middleware 409
//     idempotency_request_in_progress with Retry-After, at once.

// bodyBudget is a counter of reserved bytes under a limit (negative: no
// limit).
type bodyBudget struct {
	limit int64
	used  atomic.Int64
}

// take reserves n bytes; false if they do not fit.
func (b *bodyBudget) take(n int64) bool {
	if b.limit < 0 {
		b.used.Add(n)
		return true
	}
	for {
		u := b.used.Load()
		if u+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *bodyBudget) give(n int64) { b.used.Add(-n) }

// budgetReader reads a body into buf, keeping the bytes reserved for the
// request (*held) at least buf's capacity: before each read the buffer
// has grown to hold it, and a growth the budget cannot take ends the read
// with errOverBudget.
type budgetReader struct {
	r    io.Reader
	buf  *bytes.Buffer
	b    *bodyBudget
	held *int64
}

var errOverBudget = overBudgetError{}

type overBudgetError struct{}

func (overBudgetError) Error() string { return "idemhttp: request body memory budget exhausted" }

func (br budgetReader) Read(p []byte) (int, error) {
	if c := int64(br.buf.Cap()); c > *br.held {
		if !br.b.take(c - *br.held) {
			return 0, errOverBudget
		}
		*br.held = c
	}
	return br.r.Read(p)
}

// waiters counts the duplicates waiting for a running request, in all and
// per key, in stripes. It is the engine.WaitGate the middleware gives the
// store.
type waiters struct {
	max, perKey int
	refused     *atomic.Uint64 // counts refusals
	total       atomic.Int64
	stripes     [64]struct {
		mu sync.Mutex
		n  map[uint64]int
	}
}

func keyHash(k record.Key) uint64 {
	var buf [256]byte
	return xxhash.Sum64(k.Append(buf[:0]))
}

var _ engine.WaitGate = (*waiters)(nil)

// Enter counts a waiter for key; false (and nothing counted) if that
// would pass a limit. The store calls it (under its own locks: it must
// not block).
func (w *waiters) Enter(key record.Key) bool {
	if w.total.Add(1) > int64(w.max) {
		w.total.Add(-1)
		w.refused.Add(1)
		return false
	}
	h := keyHash(key)
	s := &w.stripes[h%uint64(len(w.stripes))]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[h] >= w.perKey {
		w.total.Add(-1)
		w.refused.Add(1)
		return false
	}
	if s.n == nil {
		s.n = make(map[uint64]int)
	}
	s.n[h]++
	return true
}

// Leave uncounts a waiter that Enter counted.
func (w *waiters) Leave(key record.Key) {
	h := keyHash(key)
	s := &w.stripes[h%uint64(len(w.stripes))]
	s.mu.Lock()
	if s.n[h]--; s.n[h] <= 0 {
		delete(s.n, h)
	}
	s.mu.Unlock()
	w.total.Add(-1)
}
