package engine

import (
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/idemkv/idemkv/engine/internal/walfs"
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

// SetFilterScanBatchForTest sets how many keys the background filter load
// reads per iterator, and returns a function that restores it.
func SetFilterScanBatchForTest(n int) func() {
	old := filterScanBatch
	filterScanBatch = n
	return func() { filterScanBatch = old }
}

// Bloom exposes a generation filter to the tests of filter.go.
type Bloom struct{ f genFilter }

func (b *Bloom) Add(h uint64)             { b.f.add(h) }
func (b *Bloom) MayContain(h uint64) bool { return b.f.mayContain(h) }
func (b *Bloom) Memory() int              { return b.f.memory() }

// SyncMarkForTest reads the sync mark of dir (see walcheck.go): the log
// number and size it proves.
func SyncMarkForTest(dir string) (num uint64, size int64, ok bool) {
	return readSyncMark(vfs.Default, dir)
}

// SalvageLogForTest is salvageLog.
var SalvageLogForTest = salvageLog

// WithFSForTest sets the filesystem the engine opens its directory on:
// an in-memory one that can simulate power loss, or one that injects
// faults.
func WithFSForTest(o *Options, fs vfs.FS) *Options {
	o.fs = fs
	return o
}

// The scope secret file and scope metadata codecs, for their fuzz tests.
var (
	ParseScopeFileForTest  = parseScopeFile
	EncodeScopeFileForTest = encodeScopeFile
	DecodeScopeMetaForTest = decodeScopeMeta
	EncodeScopeMetaForTest = encodeScopeMeta
)

// CheckLogsForTest is checkLogs.
var CheckLogsForTest = checkLogs

// WriteSyncMarkForTest writes the sync mark of dir on fs: the first size
// bytes of the log file name were fsynced.
func WriteSyncMarkForTest(fs vfs.FS, dir, name string, size int64) error {
	m := syncMark{fs: fs, path: fs.PathJoin(dir, syncMarkName)}
	defer m.close()
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := fs.Create(m.path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	f.Close()
	_, err = m.write(walfs.SyncPoint{Name: name, Size: size}, true)
	return err
}
