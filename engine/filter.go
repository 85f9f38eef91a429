package engine

import (
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/idemkv/idemkv/expiry"
)

// keyFilters remembers, for each generation, which keys may have a record
// in it, so that a lookup reads storage only in the generations that may
// hold the key: none at all for a key never seen (the common case of a
// first request), usually one for a key seen before.
//
// Each generation has a Bloom filter of the hashes of the keys written to
// it (see genFilter). Every write of a record adds its key to the filter
// of its generation before the write is committed, so a filter never
// misses a key written by this process. Keys written by earlier processes
// are added by a scan of the store that runs in the background after Open;
// until it finishes (ready), a generation whose filter says "absent" is
// read all the same. Deletions leave keys in the filters (a false
// positive costs one read); dropping a generation drops its filter.
//
// Reads take no lock: the map of filters is replaced, never modified.
type keyFilters struct {
	ready atomic.Bool // the scan of the store at Open has finished
	m     atomic.Pointer[map[uint32]*genFilter]
	mu    sync.Mutex // serialises replacements of m
}

// mayContain reports whether generation gen may hold a record of the key
// whose hash is h.
func (kf *keyFilters) mayContain(gen uint32, h uint64) bool {
	if !kf.ready.Load() {
		return true
	}
	if m := kf.m.Load(); m != nil {
		if f := (*m)[gen]; f != nil {
			return f.mayContain(h)
		}
	}
	return false
}

// add records that generation gen holds (or is about to hold) a record of
// the key whose hash is h.
func (kf *keyFilters) add(gen uint32, h uint64) {
	kf.filter(gen).add(h)
}

// filter returns the filter of gen, creating it if needed.
func (kf *keyFilters) filter(gen uint32) *genFilter {
	if m := kf.m.Load(); m != nil {
		if f := (*m)[gen]; f != nil {
			return f
		}
	}
	kf.mu.Lock()
	defer kf.mu.Unlock()
	old := kf.m.Load()
	if old != nil {
		if f := (*old)[gen]; f != nil {
			return f
		}
	}
	m := make(map[uint32]*genFilter, 1+lenMap(old))
	if old != nil {
		for g, f := range *old {
			m[g] = f
		}
	}
	f := &genFilter{}
	m[gen] = f
	kf.m.Store(&m)
	return f
}

// dropBelow forgets the filters of the generations below low.
func (kf *keyFilters) dropBelow(low uint32) {
	kf.mu.Lock()
	defer kf.mu.Unlock()
	old := kf.m.Load()
	if old == nil {
		return
	}
	m := make(map[uint32]*genFilter, len(*old))
	for g, f := range *old {
		if g >= low {
			m[g] = f
		}
	}
	kf.m.Store(&m)
}

// memory returns the bytes held by the filters' bit arrays.
func (kf *keyFilters) memory() int {
	n := 0
	if m := kf.m.Load(); m != nil {
		for _, f := range *m {
			n += f.memory()
		}
	}
	return n
}

func lenMap(m *map[uint32]*genFilter) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// A genFilter is a scalable Bloom filter: a list of blocked Bloom filters
// (bloomSeg), each twice the capacity of the one before. Keys are added to
// the last one; a query asks all of them. Each holds about 10 bits per key
// at capacity, for a false-positive rate near 1% per segment, so a
// generation of n keys answers a never-seen key wrongly with probability
// about log2(n/firstSegKeys)+1 percent at most.
type genFilter struct {
	segs atomic.Pointer[[]*bloomSeg]
	mu   sync.Mutex // serialises growth
}

// firstSegKeys is the capacity of a generation's first segment: 2 KiB of
// bits.
const firstSegKeys = 1 << 11

func (f *genFilter) mayContain(h uint64) bool {
	segs := f.segs.Load()
	if segs == nil {
		return false
	}
	for _, s := range *segs {
		if s.mayContain(h) {
			return true
		}
	}
	return false
}

func (f *genFilter) add(h uint64) {
	for {
		if segs := f.segs.Load(); segs != nil {
			s := (*segs)[len(*segs)-1]
			if s.n.Add(1) <= s.capacity {
				s.add(h)
				return
			}
		}
		f.grow()
	}
}

