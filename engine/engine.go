package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/idemkv/idemkv/engine/internal/walfs"
	"github.com/idemkv/idemkv/expiry"
)

// Engine is an embedded, persistent idempotency-key store. It is safe for
// concurrent use by many goroutines. Only one Engine (one process) may have
// a data directory open at a time; Open fails if another holds it.
type Engine struct {
	opts     Options
	dir      string // the directory Pebble has open
	snapshot string // a snapshot directory to remove at Close, or ""
	live     bool   // read-only: another process or engine had the directory open

	registered string // the directory as register recorded it, or ""
	db         *pebble.DB
	fs         *walfs.FS
	gens       expiry.Generations
	ttl        time.Duration
	clock      expiry.Clock
	log        *slog.Logger

	// incarnation numbers the processes that opened this directory; leases
	// record it, so a lease with another incarnation is an orphan of a
	// process that has exited.
	incarnation uint64
	tokens      atomic.Uint64 // fencing tokens of claims

	stripes []stripe
	mask    uint64
	filt    keyFilters

	// syncKick wakes the log syncer (syncLoop) after a commit that did not
	// wait for an fsync, and after every fsync of the log (for its proof);
	// capacity 1, so kicks coalesce.
	syncKick chan struct{}
	mark     syncMark      // written by syncLoop and Close (see walcheck.go)
	unsynced atomic.Bool   // a commit has not been fsynced (set before the kick)
	commits  atomic.Uint64 // commits applied; read by syncLoop for proofs

	// lowGen is the lowest generation that may hold records (everything
	// below has been dropped); maxGen the highest seen. Both are hints
	// kept by the sweeper and by writes.
	lowGen, maxGen atomic.Uint32

	// closeMu is held for reading by every operation that touches db, and
	// for writing by Close, so that Close waits for them to finish.
	closeMu sync.RWMutex
	closed  atomic.Bool
	stop    chan struct{}  // closed by Close to stop background goroutines
	bg      sync.WaitGroup // background goroutines
	once    sync.Once
	cerr    error

	// failure is the engine's sticky ErrFailed error, set once by halt,
	// which then closes failed.
	failure atomic.Pointer[error]
	failed  chan struct{}
	// unwritten holds the encoded keys (without generation) of the
	// batches whose commit failed: Pebble may hold them in its memtable
	// without their log bytes, so a stopped engine, which goes on
	// replaying, never reads them back (see acquireRead).
	unwritten sync.Map

	// bgErrs passes Pebble's background errors (failed flushes and
	// compactions, which Pebble retries) to Open while it waits for
	// pebble.Open; bgLog limits how often they are logged.
	bgErrs chan error
	bgLog  rateLog
	// stalled is set while Pebble takes no writes (its memtables are
	// full, or level 0 has too many tables) and bgFailing while its
	// background work fails (set by a failed flush or compaction, cleared
	// by one that succeeds). Together they mean a write would wait inside
	// Pebble for a flush that may never succeed: commit refuses it (see
	// refuseStalled).
	stalled, bgFailing atomic.Bool

	st stats

	// scoper digests credentials into scopes (see scope.go).
	scoper *Scoper
}

// metaKey holds the data directory's metadata. It sorts before every
// generation-prefixed key.
var metaKey = []byte("\x00idemkv")

// The metadata layout. These constants are part of the on-disk format.
//
//	+-------+---------+-----------------------+----------------------+------------+
//	| magic | version | width (uvarint, secs) | incarnation (uvarint)| crc32c (4) |
//	+-------+---------+-----------------------+----------------------+------------+
const (
	metaMagic   = 0x1E
	metaVersion = 1
)

// Open opens (creating if needed) the data directory dir. A nil o means
// the defaults documented on Options.
func Open(dir string, o *Options) (*Engine, error) {
	opts, err := o.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("engine: open %q: %w", dir, err)
	}
	openDir, snapshot, live, err := openReadOnly(dir, &opts)
	if err != nil {
		return nil, fmt.Errorf("engine: open %q: %w", dir, err)
	}
	// A directory in use is refused before anything reads it: its logs
	// change under the reader, and open's check of them would take a log
	// being written for damage (Pebble's own lock comes too late for it).
	if !opts.ReadOnly && !opts.InMemory {
		if openHere(dir) {
			return nil, fmt.Errorf("engine: open %q: %w: this process has it open already", dir, ErrLocked)
		}
		if pid, held := lockHolder(dir); held {
			who := "another process"
			if pid > 0 {
				who = fmt.Sprintf("process %d", pid)
			}
			return nil, fmt.Errorf("engine: open %q: %w: %s has the directory open (stop it, or read the directory with a read-only open: idemkv stats and inspect do)", dir, ErrLocked, who)
		}
	}
	e, err := open(dir, openDir, opts)
	if err != nil {
		if snapshot != "" {
			os.RemoveAll(snapshot)
		}
		return nil, err
	}
	e.snapshot, e.live = snapshot, live
	if !opts.ReadOnly {
		e.registered = register(dir)
	}
	return e, nil
}

