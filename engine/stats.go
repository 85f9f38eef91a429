package engine

import (
	"sync/atomic"
	"time"
)

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
	Fsyncs             uint64        // fsyncs of the write-ahead log
	FsyncTime          time.Duration // time spent in them (FsyncTime/Fsyncs: their mean latency)

	Incarnation     uint64        // this process's incarnation number (read-only: the last process's)
	GenerationWidth time.Duration // of this data directory
	LowGeneration   uint32        // lowest generation that may hold records
	HighGeneration  uint32        // highest generation written

	DiskBytes uint64 // bytes of the files in the data directory
	// BytesWritten counts the bytes the engine wrote to its files since
	// Open: the write-ahead log, the tables and blob files of flushes and
	// compactions, the manifest. Divided by Completes it gives the bytes
	// each record costs the disk.
	BytesWritten uint64

	// RoundTrips counts the store's requests to a server (a command or
	// a pipeline sent to Redis), and RoundTripErrors those that failed
	// (the server down, a timeout); zero for the embedded engine.
	RoundTrips, RoundTripErrors uint64

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
	inprogress, waits, completes, releases, deletes, leasesExpired,
	leasesLost, corrupt, errors, sweeps, gensDropped atomic.Uint64
	claims atomic.Int64
}

// Stats returns the engine's counters. It is cheap enough to call for
// every metrics scrape. After Close, DiskBytes is zero.
func (e *Engine) Stats() Stats {
	s := Stats{
		Begins: e.st.begins.Load(), Lookups: e.st.lookups.Load(), Probes: e.st.probes.Load(), CacheHits: e.st.cacheHits.Load(),
		Proceeds: e.st.proceeds.Load(), Recovered: e.st.recovered.Load(), Replays: e.st.replays.Load(),
		Conflicts: e.st.conflicts.Load(), InProgress: e.st.inprogress.Load(), Waits: e.st.waits.Load(),
		Completes: e.st.completes.Load(), Releases: e.st.releases.Load(), Deletes: e.st.deletes.Load(),
		LeasesExpired: e.st.leasesExpired.Load(), LeasesLost: e.st.leasesLost.Load(),
		Corrupt: e.st.corrupt.Load(), Errors: e.st.errors.Load(), Claims: e.st.claims.Load(),
		Sweeps: e.st.sweeps.Load(), GenerationsDropped: e.st.gensDropped.Load(), Fsyncs: e.fs.Syncs(), FsyncTime: e.fs.SyncTime(), BytesWritten: e.fs.Written(),
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
