// Package engine is idemkv's embedded idempotency-key store: a crash-safe
// claim / complete / replay engine on Pebble.
//
// For every request that carries an idempotency key, a server asks
// [Engine.Begin] one question — has (scope, endpoint, key) been seen? —
// and gets one of four answers:
//
//   - [Proceed]: first time. The caller holds a [Claim], runs its handler,
//     then calls [Claim.Complete] with the response, or [Claim.Release]
//     (nothing stored, a retry runs again).
//   - [Replay]: a completed record with the same fingerprint exists; the
//     stored response is returned byte for byte.
//   - [Conflict]: the key is taken by a request with a different
//     fingerprint; the original request id is returned.
//   - [InProgress]: a request with the same fingerprint is running and the
//     caller chose not to wait. With the [Wait] policy (the default
//     Options.WhenInProgress), Begin waits for it instead, bounded by its
//     context, and answers Replay (or Proceed if the running request
//     released its claim).
//
// # The life of a key
//
// A key is in one of five states. The table lists every event that moves
// it, what the engine writes for it, and what callers see; claim.go holds
// the code, from Begin to Complete or Release, in this order.
//
//	state       event                      next        written          callers see
//	absent      Begin                      claimed     lease            Proceed
//	claimed     Begin, same fingerprint    claimed     -                wait (Wait), or InProgress (NoWait)
//	claimed     Begin, other fingerprint   claimed     -                Conflict naming the holder
//	claimed     Checkpoint                 claimed     lease + point    - (fsynced before it returns)
//	claimed     Complete                   completing  record           - (the key stays locked)
//	completing  the record is durable      completed   -                waiters: Replay
//	claimed     Release                    absent      lease deleted    one waiter: Proceed
//	claimed     crash, or lease runs out   orphaned    -                -
//	orphaned    Begin, same fingerprint    claimed     lease, attempt+1 Proceed, Recovered, last point
//	orphaned    Begin, other fingerprint   orphaned    -                Conflict naming the holder
//	completed   Begin, same fingerprint    completed   -                Replay
//	completed   Begin, other fingerprint   completed   -                Conflict naming the original
//	completed   TTL passes                 absent      - (sweep later)  Proceed on the next Begin
//	any         Delete                     absent      deletion         ErrInProgress instead while
//	                                                                    claimed within its lease
//
// "Durable" is the Durability mode's promise: after the fsync in Synced,
// at once in Relaxed. A lease is written without waiting for an fsync (a
// crash that loses it loses nothing acknowledged: the key is absent again).
// Complete of a claim whose lease was taken over fails with ErrLeaseLost
// and stores nothing. Who sees what: only this process sees claimed keys
// in memory; a later process sees a lease on disk as orphaned, because
// every Open has a new incarnation number.
//
// # Guarantees
//
//   - A handler never runs twice for one key while a claim or a completed,
//     unexpired record exists: not under concurrency (claims are held in
//     striped in-memory locks and every waiter parks on the running call),
//     and not across a crash (claims are persisted as leases before Begin
//     returns Proceed).
//   - A claim interrupted by a crash is recovered by the next request with
//     the same key and fingerprint: it gets Proceed with Result.Recovered
//     and the interrupted claim's record (attempt number, last checkpoint),
//     so the application can reconcile. Every process that opens a data
//     directory has a new incarnation number, so a lease left by an earlier
//     process is known to be orphaned and is recovered at once. Within one
//     process a lease only expires if its holder neither completes nor
//     releases it within Options.Lease.
//   - What Complete acknowledged is replayed after a crash, as described
//     for each [Durability]: in the default Synced mode a record is fsynced
//     before Complete returns, and the key stays locked until then, because
//     Pebble makes a write visible before its fsync finishes; no one can be
//     answered from a record that a crash could still lose.
//   - An expired record is never replayed, whether or not the sweeper has
//     dropped it yet (see package expiry).
//   - Damaged stored bytes are detected by checksums and reported as errors
//     matching [ErrCorrupt]; they are never replayed.
//   - Keys of different scopes and endpoints never collide (see package
//     record).
//
// # Recovery points
//
// A handler in several steps records, after each, a recovery point on its
// claim (Claim.Checkpoint): the step's name and what later steps need to
// know about it. After a crash, the claim that recovers the key carries
// the last point (Claim.LastCheckpoint), so the handler resumes instead of
// running its finished steps again.
//
// # Durability modes
//
// Every write is committed to Pebble's write-ahead log, and Pebble fsyncs
// that log itself: a commit that waits for an fsync shares it with every
// commit waiting at the same time (group commit in Pebble's log writer).
// The modes differ in which writes wait:
//
//	mode     Complete returns after        process or machine crash
//	Synced   the fsync (shared by many)    loses no completion
//	Relaxed  the commit; an fsync follows  loses at most the completions of
//	         at once in the background     the last background fsync
//
// Leases (Begin's Proceed), releases and sweeps never wait for an fsync in
// either mode: each kicks the background fsync, so it is on disk within
// about one fsync of the call. A crash inside that window loses the lease;
// a retry then proceeds without the Recovered flag (nothing acknowledged
// is lost: a lease acknowledges nothing). Engine.Sync waits for
// everything acknowledged before it.
//
// Why Pebble keeps the fsync: each log chunk records how far the log was
// fsynced when the chunk was written, and that is true only if every sync
// Pebble sees is a real one. Pebble's own use of it is not enough (in
// v2.1.7 the offset leaves out whole blocks), so the engine proves every
// fsync in the log itself and checks the logs at Open (see Caveats).
// TestPowerLoss checks the modes against a simulated power loss,
// TestCrashKill9 against kill -9, TestDamagedLogNeverLosesAcknowledged
// against damaged logs.
//
// # The hot path
//
//   - Key filters: each time generation keeps an in-memory Bloom filter of
//     the keys written to it, so the first request of a key claims without
//     reading storage, and a retry reads one generation. They are rebuilt
//     by a background scan after Open (Stats.KeyFiltersReady).
//   - Recently completed records are cached decoded and shared: a retry
//     answered from the cache costs no decoding, copying or allocation,
//     and Result.Record is therefore read-only.
//   - Storage: response bodies go to Pebble blob files written once at
//     flush (value separation), so compactions move keys, not bodies;
//     bodies under 16 KiB are compressed by Pebble together with their
//     neighbours in 32 KiB blocks, larger ones alone with s2 (see
//     Options.Compression).
//
// # Caveats
//
//   - Damaged logs. Before Pebble replays the write-ahead logs, Open checks
//     them against the sync proofs the engine writes after every fsync, and
//     against the sync mark it keeps beside them (see walcheck.go): damage
//     to bytes a proof covers fails Open with ErrCorrupt naming the log and
//     the offset, never a silent open with a completion missing. Two cases
//     cannot be told from a torn tail: the bytes of the last fsync before a
//     crash while their proof is not yet written (about one more fsync;
//     Engine.Sync waits for it), and a cut of the newest log within the
//     last 100 ms of writes before a crash.
//   - A damaged MANIFEST. Pebble reads its MANIFEST up to the first
//     unreadable edit and takes the rest for a torn tail, which would drop
//     the tables of later flushes silently. Every MANIFEST has a mirror
//     (MIRROR-<n>, see package walfs) holding what its fsyncs covered;
//     Open fails with ErrCorrupt naming a MANIFEST with a chunk that does
//     not read within what the mirror holds (checkManifests), and Repair
//     takes each damaged chunk from the mirror. A MANIFEST written before
//     mirrors existed, or whose mirror failed, is not checked.
//   - Storage failures. Every error caused by the disk matches ErrStorage
//     and nothing is acknowledged that was not written. Failed table
//     writes (a flush out of space) and failed reads are retried by Pebble
//     and heal without a restart. A failed write or fsync of the log, a
//     failed write of a blob file or of Pebble's MANIFEST (a fatal error in
//     Pebble) cannot be undone in place: the engine stops taking writes
//     (ErrFailed; Engine.Err reports it), freezes the directory as it was,
//     and goes on replaying what it stored. Restart once the disk is fixed;
//     the restart recovers everything acknowledged. Open never waits for
//     ever on a full disk (Options.OpenFaultWait). When flushes keep
//     failing until Pebble's memtables are full, Pebble takes no writes;
//     the engine then refuses every new write at once with ErrStorage (and
//     Health reports it) instead of letting it wait inside Pebble, until a
//     flush succeeds. The writes that were already inside Pebble at that
//     moment wait until the disk has room; Close waits for them at most
//     5 s, returns an error, and closes the store once they end.
//   - A data directory removed or replaced while open stops the engine
//     within a second (ErrFailed saying so).
//   - Tools: Options.ReadOnly opens a snapshot and writes nothing, so it
//     works beside a running server. Repair salvages a damaged directory
//     into a new one, explicitly (the engine never repairs by itself).
//   - A data directory's generation width is fixed when it is created; the
//     TTL may later change within 63 widths (see Options.TTL).
//   - One writable engine at a time: Pebble locks the directory
//     (ErrLocked).
package engine