// openReadOnly prepares a read-only Open (see Options.ReadOnly): it checks
// that dir holds idemkv data and takes a snapshot of it, whose directory
// it returns; live reports whether a process had dir open. Pebble touches
// the lock file of a directory it opens even read-only, and its replay of
// a log may not see the tail that a live owner is writing, so a read-only
// Open never opens dir itself. For a writable Open it returns dir.
func openReadOnly(dir string, opts *Options) (openDir, snapshot string, live bool, err error) {
	if !opts.ReadOnly {
		return dir, "", false, nil
	}
	if opts.fs != vfs.Default {
		return "", "", false, fmt.Errorf("%w: ReadOnly needs a directory on disk, not InMemory", ErrInvalid)
	}
	names, err := opts.fs.List(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", "", false, fmt.Errorf("%w: %w", ErrNoData, err)
		}
		return "", "", false, err
	}
	if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "MANIFEST-") }) {
		return "", "", false, fmt.Errorf("%w (no MANIFEST)", ErrNoData)
	}
	live = openHere(dir) || lockedElsewhere(dir)
	snapshot, err = snapshotDir(dir)
	if err != nil {
		return "", "", false, err
	}
	return snapshot, snapshot, live, nil
}

// open opens the store in openDir (dir, or a snapshot of it) and starts
// the engine.
func open(dir, openDir string, opts Options) (*Engine, error) {
	if err := checkLogs(opts.fs, openDir); err != nil {
		return nil, fmt.Errorf("engine: open %q: %w", dir, err)
	}
	if err := checkManifests(opts.fs, openDir); err != nil {
		return nil, fmt.Errorf("engine: open %q: %w", dir, err)
	}
	e := &Engine{
		opts:     opts,
		dir:      openDir,
		ttl:      opts.TTL,
		clock:    opts.Clock,
		log:      opts.Logger,
		fs:       walfs.New(opts.fs),
		stripes:  make([]stripe, opts.Stripes),
		mask:     uint64(opts.Stripes - 1),
		stop:     make(chan struct{}),
		syncKick: make(chan struct{}, 1),
		failed:   make(chan struct{}),
		bgErrs:   make(chan error, 1),
	}
	e.fs.OnSync = e.kickSync
	e.mark = syncMark{fs: opts.fs, path: opts.fs.PathJoin(openDir, syncMarkName)}
	perStripe := 0
	if opts.CacheSize > 0 {
		perStripe = opts.CacheSize / opts.Stripes
	}
	for i := range e.stripes {
		e.stripes[i].init(perStripe)
	}

	po := &pebble.Options{
		ReadOnly:           opts.ReadOnly,
		FS:                 e.fs,
		FormatMajorVersion: pebble.FormatNewest,
		MemTableSize:       opts.MemTableSize,
		Logger:             pebbleLogger{l: opts.Logger, e: e},
		EventListener: &pebble.EventListener{
			// Pebble's default for detected on-disk damage is Fatalf. The
			// engine reports it instead: the read that found it fails
			// with an error matching ErrCorrupt.
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				opts.Logger.Error("idemkv: damaged data file", "info", info.String())
			},
			BackgroundError: e.backgroundError,
			WriteStallBegin: func(pebble.WriteStallBeginInfo) { e.stalled.Store(true) },
			WriteStallEnd:   func() { e.stalled.Store(false) },
			FlushEnd: func(info pebble.FlushInfo) {
				if info.Err == nil {
					e.bgFailing.Store(false)
				}
			},
			CompactionEnd: func(info pebble.CompactionInfo) {
				if info.Err == nil {
					e.bgFailing.Store(false)
				}
			},
		},
	}
	// Bodies under 16 KiB reach Pebble uncompressed (see bodyMethod) and
	// are compressed there with their neighbours: 32 KiB blocks let the
	// compressor find what JSON responses share (field names, enums),
	// which a body compressed alone cannot: about half the disk per
	// record, for some throughput (the compression moves to flushes;
	// bench/README.md, Compression, has the figures).
	//
	// The fastest codec (MinLZ) at every level: Pebble's Balanced profile
	// uses zstd for the bottom levels, where a read from storage then
	// spent a third of its CPU decompressing 32 KiB key blocks. MinLZ
	// answers reads from storage faster for a little more disk (the
	// bodies live in blob files, compressed with MinLZ either way;
	// bench/README.md, Measured changes, has the figures).
	po.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionFastest })
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		po.Levels[i].BlockSize = 32 << 10
	}
	// Cut tables at generation boundaries so that dropping a generation
	// frees whole files without rewriting any.
	po.Experimental.SpanPolicyFunc = func(start []byte) (pebble.SpanPolicy, []byte, error) {
		return pebble.SpanPolicy{}, expiry.NextBoundary(start, e.lowGen.Load()), nil
	}
	// Value separation: records of 256 bytes or more go to blob files,
	// written once at flush; compactions then move keys and references,
	// not response bodies. Records die a generation at a time (range
	// deletions that free whole tables and then whole blob files), so
	// blob files are never rewritten to reclaim garbage.
	po.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		return pebble.ValueSeparationPolicy{
			Enabled:               true,
			MinimumSize:           256,
			MaxBlobReferenceDepth: 10,
			RewriteMinimumAge:     time.Hour,
			TargetGarbageRatio:    1,
		}
	}
	cache := pebble.NewCache(blockCacheSize(opts.BlockCacheSize, po.MemTableSize, po.MemTableStopWritesThreshold))
	defer cache.Unref()
	po.Cache = cache
	if err := e.openStore(po); err != nil {
		return nil, fmt.Errorf("engine: open %q: %w", dir, openErr(err, opts.fs, openDir))
	}
	e.bg.Add(1)
	go e.loadFilters()
	if opts.ReadOnly {
		return e, nil
	}
	e.fs.RemoveOrphanMirrors(openDir)
	sweepEvery := opts.SweepInterval
	if sweepEvery == 0 {
		sweepEvery = min(time.Minute, max(time.Second, e.gens.Width/16))
	}
	e.bg.Add(1)
	go e.every(sweepEvery, "idemkv: sweep failed", false, func() error {
		_, err := e.Sweep(context.Background())
		return err
	})
	e.bg.Add(1)
	go e.syncLoop()
	if opts.fs == vfs.Default {
		if fi, err := os.Stat(openDir); err == nil {
			e.bg.Add(1)
			go e.every(dirCheckInterval, "idemkv: data directory check", true, func() error { return e.checkDir(fi) })
		}
	}
	return e, nil
}

