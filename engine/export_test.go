package engine

import (
	"github.com/cockroachdb/pebble/v2"
	"github.com/idemkv/idemkv/expiry"
	"github.com/idemkv/idemkv/record"
)

// DamageForTest rewrites the stored bytes of key's current record with
// damage(val), behind the engine's back, as disk corruption would.
func (e *Engine) DamageForTest(key record.Key, damage func([]byte) []byte) error {
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.release()
	ek := string(key.Append(nil))
	first, last := e.probeWindow(e.clock.Now())
	for g := last; ; g-- {
		k := append(expiry.AppendPrefix(nil, g), ek...)
		v, closer, err := e.db.Get(k)
		if err == nil {
			nv := damage(append([]byte(nil), v...))
			closer.Close()
			return e.db.Set(k, nv, pebble.Sync)
		}
		if g <= first {
			return ErrNotFound
		}
	}
}

// Evict empties the in-memory cache so that the next Begin reads storage.
func (e *Engine) EvictCacheForTest() {
	for i := range e.stripes {
		s := &e.stripes[i]
		s.mu.Lock()
		s.cache = recentCache{budget: s.cache.budget}
		s.mu.Unlock()
	}
}
