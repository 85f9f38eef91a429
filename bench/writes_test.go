package bench

import (
	"testing"

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
	m := s.db.Metrics()
	want := m.WAL.BytesWritten
	for _, l := range m.Levels {
		want += l.TableBytesFlushed + l.TableBytesCompacted
	}
	got, ok := s.written()
	if !ok || got < want || got > want+want/20 {
		t.Errorf("counted %d bytes written; Pebble's metrics say %d (log %d)", got, want, m.WAL.BytesWritten)
	}
}