// openStore opens Pebble, loads the directory's metadata and finds its
// generations. On error the store is closed again.
func (e *Engine) openStore(po *pebble.Options) (err error) {
	defer func() {
		if err != nil && e.db != nil {
			_ = e.closeDB()
		}
	}()
	defer e.guard(&err)
	if e.db, err = e.openPebble(po); err != nil {
		return err
	}
	created, err := e.loadMeta()
	if err != nil {
		return err
	}
	if err := e.loadScopes(created); err != nil {
		return err
	}
	if created {
		// The first write-ahead log of a new directory is created before
		// Pebble moves the directory to its newest format, in an older log
		// format that cannot tell a damaged block from a torn tail: a
		// flipped bit there would silently end the replay. Start a new log.
		if err := e.db.Flush(); err != nil {
			return err
		}
	}
	if err := (expiry.Policy{TTL: e.opts.TTL, Lease: e.opts.Lease}).Validate(e.gens.Width); err != nil {
		return err
	}
	if err := e.initGenerations(); err != nil {
		return err
	}
	return e.Err()
}

// dirCheckInterval is how often the engine checks that its data directory
// is still there.
const dirCheckInterval = time.Second

// checkDir stops the engine if its data directory was removed or replaced
// (renamed away, another put in its place) since Open, whose os.Stat of it
// was orig. Pebble keeps writing to the files it has open, which then live
// only as long as the process: nothing written since is where the next
// process will look, so the engine must stop acknowledging.
func (e *Engine) checkDir(orig os.FileInfo) error {
	fi, err := os.Stat(e.dir)
	var what string
	switch {
	case errors.Is(err, os.ErrNotExist):
		what = "removed"
	case err != nil:
		return nil // cannot tell; the next check tries again
	case !os.SameFile(orig, fi):
		what = "replaced by another directory"
	default:
		return nil
	}
	cause := fmt.Errorf("data directory %s was %s while open: what the engine writes from now on is lost when the process exits, and completions acknowledged in the last second may be gone with it; the next process starts from whatever is at that path", e.dir, what)
	return e.halt(cause)
}

// openPebble runs pebble.Open, which can wait for ever: it flushes the
// log it replayed and waits for that flush, which Pebble retries for as
// long as it fails (a full disk), and after a fatal error in Pebble it
// waits for a flush that will never finish. So openPebble returns at once
// after a fatal error, and after a failing flush it waits at most
// Options.OpenFaultWait for the fault to clear. Either way the abandoned
// pebble.Open keeps the directory's lock: after a fatal error until the
// process exits, after a flush failure until it finishes (it then closes
// the store).
func (e *Engine) openPebble(po *pebble.Options) (*pebble.DB, error) {
	type result struct {
		db  *pebble.DB
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() { done <- r }()
		defer e.guard(&r.err)
		r.db, r.err = pebble.Open(e.dir, po)
	}()
	abandon := func() {
		go func() {
			if r := <-done; r.db != nil {
				func() {
					defer func() { _ = recover() }()
					_ = r.db.Close()
				}()
			}
		}()
	}
	var deadline <-chan time.Time
	var lastErr error
	for {
		select {
		case r := <-done:
			return r.db, r.err
		case <-e.failed:
			abandon()
			return nil, fmt.Errorf("%w (the store keeps the directory locked until the process exits: restart it once the fault is fixed)", e.Err())
		case err := <-e.bgErrs:
			lastErr = err
			if deadline == nil {
				e.log.Warn("idemkv: opening waits for the store to flush the write-ahead log it replayed, which fails; it retries until the fault clears",
					"err", err.Error(), "give_up_after", e.opts.OpenFaultWait)
				deadline = time.After(e.opts.OpenFaultWait)
			}
		case <-deadline:
			abandon()
			return nil, fmt.Errorf("%w: could not flush the replayed write-ahead log within %v (free space or fix the disk, then start again): %w",
				ErrStorage, e.opts.OpenFaultWait, lastErr)
		}
	}
}