// grow appends a segment if the last one is full (or there is none).
func (f *genFilter) grow() {
	f.mu.Lock()
	defer f.mu.Unlock()
	var segs []*bloomSeg
	if old := f.segs.Load(); old != nil {
		last := (*old)[len(*old)-1]
		if last.n.Load() < last.capacity {
			return // another goroutine grew it
		}
		segs = append(segs, *old...)
	}
	n := int64(firstSegKeys) << len(segs)
	segs = append(segs, newBloomSeg(n))
	f.segs.Store(&segs)
}

func (f *genFilter) memory() int {
	n := 0
	if segs := f.segs.Load(); segs != nil {
		for _, s := range *segs {
			n += 8 * len(s.words)
		}
	}
	return n
}

// A bloomSeg is a blocked Bloom filter: each key sets one bit in each of
// the eight 64-bit words of one 512-bit block (one cache line), chosen by
// the key's hash. At 10 bits per key its false-positive rate is about 1%.
type bloomSeg struct {
	words    []uint64 // accessed atomically; len is a power of two ≥ 8
	shift    uint     // 64 - log2(number of blocks)
	capacity int64
	n        atomic.Int64 // keys added or being added
}

// bitsPerKey is the size of a segment per key of capacity.
const bitsPerKey = 10

func newBloomSeg(capacity int64) *bloomSeg {
	blocks := uint64(capacity*bitsPerKey+511) / 512
	blocks = 1 << bits.Len64(blocks-1) // round up to a power of two
	return &bloomSeg{
		words:    make([]uint64, blocks*8),
		shift:    uint(64 - bits.TrailingZeros64(blocks)),
		capacity: capacity,
	}
}

// probe returns the first word of h's block and the bit positions (6 bits
// per word) to set or test.
func (s *bloomSeg) probe(h uint64) (int, uint64) {
	block := 0
	if s.shift < 64 {
		block = int(h >> s.shift)
	}
	// The block takes the high bits of h; remix for the bit positions.
	x := (h ^ h>>31) * 0x9e3779b97f4a7c15
	return block * 8, x
}

func (s *bloomSeg) add(h uint64) {
	base, x := s.probe(h)
	w := s.words[base : base+8 : base+8]
	for i := range w {
		if bit := uint64(1) << (x & 63); atomic.LoadUint64(&w[i])&bit == 0 {
			atomic.OrUint64(&w[i], bit)
		}
		x >>= 6
	}
}

func (s *bloomSeg) mayContain(h uint64) bool {
	base, x := s.probe(h)
	w := s.words[base : base+8 : base+8]
	for i := range w {
		if atomic.LoadUint64(&w[i])&(1<<(x&63)) == 0 {
			return false
		}
		x >>= 6
	}
	return true
}

// loadFilters adds the key of every record on disk to the filter of its
// generation, then marks the filters ready. It runs in the background from
// Open until done or Close. It reopens its iterator now and then so as not
// to pin old tables and memtables for the whole scan. If it fails, the
// filters stay unready and every lookup reads storage, as before the scan.
func (e *Engine) loadFilters() {
	defer e.bg.Done()
	if err := e.acquireRead(); err != nil {
		return
	}
	defer e.release()
	if err := e.scanFilters(); err != nil {
		e.log.Error("idemkv: loading key filters failed; lookups read every generation", "err", err)
	}
}

// scanFilters is loadFilters' scan.
func (e *Engine) scanFilters() (err error) {
	defer e.guard(&err)
	var (
		start = expiry.AppendPrefix(nil, e.lowGen.Load())
		end   = []byte{expiry.KeyPrefix + 1}
		last  []byte
	)
	for {
		it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: end})
		if err != nil {
			return err
		}
		n := 0
		for valid := it.First(); valid && n < filterScanBatch; valid = it.Next() {
			g, suffix, ok := expiry.SplitKey(it.Key())
			if ok {
				e.filt.add(g, xxhash.Sum64(suffix))
			}
			last = append(last[:0], it.Key()...)
			n++
		}
		if err := firstErr(it.Error(), it.Close()); err != nil {
			return err
		}
		if n < filterScanBatch {
			e.filt.ready.Store(true)
			return nil
		}
		select {
		case <-e.stop:
			return nil
		default:
		}
		start = append(last, 0) // the next key after last
	}
}

// filterScanBatch is how many keys loadFilters reads with one iterator
// (a variable for tests).
var filterScanBatch = 1 << 16
