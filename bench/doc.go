// Package bench measures idemkv against two baselines in the same process
// and the same run, so that every figure it reports can be read as a ratio
// taken on one machine at one moment. [Run] measures one [Workload] on
//
//   - idemkv: the engine in a fresh data directory, opened with the
//     configured [engine.Durability], driven the way a server drives it
//     (Begin, then Complete with the response);
//   - map: an in-memory map in 256 shards, each behind a sync.RWMutex, the
//     upper bound of what a store without persistence can do;
//   - pebble: naive raw Pebble, opened with default options in its own
//     directory, that answers each request with db.Get and, for a first
//     request, db.Set, one commit per request.
//
// The idemkv command's bench subcommand is a thin wrapper around Run; the
// same systems and workloads are available to `go test -bench` in
// bench_test.go.
//
// # Workloads
//
//	workload     idemkv                          map, pebble
//	fresh        Begin (Proceed) + Complete      Get (miss) + Set of the body
//	replay       Begin (Replay) of a key         Get, copying the value into a
//	             completed just before           buffer the goroutine reuses
//	replay-cold  replay, engine cache disabled   as replay
//	             (Options.CacheSize = -1)
//	conflict     Begin (Conflict): a completed   as replay
//	             key, a different fingerprint
//
// The replay and conflict workloads first store every key they will ask
// for (not measured), then ask for each once. The baselines keep no
// fingerprint, so for them a conflict costs what a replay does.
//
// # Durability
//
// In [engine.Synced] mode raw Pebble commits with pebble.Sync (fsync
// before Set returns); in [engine.Relaxed] mode with pebble.NoSync. The
// second mapping favours Pebble: NoSync returns while the write may still
// sit in Pebble's memory, where a crash of the process loses it, while
// idemkv's Relaxed mode has written it to the operating system. The map
// persists nothing in either mode.
//
// # What is measured
//
// For each system, Concurrency goroutines share Ops operations (goroutine
// g does operations g, g+Concurrency, …). Reported are the throughput over
// the wall time of the measured phase, the 50th, 99th and 99.9th
// percentile latency of single operations (time.Now around each, so a few
// tens of nanoseconds of clock reads are included), heap allocations per
// operation (runtime.MemStats.Mallocs over the phase, background work of
// the store included) and, for idemkv and Pebble, the disk space in use
// right after the phase divided by the records stored.
//
// Keys are random UUID-shaped strings, all distinct; bodies are realistic
// JSON from package payload, eight distinct ones generated up front.
// Fingerprints are computed up front too: the stores are measured, not the
// hashing of requests.
//
// # Caveats
//
//   - Disk bytes are measured before any flush: with the default Ops most
//     data is still in the write-ahead log, and for idemkv the log also
//     holds every lease record. The figure is what the run used, not the
//     steady state after compaction.
//   - Raw Pebble's default options differ from the engine's (for example a
//     4 MiB memtable against 64 MiB); that is the point of a naive
//     baseline. Only its informational log messages are dropped.
//   - For the fresh workload the map keeps at most about 1 GiB of bodies,
//     clearing a shard that outgrows its share, as a bounded cache such as
//     fastcache does; otherwise large bodies would exhaust memory.
//   - Run refuses to report an answer from idemkv that the workload does
//     not expect (for example Proceed during a replay): it counts answers
//     in [Result.Outcomes] and returns an error matching
//     [ErrUnexpectedOutcome].
package bench