// backgroundError receives Pebble's background errors: failed flushes and
// compactions, which Pebble retries (after a pause, see package walfs).
func (e *Engine) backgroundError(err error) {
	e.bgFailing.Store(true)
	select {
	case e.bgErrs <- err:
	default:
	}
	if e.failure.Load() == nil {
		e.bgLog.error(e.log, "idemkv: a flush or compaction failed; the store retries it", err)
	}
}

// syncLoop fsyncs the write-ahead log behind the commits that do not wait
// for an fsync (leases, releases, sweeps, and every write in the Relaxed
// mode): each of them kicks it, and it has Pebble sync the log (an empty
// log entry committed with pebble.Sync), so their bytes reach the disk
// within about one fsync of being acknowledged. Kicks that arrive while a
// sync runs are served by the next one.
//
// After every fsync it also writes the fsync's proof (see walcheck.go),
// unless nothing but proofs was committed since the last one, and has it
// synced in turn. A failure stops the engine (see commit); the loop ends
// with Close.
func (e *Engine) syncLoop() {
	defer e.bg.Done()
	var proven walfs.SyncPoint
	var provenCommits uint64
	var buf []byte
	// kickLater kicks the loop again after syncMarkEvery, once however
	// often it is called meanwhile. (A kick after Close is harmless:
	// nobody reads it.)
	var kickPending atomic.Bool
	kickLater := func() {
		if !kickPending.Swap(true) {
			time.AfterFunc(syncMarkEvery, func() {
				kickPending.Store(false)
				e.kickSync()
			})
		}
	}
	for {
		select {
		case <-e.stop:
			return
		case <-e.syncKick:
		}
		if e.refuseStalled() != nil {
			// Pebble takes no writes until a flush succeeds: a log entry
			// would wait inside it (and hold up Close). Try again later.
			kickLater()
			continue
		}
		commits := e.commits.Load() // before the fsync that covers them
		if e.unsynced.Swap(false) {
			if err := e.withStore(func() error { return e.logEntry(nil, pebble.Sync) }); err != nil {
				if !e.closed.Load() && !errors.Is(err, ErrClosed) {
					e.log.Error("idemkv: background fsync of the log failed", "err", err)
				}
				return
			}
		}
		p := e.fs.Synced()
		if e.failure.Load() == nil && !e.opts.ReadOnly {
			wrote, err := e.mark.write(p, false)
			if err != nil {
				e.bgLog.error(e.log, "idemkv: writing the sync mark failed (it only adds protection)", err)
			} else if !wrote {
				// Too soon: catch up once the interval has passed, so that
				// the mark trails the last fsync by at most syncMarkEvery.
				kickLater()
			}
		}
		if commits == provenCommits || (p.Name == proven.Name && p.Size <= proven.Size) {
			continue
		}
		var ok bool
		if buf, ok = appendProof(buf[:0], p); !ok || e.withStore(func() error { return e.logEntry(buf, pebble.NoSync) }) != nil {
			continue // a failure stops the engine; the next fsync retries
		}
		proven, provenCommits = p, commits
		e.unsynced.Store(true)
		e.kickSync()
	}
}

// logEntry commits b as a log entry that replay ignores; an empty one
// with pebble.Sync has Pebble write and fsync everything committed before
// it. The caller holds the store (acquire, or Close's lock).
func (e *Engine) logEntry(b []byte, wo *pebble.WriteOptions) (err error) {
	defer e.guard(&err)
	if err := e.db.LogData(b, wo); err != nil {
		if ferr := e.Err(); ferr != nil {
			return ferr
		}
		return storageErr("write-ahead log", err)
	}
	return e.Err()
}

// syncAndProve fsyncs the log and then writes the proof of that fsync
// (without waiting for the proof's own fsync). The caller holds the store.
func (e *Engine) syncAndProve() error {
	if err := e.logEntry(nil, pebble.Sync); err != nil {
		return err
	}
	if b, ok := appendProof(nil, e.fs.Synced()); ok {
		return e.logEntry(b, pebble.NoSync)
	}
	return nil
}

// withStore runs fn while holding the store (see acquire).
func (e *Engine) withStore(fn func() error) error {
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.release()
	return fn()
}

// Sync returns once everything the engine acknowledged before the call is
// on stable storage — in the Relaxed mode the completions not yet fsynced,
// in either mode the leases of Begin (which never wait for an fsync) — and
// the log proves it (see walcheck.go): damage to any of it is then refused
// at Open, never taken for a torn tail. It shares its fsyncs with any
// commit waiting for one.
func (e *Engine) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := e.refuseStalled(); err != nil {
		return err
	}
	return e.withStore(func() error {
		if err := e.syncAndProve(); err != nil {
			return err
		}
		return e.logEntry(nil, pebble.Sync)
	})
}

// kickSync asks syncLoop for an fsync without waiting for it.
func (e *Engine) kickSync() {
	select {
	case e.syncKick <- struct{}{}:
	default: // a sync is pending already; it will cover this commit
	}
}

