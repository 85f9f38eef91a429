package bench

import (
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
)

// TestWrittenMatchesPebbleMetrics checks the counting filesystem against
// Pebble's own metrics: it counts the write-ahead log, every table
// flushed or compacted, and little else (the manifest and options).
func TestWrittenMatchesPebbleMetrics(t *testing.T) {
	d := newDataset(3000, 2048)
	s, err := openPebbleSystem(t.TempDir(), engine.Relaxed, d)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	w := &worker{}
	for i := range d.n {
		if err := s.first(w, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	// A compaction in progress has written tables that Pebble's metrics
	// count only once it finishes: compare when none runs.
	m := s.db.Metrics()
	for deadline := time.Now().Add(10 * time.Second); m.Compact.NumInProgress > 0 && time.Now().Before(deadline); m = s.db.Metrics() {
		time.Sleep(10 * time.Millisecond)
	}
	want := m.WAL.BytesWritten
	for _, l := range m.Levels {
		want += l.TableBytesFlushed + l.TableBytesCompacted + l.BlobBytesFlushed + l.BlobBytesCompacted
	}
	got, ok := s.written()
	if !ok || got < want || got > want+want/20 {
		t.Errorf("counted %d bytes written; Pebble's metrics say %d (log %d)", got, want, m.WAL.BytesWritten)
	}
}
