package engine

import (
	"bytes"
	"context"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
	"github.com/idemkv/idemkv/expiry"
	"github.com/idemkv/idemkv/record"
)

// This file holds the operator functions: Delete, Scan and Sweep.

// Delete removes every stored copy of key, so that the next request with
// it runs as new. It refuses with ErrInProgress while a request of this
// process holds the key's claim within its lease; a claim past its lease,
// or an interrupted one (left by a crash), is deleted, and its holder's
// Complete then fails with ErrLeaseLost. It returns ErrNotFound if no live
// record existed (expired copies are removed all the same). In the Synced
// mode it returns once the deletion is durable.
func (e *Engine) Delete(ctx context.Context, key record.Key) (err error) {
	if err := key.Validate(); err != nil {
		return err
	}
	ek := string(key.Append(nil))
	s := e.stripeFor(ek)
	var lc *call
	for lc == nil {
		if e.closed.Load() {
			return ErrClosed
		}
		s.mu.Lock()
		c := s.calls[ek]
		switch {
		case c == nil:
			lc = s.startLookupLocked(ek)
			s.mu.Unlock()
		case c.expiredLocked(e.clock.Now()):
			e.takeOverUnlock(s, ek, c)
		case c.kind == claimCall:
			s.mu.Unlock()
			return ErrInProgress
		default:
			s.mu.Unlock()
			if err := await(ctx, c); err != nil {
				return err
			}
		}
	}
	defer s.abandon(ek, lc)
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.release()
	defer e.guard(&err)
	now := e.clock.Now()
	_, last := e.probeWindow(now)
	first := e.lowGen.Load() // expired copies too
	it, err := e.db.NewIter(&pebble.IterOptions{UseL6Filters: true})
	if err != nil {
		return storageErr("read", err)
	}
	b := e.db.NewBatch()
	defer b.Close()
	live := false
	var kb []byte
	for g := first; g <= last; g++ {
		kb = expiry.AppendKey(kb[:0], g, ek)
		if it.SeekPrefixGE(kb) && bytes.Equal(it.Key(), kb) {
			_ = b.Delete(kb, nil)
			if m, err := record.Peek(it.Value()); err != nil || m.State != record.Completed || !m.Expired(now) {
				live = true // damaged records count as live: they are there
			}
		}
		if g == math.MaxUint32 {
			break
		}
	}
	if err := firstErr(it.Error(), it.Close()); err != nil {
		return storageErr("read", err)
	}
	if b.Empty() {
		return ErrNotFound
	}
	if err := e.commit(b, true); err != nil {
		return err
	}
	e.st.deletes.Add(1)
	if !live {
		return ErrNotFound
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// ScanOptions select what Scan visits.
type ScanOptions struct {
	// Prefix limits the scan to a scope or an endpoint of a scope.
	// Default: every key.
	Prefix record.Prefix
	// IncludeExpired also visits records that have expired but whose
	// generation has not been dropped yet.
	IncludeExpired bool
	// WithBody decodes bodies; without it Entry.Record.Body is nil.
	WithBody bool
}

// Entry is one record visited by Scan.
type Entry struct {
	Key        record.Key
	Generation uint32
	Size       int            // stored (encoded, compressed) bytes
	Record     *record.Record // nil if Err is set
	Err        error          // set for a damaged record; matches ErrCorrupt
}

// Scan calls fn for every stored record that opts selects, in order of
// generation (expiry time) and then key, until fn returns an error, which
// Scan returns. Damaged records are reported through Entry.Err rather than
// ending the scan. It is meant for operators and tools: it reads a
// consistent snapshot, and Close waits for it to finish.
func (e *Engine) Scan(ctx context.Context, opts ScanOptions, fn func(Entry) error) (err error) {
	if err := e.acquireRead(); err != nil {
		return err
	}
	defer e.release()
	defer e.guard(&err)
	now := e.clock.Now()
	p := opts.Prefix.Append(nil)
	it, err := e.db.NewIter(&pebble.IterOptions{
		LowerBound: expiry.AppendPrefix(nil, 0),
		UpperBound: []byte{expiry.KeyPrefix + 1},
	})
	if err != nil {
		return storageErr("scan", err)
	}
	defer it.Close()
	var seek []byte
	n := 0
	for valid := it.SeekGE(append(expiry.AppendPrefix(seek[:0], 0), p...)); valid; {
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		g, suffix, ok := expiry.SplitKey(it.Key())
		if !ok {
			break
		}
		if !bytes.HasPrefix(suffix, p) {
			switch {
			case bytes.Compare(suffix, p) < 0:
				seek = append(expiry.AppendPrefix(seek[:0], g), p...)
			case g == math.MaxUint32:
				return it.Error()
			default:
				seek = append(expiry.AppendPrefix(seek[:0], g+1), p...)
			}
			valid = it.SeekGE(seek)
			continue
		}
		ent := Entry{Generation: g}
		v, err := it.ValueAndErr()
		if err != nil {
			return storageErr("scan", err)
		}
		ent.Size = len(v)
		if ent.Key, err = record.DecodeKey(suffix); err != nil {
			ent.Err = err
		} else if opts.WithBody {
			ent.Record, ent.Err = record.Decode(v)
		} else {
			ent.Record, ent.Err = record.DecodeMeta(v)
		}
		if ent.Err != nil {
			ent.Record = nil
			e.st.corrupt.Add(1)
		}
		skip := ent.Record != nil && !opts.IncludeExpired && ent.Record.State == record.Completed && ent.Record.Expired(now)
		if !skip {
			if err := callUser(fn, ent); err != nil {
				return err
			}
		}
		valid = it.Next()
	}
	return it.Error()
}

// Sweep drops every generation that can only hold expired records, with
// one range deletion, and returns how many generations it dropped. The
// engine sweeps by itself every SweepInterval; Sweep is for tools and
// tests. Correctness never depends on it (expired records are never
// replayed); it reclaims space.
func (e *Engine) Sweep(ctx context.Context) (n int, err error) {
	if err := e.acquire(); err != nil {
		return 0, err
	}
	defer e.release()
	defer e.guard(&err)
	drop := e.gens.Droppable(e.clock.Now())
	low := e.lowGen.Load()
	if drop <= low {
		return 0, nil
	}
	start, end := expiry.DropRange(low, drop)
	b := e.db.NewBatch()
	defer b.Close()
	_ = b.DeleteRange(start, end, nil)
	if err := e.commit(b, false); err != nil {
		return 0, fmt.Errorf("idemkv: sweep: %w", err)
	}
	e.lowGen.Store(drop)
	e.filt.dropBelow(drop)
	e.st.sweeps.Add(1)
	e.st.gensDropped.Add(uint64(drop - low))
	// Flush so that the range deletion reaches the tables it covers and
	// Pebble can free them with a delete-only compaction.
	if _, err := e.db.AsyncFlush(); err != nil {
		return int(drop - low), fmt.Errorf("idemkv: sweep: flush: %w", err)
	}
	return int(drop - low), nil
}

// Lister is a store whose records an operator can list: the embedded
// engine and the Redis store. The admin API (package idemadmin) uses it.
type Lister interface {
	// List calls fn for every live record whose key prefix selects, in
	// no particular order, until fn returns an error, which List
	// returns. Records come without their bodies.
	List(ctx context.Context, prefix record.Prefix, fn func(record.Key, *record.Record) error) error
}

var _ Lister = (*Engine)(nil)

// List calls fn for every live record under prefix (see Lister), from
// Scan. A damaged record is skipped (Scan reports it; Get on its key
// returns ErrCorrupt).
func (e *Engine) List(ctx context.Context, prefix record.Prefix, fn func(record.Key, *record.Record) error) error {
	return e.Scan(ctx, ScanOptions{Prefix: prefix}, func(en Entry) error {
		if en.Err != nil {
			return nil
		}
		return fn(en.Key, en.Record)
	})
}