// closeDB closes Pebble. After a storage failure, or while it takes no
// writes behind failing flushes, Pebble may be wedged (a
// background goroutine ended by Fatalf, a commit that never finishes), so
// then it waits at most failedCloseWait and leaves the rest to the
// process's exit.
func (e *Engine) closeDB() error {
	if e.stuckCause() == nil {
		err := e.db.Close()
		if ferr := e.fs.Err(); err == nil {
			err = ferr
		}
		return err
	}
	done := make(chan error, 1)
	go func() {
		var err error
		defer func() { done <- err }()
		defer e.guard(&err)
		err = e.db.Close()
		if ferr := e.fs.Err(); err == nil {
			err = ferr
		}
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(failedCloseWait):
		return fmt.Errorf("%w: the store did not close within %v", e.stuckCause(), failedCloseWait)
	}
}

// blockCacheSize returns the size of a Pebble cache that keeps blocks
// bytes for blocks besides Pebble's memtables of memTableSize. Pebble charges
// every memtable it holds to the block cache: the mutable one and those
// waiting to be flushed (stopWrites of them at most, counting the mutable
// one: 2 by default) and one kept for reuse. A cache no larger than that
// holds no block at all: with 64 MiB of each, every read from storage missed
// and decompressed its blocks (cold replays 44-45 k -> 137-138 k ops/s once
// the cache had room). The sum saturates instead of overflowing.
func blockCacheSize(blocks int64, memTableSize uint64, stopWrites int) int64 {
	if stopWrites <= 0 {
		stopWrites = 2 // Pebble's default
	}
	n := uint64(stopWrites + 1)
	if memTableSize > math.MaxInt64/n {
		return math.MaxInt64
	}
	reserve := int64(memTableSize * n)
	if blocks > math.MaxInt64-reserve {
		return math.MaxInt64
	}
	return max(blocks, 0) + reserve
}

// failedCloseWait bounds Close after a storage failure.
const failedCloseWait = 5 * time.Second

// loadMeta reads the directory's metadata (creating it for a new
// directory, then created is true), takes the next incarnation number and
// stores it durably.
func (e *Engine) loadMeta() (created bool, err error) {
	width := e.opts.GenerationWidth
	var inc uint64
	v, closer, err := e.db.Get(metaKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound) && e.opts.ReadOnly:
		return false, fmt.Errorf("%w (a Pebble store without idemkv metadata)", ErrNoData)
	case errors.Is(err, pebble.ErrNotFound):
		if err := (expiry.Policy{TTL: e.opts.TTL, Lease: e.opts.Lease}).Validate(width); err != nil {
			return false, err
		}
		created = true
	case err != nil:
		return false, err
	default:
		w, i, derr := decodeMeta(v)
		closer.Close()
		if derr != nil {
			return false, derr
		}
		width, inc = w, i
	}
	e.gens = expiry.Generations{Width: width}
	if e.opts.ReadOnly {
		e.incarnation = inc // the last process's
		return false, nil
	}
	e.incarnation = inc + 1
	if err := e.db.Set(metaKey, encodeMeta(width, e.incarnation), pebble.Sync); err != nil {
		return false, err
	}
	return created, e.fs.Err()
}

// isMissingOrCut reports whether err, from pebble.Open, says that a table
// or blob file the MANIFEST names is missing or has another size: damage
// (or a MANIFEST whose damaged tail Pebble dropped, so that it names files
// that were deleted since). Pebble gives these no type of their own, so
// its messages are matched; TestCorruptionCampaign catches a change.
func isMissingOrCut(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "object size mismatch") || strings.Contains(msg, "unknown to the objstorage provider")
}

