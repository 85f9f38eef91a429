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
// [RunSweep] measures the same at several concurrencies in one run, and
// [Sweep.WriteChart] draws throughput and p99 latency against concurrency
// as an SVG image. [RunHTTP] measures the net/http middleware of package
// idemhttp against the bare handler it wraps; [RunChurn] checks that the
// disk space of short-lived records stays near their live set.
//
// The idemkv command's bench subcommand is a thin wrapper around these;
// the same systems and workloads are available to `go test -bench` in
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
//	mixed        each operation one of the       as fresh or replay
//	             above: see below
//
// The replay and conflict workloads first store every key they will ask
// for (not measured), then ask for each once, or, with Config.Keys, cycle
// through that many keys (so that a long run's keys fit idemkv's cache). The baselines keep no
// fingerprint, so for them a conflict costs what a replay does.
//
// In the mixed workload each goroutine draws from its own random sequence,
// seeded by its number (and the step of a sweep), so every system sees the
// same operations: with probability [Config.ReplayRatio] a retry of a key
// the goroutine completed earlier in the phase (chosen uniformly among
// them), with [Config.ConflictRatio] a request that reuses such a key with
// another body, and otherwise a fresh request. A goroutine's first
// operation is always fresh, as it has nothing to retry yet.
//
// # Closed and open loop
//
// By default each goroutine starts its next operation when the last one
// returns (closed loop): throughput is what the system sustains, and with
// many more goroutines than cores the latencies are mostly queueing for a
// core. With [Config.Rate] the operations are offered at a fixed rate
// instead (open loop): operation i is due i/Rate seconds after the start,
// and the goroutines take operations in order as they become free, like a
// pool of Concurrency connections. An operation that falls due before any
// goroutine is free counts its latency from its due time, so a system that
// falls behind shows the delay its clients would see rather than hiding it
// (no coordinated omission); one that a goroutine waited for counts from
// the wake-up, as timers wake up late. Use it to read latency at a load
// below saturation.
//
// # Prefill
//
// With [Config.Records], every system holds that many completed records
// before it is measured, so that the cost of a larger store shows. They
// are stored without being measured, as fast as each system allows: idemkv
// through Begin and Complete from 64 goroutines in the Relaxed mode, then
// closed (which fsyncs) and reopened in the measured mode; raw Pebble in
// batches of about a megabyte committed without fsync, then closed and
// reopened; the map holds them by reference to the shared bodies. Keys
// and bodies are functions of a record's index, so tens of millions of
// records take no memory in the benchmark itself (the map baseline holds
// its keys, about 180 bytes each). Progress lines report the prefill rate.
//
// # Warm-up
//
// With [Config.Warmup], every system first serves that many fresh
// requests, unmeasured, on keys of their own (after the prefill, before
// the retry targets are stored), at the measured concurrency, and then
// settles like before any phase. A store's first seconds are not its
// running speed: Pebble's memtables start at 256 KiB and double up to
// their full size, each a fresh allocation whose pages the kernel maps
// on first touch, and only then are they recycled; the Go heap grows the
// same way. On the reference machine a fresh engine did 25 k first
// requests a second in its first two seconds and 38-51 k a second from
// the fifth on. A Redis server measured beside it has usually been up
// for long. The warm-up's records stay, so every system is measured
// holding them (naive raw Pebble then compacts them along with the
// measured writes: that is its running cost). The idemkv bench command
// warms up with [DefaultWarmup] requests; -warmup 0 measures a cold
// start, as every figure measured before the flag existed did.
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
// g does operations g, g+Concurrency, …). Reported are
//
//   - the throughput over the wall time of the measured phase;
//   - the 50th, 99th and 99.9th percentile latency of single operations
//     (time.Now around each, so a few tens of nanoseconds of clock reads
//     are included);
//   - heap allocations per operation (runtime.MemStats.Mallocs over the
//     phase, background work of the store included);
//   - bytes written per operation: every byte idemkv and Pebble hand to
//     their files (write-ahead log, tables of flushes and compactions,
//     manifest), counted as they are handed to write(2) (for idemkv by
//     its own filesystem layer, engine.Stats.BytesWritten; for Pebble by
//     a wrapper of its vfs.FS), the same way for both; and
//     the write amplification, that figure divided by the mean body length;
//   - the disk space in use after the phase divided by the records the
//     system holds (prefill, retry targets and fresh requests so far);
//   - idemkv's throughput divided by each baseline's.
//
// Before a phase, Run waits until the store has written nothing for 300ms
// (at most two minutes), so that the flushes and compactions of what was
// stored before are not counted; after it, it waits the same way and
// counts what the phase left to the background as the phase's writes.
//
// Keys are random UUID-shaped strings, all distinct; bodies are realistic
// JSON from package payload, eight distinct ones generated up front.
// Fingerprints are computed up front too: the stores are measured, not the
// hashing of requests.
//
// With [Config.Progress] set, a phase (prefill, waiting for compactions,
// measuring) that lasts longer than two seconds prints a line every two
// seconds: what is measured, operations done and their rate so far.
//
// # Sweeps
//
// [RunSweep] opens and prefills each system once, then measures it at each
// concurrency in turn, each step on keys of its own: a step finds the
// records of the steps before it in the store (at most Ops more each),
// which matters little next to a prefill of many records.
//
// # HTTP
//
// [RunHTTP] serves a trivial handler, which reads the request and answers
// 201 with a JSON body of Config.BodySize, twice: bare, and wrapped in the
// idemhttp middleware over idemkv, each by its own net/http server on a
// loopback port. Concurrency clients send POST requests with an
// Idempotency-Key over keep-alive connections, all opened before the
// phase. In the fresh workload every request has a new key; in the replay
// workload every key was sent once before the phase. The report gives the
// latency the middleware adds (its percentiles minus the bare handler's)
// and its throughput divided by the bare handler's. Allocations are those
// of the whole process: client, servers and store.
//
// # Churn
//
// [RunChurn] inserts fresh records of a short TTL (2s by default, with
// generations of a second) into idemkv without pause, while the engine
// drops expired generations by itself, and every second compares the disk
// space in use with the live set: the records not yet expired (read with
// Engine.Scan) and their stored size, value and key. It reports the
// largest ratio after a warm-up of a TTL, a generation and a sweep
// interval, and the last one; the goal is that disk space stays below
// twice the live set however long the run.
//
// # Caveats
//
//   - Raw Pebble's default options differ from the engine's (for example a
//     4 MiB memtable against 64 MiB); that is the point of a naive
//     baseline. Only its informational log messages are dropped.
//   - Bytes written count what reached the files. Records still in the
//     memtable were written once, to the log: in a run shorter than a few
//     memtables, idemkv (64 MiB) flushes little or nothing while Pebble (4
//     MiB) flushes and compacts, which favours idemkv. Long runs, or a
//     prefill, show the steady state. Bytes the filesystem adds (journal,
//     metadata) are not counted.
//   - Disk bytes include the write-ahead log; likewise in the churn mode,
//     where the log and the memtable not yet flushed add up to about two
//     memtables (128 MiB by default) whatever the live set: the ratio
//     means something only for a live set well above that.
//   - The map holds copies of at most about 1 GiB of bodies: when a shard
//     outgrows its share, its copies are replaced by references to the
//     eight shared bodies (equal bytes), so every key stays readable while
//     memory stays bounded, as a bounded cache such as fastcache would be.
//   - Run refuses to report an answer from idemkv (or the middleware)
//     that the workload does not expect (for example Proceed during a
//     replay): it counts answers in [Result.Outcomes] and returns an error
//     matching [ErrUnexpectedOutcome].
package bench
