package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/idemkv/idemkv/expiry"
	"github.com/idemkv/idemkv/record"
)

// located is what a lookup found in storage.
type located struct {
	ok   bool           // a record was found
	gen  uint32         // the generation it is in
	meta record.Meta    // its metadata (checksum verified)
	rec  *record.Record // the record, decoded; nil if it is a completed record that has expired
}

// probeWindow returns the generations a record live at now can be in.
func (e *Engine) probeWindow(now time.Time) (first, last uint32) {
	first, last = e.gens.Live(now, e.ttl)
	// After the clock stepped back, records may sit in generations beyond
	// the window; probe up to the newest one written.
	last = max(last, e.maxGen.Load())
	first = max(first, e.lowGen.Load())
	return first, min(max(first, last), first+math.MaxUint16)
}

// lookup finds the newest stored record of ek (whose hash is h) among the
// generations that can hold a live record at now, reading only those
// whose key filter may hold it, and decodes it: a completed record with its
// body, an in-flight one without (see record.DecodeMeta). Nothing is copied
// out of Pebble but the decoded record, which aliases nothing of Pebble's.
// The caller must hold acquire (or acquireRead). On a stopped engine the
// key of a failed commit is refused with the engine's error: Pebble may
// hold it without its log bytes (see markUnwritten).
func (e *Engine) lookup(ek string, h uint64, now time.Time) (_ located, err error) {
	defer e.guard(&err)
	if e.wasUnwritten(ek) {
		return located{}, e.Err()
	}
	first, last := e.probeWindow(now)
	kb := getBuf()
	defer putBuf(kb)
	for g := last; ; g-- {
		if e.filt.mayContain(g, h) {
			*kb = expiry.AppendKey((*kb)[:0], g, ek)
			e.st.probes.Add(1)
			// A point read, not an iterator: it costs less (see the
			// replay-cold workload in package bench).
			v, closer, err := e.db.Get(*kb)
			if err == nil {
				loc, err := decodeLocated(g, v, now)
				closer.Close()
				if err != nil {
					e.st.corrupt.Add(1)
					return located{}, fmt.Errorf("idemkv: record in generation %d: %w", g, err)
				}
				return loc, nil
			}
			if !errors.Is(err, pebble.ErrNotFound) {
				return located{}, storageErr("read", err)
			}
		}
		if g <= first {
			break
		}
	}
	return located{}, nil
}

// decodeLocated decodes the stored value v of generation g, as lookup
// returns it.
func decodeLocated(g uint32, v []byte, now time.Time) (located, error) {
	f := located{ok: true, gen: g}
	var err error
	if f.meta, err = record.Peek(v); err != nil {
		return located{}, err
	}
	switch {
	case f.meta.State == record.Completed && f.meta.Expired(now):
		// Expired: nothing to decode.
	case f.meta.State == record.Completed:
		f.rec, err = record.Decode(v)
	default:
		f.rec, err = record.DecodeMeta(v)
	}
	if err != nil {
		return located{}, err
	}
	return f, nil
}

// Get returns the current record of key: a completed record (with its
// body) or the lease of an in-flight or interrupted claim. It returns
// ErrNotFound if there is none or it has expired, and an error matching
// ErrCorrupt if it is damaged. A record being completed is shown only
// once it is durable.
func (e *Engine) Get(ctx context.Context, key record.Key) (*record.Record, error) {
	if err := key.Validate(); err != nil {
		return nil, err
	}
	ek := string(key.Append(nil))
	h := xxhash.Sum64String(ek)
	s := &e.stripes[h&e.mask]
	for {
		if e.closed.Load() {
			return nil, ErrClosed
		}
		s.mu.Lock()
		c := s.calls[ek]
		if c != nil && c.kind == claimCall && !c.completing && e.failure.Load() != nil {
			// Held on a stopped engine: its lease may not be on disk
			// (see forgetClaim).
			s.mu.Unlock()
			return nil, e.Err()
		}
		if c == nil || c.kind != claimCall || !c.completing {
			s.mu.Unlock()
			break
		}
		s.mu.Unlock()
		// Being completed: the record is shown once it is durable.
		if err := await(ctx, c); err != nil {
			return nil, err
		}
	}
	if err := e.acquireRead(); err != nil {
		return nil, err
	}
	defer e.release()
	now := e.clock.Now()
	loc, err := e.lookup(ek, h, now)
	if err != nil {
		return nil, err
	}
	if !loc.ok || loc.rec == nil {
		return nil, ErrNotFound
	}
	return loc.rec, nil
}