// openErr classifies an error of opening the store in dir: damage that
// Pebble found (naming the damaged log, which Pebble's replay does not)
// matches ErrCorrupt, a held lock ErrLocked, a missing store ErrNoData,
// a failing disk (an errno from the system) ErrStorage.
func openErr(err error, fs vfs.FS, dir string) error {
	const advice = " (keep a copy of the directory; see \"When the engine refuses to open\" in the README)"
	var errno syscall.Errno
	switch {
	case errors.Is(err, ErrCorrupt) || errors.Is(err, ErrStorage) || errors.Is(err, ErrNoData):
		return err
	case isMissingOrCut(err):
		return damaged("a file the MANIFEST names is missing or cut short"+advice, err)
	case pebble.IsCorruptionError(err) && strings.Contains(err.Error(), "replaying WAL"):
		where := whereDamaged(fs, dir)
		if where == "" {
			where = "(the file is not known)"
		}
		return damaged("write-ahead log "+where+advice, err)
	case pebble.IsCorruptionError(err):
		return damaged("store", err)
	case isLockHeld(err):
		return fmt.Errorf("%w: %w", ErrLocked, err)
	case errors.Is(err, pebble.ErrDBDoesNotExist):
		return fmt.Errorf("%w: %w", ErrNoData, err)
	case errors.As(err, &errno) && errno != syscall.EAGAIN && errno != syscall.EACCES:
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return err
}

func encodeMeta(width time.Duration, inc uint64) []byte {
	b := []byte{metaMagic, metaVersion}
	b = binary.AppendUvarint(b, uint64(width/time.Second))
	b = binary.AppendUvarint(b, inc)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeMeta(b []byte) (time.Duration, uint64, error) {
	if len(b) < 2+4 || b[0] != metaMagic {
		return 0, 0, damaged("bad metadata record", nil)
	}
	if b[1] != metaVersion {
		return 0, 0, fmt.Errorf("%w: data directory format version %d (this build reads %d)", ErrVersion, b[1], metaVersion)
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return 0, 0, damaged("metadata checksum mismatch", nil)
	}
	secs, n := binary.Uvarint(body[2:])
	if n <= 0 || secs == 0 || secs > uint64(100*365*24*time.Hour/time.Second) {
		return 0, 0, damaged("bad generation width", nil)
	}
	inc, m := binary.Uvarint(body[2+n:])
	if m <= 0 || 2+n+m != len(body) {
		return 0, 0, damaged("bad metadata record", nil)
	}
	return time.Duration(secs) * time.Second, inc, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// initGenerations finds the lowest and highest generation on disk. In an
// empty store the lowest is the current one: nothing older exists.
func (e *Engine) initGenerations() error {
	e.lowGen.Store(e.gens.Droppable(e.clock.Now()))
	it, err := e.db.NewIter(&pebble.IterOptions{
		LowerBound: expiry.AppendPrefix(nil, 0),
		UpperBound: []byte{expiry.KeyPrefix + 1},
	})
	if err != nil {
		return err
	}
	defer it.Close()
	if it.First() {
		g, _, _ := expiry.SplitKey(it.Key())
		e.lowGen.Store(min(g, e.lowGen.Load()))
	}
	if it.Last() {
		g, _, _ := expiry.SplitKey(it.Key())
		e.maxGen.Store(g)
	}
	return it.Error()
}

// Close stops background work, wakes every waiter with ErrClosed, makes
// every claim still in flight fail with ErrLeaseLost (their leases stay on
// disk and are recovered by the next process), fsyncs and closes the
// store. After a storage failure it returns the engine's ErrFailed error.
// If operations are stuck inside the store (after a failure, or behind
// flushes that keep failing on a full disk) it gives up waiting for them
// after 5 s and returns an error saying so; the store is closed, and the
// directory freed, once they end (or when the process exits). It is
// idempotent: later calls return the first call's result.
func (e *Engine) Close() error {
	e.once.Do(func() {
		e.closed.Store(true)
		close(e.stop)
		ready := make(chan struct{}) // closed once Close holds the store
		go func() {
			e.bg.Wait()
			e.closeCalls()
			e.closeMu.Lock() // the operations in progress have ended
			close(ready)
		}()
		if cause := e.waitUnlessStuck(ready); cause != nil {
			// Operations are stuck inside Pebble. Wake every waiter now,
			// and close the store once they end, if ever (which frees the
			// directory), or leave it to the process's exit.
			e.closeCalls()
			e.cerr = fmt.Errorf("engine: close: %w (operations stuck in the store: it is closed once they end, or when the process exits)", cause)
			go func() {
				<-ready
				defer e.closeMu.Unlock()
				if err := e.closeStore(); err != nil {
					e.log.Error("idemkv: closing the store after the operations stuck in it ended", "err", err.Error())
				}
			}()
			return
		}
		defer e.closeMu.Unlock()
		if err := e.closeStore(); err != nil {
			e.cerr = fmt.Errorf("engine: close: %w", err)
		}
	})
	return e.cerr
}

// closeCalls wakes every waiter with ErrClosed and makes every claim in
// flight fail with ErrLeaseLost.
func (e *Engine) closeCalls() {
	for i := range e.stripes {
		e.stripes[i].closeAll()
	}
}

// closeStore writes the last sync proof, closes Pebble and the sync mark
// and removes the engine's working files. The caller holds closeMu.
func (e *Engine) closeStore() error {
	// The last fsync's proof may not be written yet (syncLoop has
	// stopped): write one; Pebble's Close writes and fsyncs the log.
	// Not while Pebble takes no writes: the entry would wait inside it.
	var err error
	if e.failure.Load() == nil && !e.opts.ReadOnly {
		if err = e.refuseStalled(); err == nil {
			err = e.syncAndProve()
		}
	}
	if e.snapshot != "" {
		defer os.RemoveAll(e.snapshot)
	}
	if e.registered != "" {
		defer unregister(e.registered)
	}
	if cerr := e.closeDB(); err == nil {
		err = cerr
	}
	if err == nil && e.failure.Load() == nil && !e.opts.ReadOnly {
		// Pebble's Close fsynced the log: mark all of it.
		if _, merr := e.mark.write(e.fs.Synced(), true); merr != nil {
			e.log.Error("idemkv: writing the sync mark failed (it only adds protection)", "err", merr.Error())
		}
	}
	e.mark.close()
	if ferr := e.Err(); ferr != nil {
		err = ferr // the failure, rather than what it caused
	}
	return err
}

// waitUnlessStuck waits until done is closed and returns nil. After a
// storage failure an operation can be stuck in Pebble for ever (a write
// stalled behind a flush that Fatalf ended), and so can one that was
// inside Pebble when it stopped taking writes behind failing flushes (see
// refuseStalled): once either holds, it gives up after failedCloseWait
// and returns the cause.
func (e *Engine) waitUnlessStuck(done <-chan struct{}) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var deadline <-chan time.Time
	var cause error
	for {
		select {
		case <-done:
			return nil
		case <-deadline:
			return cause
		case <-tick.C:
			if deadline == nil {
				if cause = e.stuckCause(); cause != nil {
					deadline = time.After(failedCloseWait)
				}
			}
		}
	}
}

// acquire marks the start of an operation that uses the store; release
// must follow. It fails once the engine is closed or has stopped.
func (e *Engine) acquire() error {
	e.closeMu.RLock()
	if e.closed.Load() {
		e.closeMu.RUnlock()
		return ErrClosed
	}
	if e.opts.ReadOnly {
		e.closeMu.RUnlock()
		return ErrReadOnly
	}
	if err := e.Err(); err != nil {
		e.closeMu.RUnlock()
		return err
	}
	return nil
}

// Err returns nil while the engine works, and an error matching ErrFailed
// (and ErrStorage) once it has stopped after a storage failure that cannot
// be undone in place. A health check should report it.
func (e *Engine) Err() error {
	if p := e.failure.Load(); p != nil {
		return *p
	}
	if err := e.fs.Err(); err != nil {
		return e.halt(err)
	}
	return nil
}

// Health implements Store: ErrClosed after Close, else Err, else an
// error matching ErrStorage while the engine refuses writes because
// Pebble takes none behind failing flushes (a full disk; it clears by
// itself once a flush succeeds). Replays are served in every case but
// ErrClosed.
func (e *Engine) Health(ctx context.Context) error {
	if e.closed.Load() {
		return ErrClosed
	}
	if err := e.Err(); err != nil {
		return err
	}
	return e.refuseStalled()
}

// stuckCause returns why an operation may be stuck inside Pebble for
// ever: the engine stopped (Err), or Pebble takes no writes behind
// failing flushes (refuseStalled); nil if neither.
func (e *Engine) stuckCause() error {
	if err := e.Err(); err != nil {
		return err
	}
	return e.refuseStalled()
}

// errStalled is the cause of the writes refused by refuseStalled.
var errStalled = errors.New("the store takes no writes: its memtables are full and writing them to tables fails (is the disk full?); replays are still served, and writes resume once a flush succeeds")

// refuseStalled returns an error matching ErrStorage while Pebble takes no
// writes and its flushes or compactions fail: a write would wait inside
// Pebble until the disk has room, which may be never. A commit refuses
// it instead (so do Health and /healthz), and the caller's request fails
// at once. The writes that were already inside Pebble when it stalled
// wait until a flush succeeds.
func (e *Engine) refuseStalled() error {
	if e.stalled.Load() && e.bgFailing.Load() {
		return storageErr("write", errStalled)
	}
	return nil
}

// halt makes the engine refuse every operation from now on with an
// ErrFailed error caused by cause (the first cause wins), and returns it.
func (e *Engine) halt(cause error) error {
	err := error(&failedError{cause: cause})
	if e.failure.CompareAndSwap(nil, &err) {
		e.fs.Fail(err)
		close(e.failed)
		e.log.Error("idemkv: engine stopped after a storage failure; it answers replays of what it stored and refuses every write; restart the process once the fault is fixed", "err", cause.Error())
		return err
	}
	return *e.failure.Load()
}

// guard, deferred by every function that calls into Pebble, turns a panic
// from Pebble (its Fatalf, or a panic on a wedged store) into the engine's
// ErrFailed error in *err, so that no panic reaches a caller.
func (e *Engine) guard(err *error) {
	if p := recover(); p != nil {
		if up, ok := p.(userPanic); ok {
			panic(up.v) // the caller's own panic is not a storage failure
		}
		cause, ok := p.(error)
		if !ok {
			cause = fmt.Errorf("%v", p)
		}
		*err = e.halt(fmt.Errorf("pebble: %w", cause))
	}
}

func (e *Engine) release() { e.closeMu.RUnlock() }

// acquireRead is acquire for an operation that only reads: it also
// succeeds once the engine has stopped after a storage failure, so that
// what the engine stored goes on being replayed (writes are refused, and
// the directory is frozen, see package walfs). A reader of a stopped engine
// must skip the keys of failed commits (wasUnwritten).
func (e *Engine) acquireRead() error {
	e.closeMu.RLock()
	if e.closed.Load() {
		e.closeMu.RUnlock()
		return ErrClosed
	}
	return nil
}

// writable returns the error that refuses a write: the engine's failure,
// or ErrReadOnly.
func (e *Engine) writable() error {
	if e.opts.ReadOnly {
		return ErrReadOnly
	}
	return e.Err()
}

// markUnwritten records the keys that b, whose commit failed, writes.
func (e *Engine) markUnwritten(b *pebble.Batch) {
	r := b.Reader()
	for {
		_, ukey, _, ok, err := r.Next()
		if !ok || err != nil {
			return
		}
		if _, suffix, ok := expiry.SplitKey(ukey); ok {
			e.unwritten.Store(string(suffix), struct{}{})
		}
	}
}

// forgetClaim is called, under its stripe's lock, as a claim of ek leaves
// memory other than by a successful Complete. On a stopped engine ek is
// then hidden like the key of a failed commit: the claim's lease record
// was written without a sync (see Engine.claim), and the failed log write
// that stopped the engine may have lost it, so what storage shows for ek
// is not what a restart will find. (A held claim's key is hidden by Get
// while the claim is in memory.)
func (e *Engine) forgetClaim(ek string) {
	if e.failure.Load() != nil {
		e.unwritten.Store(ek, struct{}{})
	}
}

// wasUnwritten reports whether a failed commit wrote ek, which a stopped
// engine must then not read back. A working engine has none.
func (e *Engine) wasUnwritten(ek string) bool {
	if e.failure.Load() == nil {
		return false
	}
	_, ok := e.unwritten.Load(ek)
	return ok
}

func (e *Engine) stripeFor(ek string) *stripe {
	return &e.stripes[xxhash.Sum64String(ek)&e.mask]
}

// every runs fn every interval until Close, logging its errors with msg;
// a failed fn ends the loop if stopOnErr.
func (e *Engine) every(interval time.Duration, msg string, stopOnErr bool, fn func() error) {
	defer e.bg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			if err := fn(); err != nil && !e.closed.Load() {
				e.log.Error(msg, "err", err)
				if stopOnErr {
					return
				}
			}
		}
	}
}

