package engine

import (
	"github.com/idemkv/idemkv/record"
)

// A stripe guards the in-flight state and the cache of the keys that hash
// to it. Its mutex is held only for map operations, never across I/O.
type stripe struct {
	mu    paddedMutex
	calls map[string]*call // in-flight lookups and claims by encoded key; guarded by mu
	cache recentCache      // guarded by mu
	n     hitCounts        // guarded by mu
}

// hitCounts are the counters of Begins answered from a stripe's cache;
// Stats adds them to the engine's.
type hitCounts struct {
	begins, cacheHits, replays, conflicts uint64
}

func (s *stripe) init(cacheBudget int) {
	s.calls = make(map[string]*call)
	s.cache.budget = cacheBudget
}

// recentCache keeps the records of recently completed keys, decoded, in
// first-in first-out order within a byte budget, so that retries (which
// usually come soon) are answered from memory without decoding or
// copying: the records are read-only and handed out as they are. Entries
// are checked for expiry when read.
type recentCache struct {
	m      map[string]cacheEntry
	queue  []queued // insertion order; entries may be stale
	head   int      // first live index of queue
	bytes  int
	budget int
	seq    uint64
}

type cacheEntry struct {
	rec  *record.Record
	size int // bytes charged to the budget
	seq  uint64
}

type queued struct {
	key string
	seq uint64
}

// get returns key's record, or nil.
func (c *recentCache) get(key []byte) *record.Record {
	return c.m[string(key)].rec
}

func (c *recentCache) put(key string, r *record.Record) {
	size := len(key) + r.MemSize()
	if c.budget <= 0 || size > c.budget/2 {
		c.remove(key)
		return
	}
	if c.m == nil {
		c.m = make(map[string]cacheEntry)
	}
	c.remove(key)
	c.seq++
	c.m[key] = cacheEntry{rec: r, size: size, seq: c.seq}
	c.queue = append(c.queue, queued{key: key, seq: c.seq})
	c.bytes += size
	for c.bytes > c.budget && c.head < len(c.queue) {
		q := c.queue[c.head]
		c.queue[c.head] = queued{}
		c.head++
		if e, ok := c.m[q.key]; ok && e.seq == q.seq {
			delete(c.m, q.key)
			c.bytes -= e.size
		}
	}
	if c.head > 64 && c.head > len(c.queue)/2 {
		n := copy(c.queue, c.queue[c.head:])
		clear(c.queue[n:])
		c.queue = c.queue[:n]
		c.head = 0
	}
}

func (c *recentCache) remove(key string) {
	if e, ok := c.m[key]; ok {
		delete(c.m, key)
		c.bytes -= e.size
	}
}
