package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/idemkv/idemkv/expiry"
	"github.com/idemkv/idemkv/record"
)

// found is what a lookup found in storage.
type found struct {
	found bool
	gen   uint32         // the generation it is in
	meta  record.Meta    // its metadata (checksum verified)
	rec   *record.Record // the record, decoded; nil if it is a completed record that has expired
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
func (e *Engine) lookup(ek string, h uint64, now time.Time) (_ found, err error) {
	defer e.guard(&err)
	if e.wasUnwritten(ek) {
		return found{}, e.Err()
	}
	first, last := e.probeWindow(now)
	kb := getBuf()
	defer putBuf(kb)
	for g := last; ; g-- {
		if e.filt.mayContain(g, h) {
			*kb = append(expiry.AppendPrefix((*kb)[:0], g), ek...)
			e.st.probes.Add(1)
			// A point read, not an iterator: cold replays 39-43 k -> 50-51 k
			// per second (idemkv bench -workload replay-cold -c 64).
			v, closer, err := e.db.Get(*kb)
			if err == nil {
				f, err := decodeFound(g, v, now)
				closer.Close()
				if err != nil {
					e.st.corrupt.Add(1)
					return found{}, fmt.Errorf("idemkv: record in generation %d: %w", g, err)
				}
				return f, nil
			}
			if !errors.Is(err, pebble.ErrNotFound) {
				return found{}, storageErr("read", err)
			}
		}
		if g <= first {
			break
		}
	}
	return found{}, nil
}

// decodeFound decodes the stored value v of generation g, as lookup
// returns it.
func decodeFound(g uint32, v []byte, now time.Time) (found, error) {
	f := found{found: true, gen: g}
	var err error
	if f.meta, err = record.Peek(v); err != nil {
		return found{}, err
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
		return found{}, err
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
		if c == nil || c.kind != claimCall || !c.completing {
			s.mu.Unlock()
			break
		}
		s.mu.Unlock()
		select {
		case <-c.wait():
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err := e.acquireRead(); err != nil {
		return nil, err
	}
	defer e.release()
	now := e.clock.Now()
	f, err := e.lookup(ek, h, now)
	if err != nil {
		return nil, err
	}
	if !f.found || f.rec == nil {
		return nil, ErrNotFound
	}
	return f.rec, nil
}

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
		if c := s.calls[ek]; c != nil {
			if c.expiredLocked(e.clock.Now()) {
				e.takeOverUnlock(s, ek, c)
				continue
			}
			s.mu.Unlock()
			if c.kind == claimCall {
				return ErrInProgress
			}
			select {
			case <-c.wait():
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		lc = newCall(lookupCall)
		s.calls[ek] = lc
		s.cache.remove(ek)
		s.mu.Unlock()
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
		kb = append(expiry.AppendPrefix(kb[:0], g), ek...)
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

// Stats are counters since Open and a few gauges. Counters only grow.
type Stats struct {
	Begins        uint64 // calls of Begin
	Lookups       uint64 // Begins not answered from memory
	Probes        uint64 // generations read by lookups (the key filters skip most)
	CacheHits     uint64 // Begins answered from recently completed records
	Proceeds      uint64 // Proceed answers (Recovered included)
	Recovered     uint64 // Proceed answers that recovered an interrupted claim
	Replays       uint64 // Replay answers (after a wait included)
	Conflicts     uint64 // Conflict answers
	InProgress    uint64 // InProgress answers
	Waits         uint64 // Begins that waited for a running request
	Completes     uint64 // successful Complete calls
	Releases      uint64 // successful Release calls
	Deletes       uint64 // successful Delete calls
	LeasesExpired uint64 // claims taken over after their lease ran out
	LeasesLost    uint64 // Complete or Release calls refused for a lost lease
	Corrupt       uint64 // damaged records found
	Errors        uint64 // storage errors returned to callers

	Claims int64 // claims in flight now

	Sweeps             uint64 // sweeps that dropped something
	GenerationsDropped uint64
	Fsyncs             uint64 // fsyncs of the write-ahead log

	Incarnation     uint64        // this process's incarnation number (read-only: the last process's)
	GenerationWidth time.Duration // of this data directory
	LowGeneration   uint32        // lowest generation that may hold records
	HighGeneration  uint32        // highest generation written

	DiskBytes uint64 // bytes of the files in the data directory

	// ReadOnly is set for an engine opened with Options.ReadOnly; Live
	// then says whether another process (or engine) had the directory
	// open when the snapshot was taken, so that its claims (those of
	// incarnation Incarnation) were in flight there.
	ReadOnly, Live bool

	// KeyFilterBytes is the memory held by the per-generation key filters
	// that let a lookup skip generations (about 1.25 bytes per record).
	KeyFilterBytes int
	// KeyFiltersReady is false while the filters are being loaded from
	// the records on disk after Open; meanwhile lookups read every
	// generation.
	KeyFiltersReady bool
}

type stats struct {
	begins, lookups, probes, cacheHits, proceeds, recovered, replays, conflicts,
	inflight, waits, completes, releases, deletes, leasesExpired,
	leasesLost, corrupt, errors, sweeps, gensDropped atomic.Uint64
	claims atomic.Int64
}

// Stats returns the engine's counters. It is cheap enough to call for
// every metrics scrape. After Close, DiskBytes is zero.
func (e *Engine) Stats() Stats {
	s := Stats{
		Begins: e.st.begins.Load(), Lookups: e.st.lookups.Load(), Probes: e.st.probes.Load(), CacheHits: e.st.cacheHits.Load(),
		Proceeds: e.st.proceeds.Load(), Recovered: e.st.recovered.Load(), Replays: e.st.replays.Load(),
		Conflicts: e.st.conflicts.Load(), InProgress: e.st.inflight.Load(), Waits: e.st.waits.Load(),
		Completes: e.st.completes.Load(), Releases: e.st.releases.Load(), Deletes: e.st.deletes.Load(),
		LeasesExpired: e.st.leasesExpired.Load(), LeasesLost: e.st.leasesLost.Load(),
		Corrupt: e.st.corrupt.Load(), Errors: e.st.errors.Load(), Claims: e.st.claims.Load(),
		Sweeps: e.st.sweeps.Load(), GenerationsDropped: e.st.gensDropped.Load(), Fsyncs: e.fs.Syncs(),
		Incarnation: e.incarnation, GenerationWidth: e.gens.Width,
		LowGeneration: e.lowGen.Load(), HighGeneration: e.maxGen.Load(),
		KeyFilterBytes: e.filt.memory(), KeyFiltersReady: e.filt.ready.Load(),
		ReadOnly: e.opts.ReadOnly, Live: e.live,
	}
	for i := range e.stripes {
		st := &e.stripes[i]
		st.mu.Lock()
		n := st.n
		st.mu.Unlock()
		s.Begins += n.begins
		s.CacheHits += n.cacheHits
		s.Replays += n.replays
		s.Conflicts += n.conflicts
	}
	if e.acquireRead() == nil {
		s.DiskBytes = e.diskBytes()
		e.release()
	}
	return s
}

// diskBytes sums the sizes of the files in the data directory. (Pebble's
// own DiskSpaceUsage leaves out blob files written before the last Open.)
func (e *Engine) diskBytes() uint64 {
	names, err := e.fs.List(e.dir)
	if err != nil {
		return 0
	}
	var n uint64
	for _, name := range names {
		if fi, err := e.fs.Stat(e.fs.PathJoin(e.dir, name)); err == nil && fi.Mode().IsRegular() {
			n += uint64(fi.Size())
		}
	}
	return n
}