// userPanic carries a panic of a caller's callback through guard.
type userPanic struct{ v any }

// callUser calls fn(arg), marking a panic in it as the caller's own.
func callUser[T any](fn func(T) error, arg T) error {
	defer func() {
		if p := recover(); p != nil {
			panic(userPanic{p})
		}
	}()
	return fn(arg)
}

// pebbleLogger passes Pebble's errors to slog and drops its chatter.
type pebbleLogger struct {
	l *slog.Logger
	e *Engine
}

func (pebbleLogger) Infof(string, ...any) {}
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error("pebble: " + fmt.Sprintf(format, args...))
}

// Fatalf is called by Pebble on an error it cannot continue from (a failed
// MANIFEST write, a wedged commit pipeline); Pebble expects it to end the
// process. The engine stops instead, so every caller gets ErrFailed, and
// its filesystem freezes the directory (see package walfs), so that nothing
// Pebble does after the error changes what is on disk. Called on a
// goroutine of the engine (under guard), Fatalf panics and guard turns
// that into the caller's error. On one of Pebble's background goroutines it
// returns: Pebble then takes the operation for failed and retries it, which
// the frozen directory refuses. (Ending that goroutine instead, as earlier
// versions did, left the flush it ran marked as running for ever, and
// pebble.Open or a stalled write waited for it for ever.)
func (p pebbleLogger) Fatalf(format string, args ...any) {
	err := newFatalError(format, args)
	if p.e != nil {
		if p.e.failure.Load() == nil {
			p.l.Error("pebble (fatal): " + err.Error())
		}
		p.e.halt(err)
	} else {
		p.l.Error("pebble (fatal): " + err.Error())
	}
	if underGuard() {
		panic(err)
	}
}

