package redisstore

// WithoutSetNXGet makes the Store claim new keys as it does on servers
// before Redis 7.0, which refuse SET with both NX and GET.
func (s *Store) WithoutSetNXGet() { s.noNXGet.Store(true) }
