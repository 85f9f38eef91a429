// Package expiry holds idemkv's time-to-live policy, its clock, and the
// key math that makes expiry free on the hot path: time generations.
//
// # Why generations
//
// Pebble, like every LSM tree, makes deletes expensive: a deleted record's
// bytes stay on disk until a compaction rewrites the files that hold it,
// and Pebble has no RocksDB-style compaction filter that could drop
// expired records as it goes (its maintainers declined TTL support:
// cockroachdb/pebble issues #1050 and #1676). Deleting expired records one
// by one writes a tombstone per record and frees space slowly; one
// DeleteRange over a contiguous key range, by contrast, is a single write,
// and Pebble frees every file wholly inside the range with a delete-only
// compaction that rewrites nothing.
//
// So records are stored under a generation prefix: the generation of a
// record is its expiry time divided by the generation width W (a record
// that expires at e lives in generation floor(e/W)). Keys sort by
// generation first, so all the records of a generation are contiguous, and
// once the wall clock has passed the end of generation g every record in it
// has expired: the sweeper drops generations 0..g with one DeleteRange. The
// engine also cuts Pebble's tables at generation boundaries (Pebble's span
// policy), so that dropped generations map to whole files.
//
//	+------+----------------------+---------------------------------+
//	| 'r'  | generation (u32, BE) | encoded key (record.Key.Append) |
//	+------+----------------------+---------------------------------+
//
// These constants are part of the on-disk format. The width is chosen when
// a data directory is created (TTL/8 by default, see [DefaultWidth]) and
// stored in it, because changing it would move every record.
//
// # Lookups
//
// A record that is still live at time now expires in (now, now+TTL], so it
// can only be in generations floor(now/W) .. floor((now+TTL)/W): TTL/W + 1
// generations, nine with the default width. A lookup considers them newest
// first (a record is rewritten into a newer generation when it moves, so
// the newest copy is the current one); the engine keeps an in-memory key
// filter per generation and reads only those that may hold the key.
// [Generations.Live] returns the range.
//
// Records whose generation has not been dropped yet can be expired; every
// read checks the record's own expiry time (lazy expiry), so an expired
// record is never replayed, whether or not the sweeper has run.
//
// # Space overhead
//
// Between the moment a record expires and the drop of its generation, at
// most one generation's worth of expired records stays on disk: the drop
// happens when the generation ends, at most W after its records expired.
// With steady traffic that is at most W/TTL of the live set (12.5 % with
// the default width of TTL/8), plus the sweeper's interval, plus what the LSM
// itself keeps (obsolete versions awaiting compaction).
//
// # Clock changes
//
// Generation numbers come from the wall clock. If it steps back, records
// written "in the future" sit in generations beyond the probe window; the
// engine tracks the newest generation it has seen and probes up to it, so
// they are still found. If it steps forward, records expire early — the
// same as with any wall-clock TTL.
//
// # Crash behaviour
//
// A drop is a single DeleteRange in one Pebble batch: after a crash it has
// either happened entirely or not at all, and the sweeper repeats it after a
// restart. Lazy expiry means correctness never depends on the sweeper: a
// crash can only delay reclaiming space, never resurrect a record.
package expiry