// fatalError is the error of a Fatalf call; it matches the errors among
// the call's arguments (the ENOSPC of a failed MANIFEST write).
type fatalError struct {
	msg    string
	causes []error
}

func newFatalError(format string, args []any) *fatalError {
	e := &fatalError{msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if err, ok := a.(error); ok {
			e.causes = append(e.causes, err)
		}
	}
	return e
}

func (e *fatalError) Error() string   { return e.msg }
func (e *fatalError) Unwrap() []error { return e.causes }

// underGuard reports whether the calling goroutine runs a function of this
// package, and so has a guard deferred on its stack: Pebble's own
// background goroutines never do.
func underGuard() bool {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs)]) // above Fatalf
	for {
		f, more := frames.Next()
		if strings.HasPrefix(f.Function, thisPackage) {
			return true
		}
		if !more {
			return false
		}
	}
}

// thisPackage prefixes the names of this package's functions.
var thisPackage = func() string {
	name := runtime.FuncForPC(reflect.ValueOf(Open).Pointer()).Name()
	return strings.TrimSuffix(name, "Open")
}()

// rateLog logs an error at most once per rateLogEvery, counting the ones
// it leaves out, so that a fault that repeats (a flush retried on a full
// disk) is reported without flooding the log.
type rateLog struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

const rateLogEvery = 10 * time.Second

func (r *rateLog) error(l *slog.Logger, msg string, err error) {
	r.mu.Lock()
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < rateLogEvery {
		r.dropped++
		r.mu.Unlock()
		return
	}
	dropped := r.dropped
	r.last, r.dropped = now, 0
	r.mu.Unlock()
	l.Error(msg, "err", err.Error(), "repeats_not_logged", dropped)
}
