package engine

import (
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/idemkv/idemkv/codec"
	"github.com/idemkv/idemkv/expiry"
	"github.com/idemkv/idemkv/record"
)

// encode appends the stored form of r to dst, its body compressed as
// Options.Compression says. It fails with ErrTooLarge if r exceeds the
// record limits.
func (e *Engine) encode(dst []byte, r *record.Record) ([]byte, error) {
	return record.Append(dst, r, e.bodyMethod(len(r.Body)))
}

// writeRecord stores r under ek (whose hash is h) in generation gen,
// deleting the copy that loc found in another generation, and waits for
// durability if durable.
func (e *Engine) writeRecord(ek string, h uint64, r *record.Record, gen uint32, loc located, durable bool) error {
	vb := getBuf()
	defer putBuf(vb)
	val, err := e.encode((*vb)[:0], r)
	if err != nil {
		return err
	}
	*vb = val
	old := gen // nothing to delete
	if loc.ok {
		old = loc.gen
	}
	return e.writeValue(ek, h, val, gen, old, durable)
}

// writeValue stores the encoded record val under ek (whose hash is h) in
// generation gen, deleting its copy in generation old if that is another
// one, in one batch, and waits for durability if durable.
func (e *Engine) writeValue(ek string, h uint64, val []byte, gen, old uint32, durable bool) error {
	b := e.db.NewBatch()
	defer b.Close()
	kb := getBuf()
	defer putBuf(kb)
	*kb = expiry.AppendKey((*kb)[:0], gen, ek)
	_ = b.Set(*kb, val, nil)
	e.filt.add(gen, h)
	if old != gen {
		*kb = expiry.AppendKey((*kb)[:0], old, ek)
		_ = b.Delete(*kb, nil)
	}
	if err := e.commit(b, durable); err != nil {
		return err
	}
	e.noteGen(gen)
	return nil
}

// deleteRecord deletes ek's record in generation gen, without waiting for
// durability.
func (e *Engine) deleteRecord(ek string, gen uint32) error {
	b := e.db.NewBatch()
	defer b.Close()
	kb := getBuf()
	defer putBuf(kb)
	*kb = expiry.AppendKey((*kb)[:0], gen, ek)
	_ = b.Delete(*kb, nil)
	return e.commit(b, false)
}

// commit applies b. A durable commit in the Synced mode returns once
// Pebble has fsynced the log (pebble.Sync: Pebble's log writer serves every
// commit waiting for a sync with one fsync, so concurrent completions share
// them). Every other commit returns once the batch is in Pebble's log
// buffer and memtable (pebble.NoSync), and kicks the background log syncer,
// which has it on disk within about one fsync (see syncLoop).
//
// Pebble does every fsync of its log itself; the engine's syncer proves
// each one in the log (see walcheck.go), so that Open can tell a torn tail
// from damage to acknowledged bytes. See "Durability modes" in the package
// doc.
//
// While Pebble takes no writes because its flushes fail (a full disk),
// commit refuses at once rather than wait inside Pebble (refuseStalled).
//
// A commit whose log write failed (see package walfs) is visible in
// Pebble's memtable but not in its log; the engine stops (ErrFailed) at
// once so that nothing after it is acknowledged. The stopped engine goes
// on replaying what it stored, but never the keys of a failed commit
// (markUnwritten, before commit returns; until then the key stays claimed,
// so Begin and Get do not read it; a Scan may list it).
func (e *Engine) commit(b *pebble.Batch, durable bool) (err error) {
	if err := e.refuseStalled(); err != nil {
		return err // b never reached Pebble
	}
	defer func() {
		if err != nil {
			e.markUnwritten(b)
		}
	}()
	defer e.guard(&err)
	synced := durable && e.opts.Durability == Synced
	wo := pebble.NoSync
	if synced {
		wo = pebble.Sync
	}
	if err := e.db.Apply(b, wo); err != nil {
		if ferr := e.Err(); ferr != nil {
			return ferr
		}
		return storageErr("write", err)
	}
	if err := e.Err(); err != nil {
		return err
	}
	e.commits.Add(1)
	if !synced {
		e.unsynced.Store(true)
		e.kickSync()
	}
	return nil
}

func (e *Engine) noteGen(gen uint32) {
	for {
		m := e.maxGen.Load()
		if gen <= m || e.maxGen.CompareAndSwap(m, gen) {
			return
		}
	}
}

// bufPool holds scratch buffers for keys and values. A buffer is never
// returned to the pool while anything still refers to it.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return
	}
	bufPool.Put(b)
}

// blockCompressBelow is the body size below which the default compression
// (codec.Auto) stores a body as it is and leaves it to Pebble, which
// compresses it with its neighbours in 32 KiB blocks (see Open).
const blockCompressBelow = 16 << 10

// bodyMethod returns how to store a body of n bytes: Auto's choice is
// made here, with the engine's threshold, not codec's.
func (e *Engine) bodyMethod(n int) codec.Method {
	switch {
	case e.opts.Compression != codec.Auto:
		return e.opts.Compression
	case n < blockCompressBelow:
		return codec.None
	}
	return codec.S2
}
