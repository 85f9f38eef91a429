package engine

import "github.com/cockroachdb/pebble/v2"

// MetaVersionForTest is the metadata format version this build writes.
const MetaVersionForTest = metaVersion

// MetaKeyForTest returns the Pebble key of the data directory's metadata.
func MetaKeyForTest() []byte { return append([]byte(nil), metaKey...) }

// FlushForTest flushes Pebble's memtable, so that the records written so
// far move from the write-ahead log to tables (and blob files).
func (e *Engine) FlushForTest() (err error) {
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.release()
	defer e.guard(&err)
	return e.db.Flush()
}

// RewriteMetaForTest replaces the stored metadata of the data directory
// with rewrite(current), behind the engine's back. The engine keeps using
// what it read at Open; the next Open reads the new bytes.
func (e *Engine) RewriteMetaForTest(rewrite func([]byte) []byte) error {
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.release()
	v, closer, err := e.db.Get(metaKey)
	if err != nil {
		return err
	}
	nv := rewrite(append([]byte(nil), v...))
	closer.Close()
	return e.db.Set(metaKey, nv, pebble.Sync)
}
