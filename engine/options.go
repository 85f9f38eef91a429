package engine

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/idemkv/idemkv/codec"
	"github.com/idemkv/idemkv/expiry"
)

// Durability selects when Complete returns, and so what a crash can lose.
type Durability uint8

const (
	// Synced (the default): Complete returns once the record is fsynced.
	// Nothing acknowledged is lost in a process crash or a machine crash
	// (power loss, kernel panic). Concurrent completions share fsyncs
	// (group commit), so throughput grows with concurrency.
	Synced Durability = iota

	// Relaxed: Complete returns before the record is fsynced; a background
	// fsync, started at once and shared by every write since the last one,
	// follows within about one fsync's time. A crash of the process or of
	// the machine loses at most the completions acknowledged since the
	// last background fsync began (about a millisecond on an SSD; longer
	// while the disk stalls); after it, a retry of such a request runs
	// again. Engine.Sync waits for the fsync.
	Relaxed
)

func (d Durability) String() string {
	switch d {
	case Synced:
		return "synced"
	case Relaxed:
		return "relaxed"
	}
	return fmt.Sprintf("Durability(%d)", uint8(d))
}

// ParseDurability parses "synced" or "relaxed".
func ParseDurability(s string) (Durability, error) {
	switch s {
	case "synced", "sync":
		return Synced, nil
	case "relaxed":
		return Relaxed, nil
	}
	return 0, fmt.Errorf("%w: unknown durability %q (want synced or relaxed)", ErrInvalid, s)
}

// WaitPolicy says what Begin does when another request holds the key's
// claim with the same fingerprint.
type WaitPolicy uint8

const (
	// DefaultWait uses Options.WhenInProgress (in a Request).
	DefaultWait WaitPolicy = iota
	// Wait blocks until the running request completes (then Replay) or
	// releases its claim (then Proceed), bounded by the context.
	Wait
	// NoWait returns InProgress at once.
	NoWait
)

// Options configure an Engine. The zero value, and a nil *Options, give
// the documented defaults.
type Options struct {
	// TTL is how long a completed record is replayed, counted from its
	// completion. Default 24h. A data directory's generation width is fixed
	// when it is created (TTL/8 by default), and TTL may then be at most
	// 63 widths.
	TTL time.Duration

	// Lease is how long a claim may stay in flight within one process
	// before another request may take it over (and the first holder's
	// Complete fails with ErrLeaseLost). Default 5m. Claims left by an
	// earlier process (a crash) are taken over at once.
	Lease time.Duration

	// GenerationWidth is the width of a time generation in a new data
	// directory (see package expiry). It is ignored for an existing one.
	// Default expiry.DefaultWidth(TTL); a whole number of seconds.
	GenerationWidth time.Duration

	// Durability selects what a crash can lose. Default Synced.
	Durability Durability

	// WhenInProgress is what Begin does when a request with the same
	// fingerprint holds the key, unless the Request says otherwise.
	// Default Wait.
	WhenInProgress WaitPolicy

	// Compression selects how bodies are stored. Default codec.Auto,
	// which the engine chooses with its own threshold (not codec's
	// MinCompressSize): bodies under 16 KiB are stored as they are and Pebble compresses
	// them together with their neighbours (zstd or MinLZ over 32 KiB
	// blocks, which finds what JSON responses share), larger ones are
	// compressed alone with s2 first. codec.S2, codec.Zstd and codec.None
	// apply to every body.
	Compression codec.Method

	// MaxBodySize is the largest response body Complete accepts, in
	// bytes. Default 16 MiB; at most codec.MaxLen.
	MaxBodySize int

	// CacheSize is the memory, in bytes, for recently completed records,
	// kept decoded so that a retry is answered without reading storage,
	// decompressing or copying. It is split evenly among the Stripes; a
	// record larger than half a stripe's share (64 KiB with the defaults)
	// is not cached. Default 64 MiB; negative disables the cache.
	CacheSize int

	// Stripes is the number of lock stripes for in-flight claims, a power
	// of two. Default 512.
	Stripes int

	// SweepInterval is how often expired generations are dropped. Default
	// a sixteenth of the generation width, at most a minute.
	SweepInterval time.Duration

	// ReadOnly opens the directory without writing anything to it: not a
	// byte, a file name or a modification time changes. The engine opens
	// a snapshot of it (tables and blob files hard-linked where the
	// filesystem allows, the rest copied, into a temporary directory beside
	// it, or in os.TempDir if that one cannot be written; Close removes
	// it), so it works on the directory of a running server too
	// (Stats.Live says whether one had it open). Begin answers Replay and
	// Conflict and refuses anything that needs a write with ErrReadOnly,
	// as do Complete, Delete, Sweep and Sync. The directory must exist and
	// hold idemkv data (else ErrNoData). Only on the real filesystem.
	ReadOnly bool

	// OpenFaultWait bounds how long Open waits for a storage fault to
	// clear. Opening flushes the write-ahead log it replayed, and Pebble
	// retries a failed flush (a full disk) for as long as it fails: Open
	// returns once it succeeds, or after OpenFaultWait with an error
	// matching ErrStorage and the cause (syscall.ENOSPC for a full disk).
	// The wait starts at the first failure. Default 30s.
	OpenFaultWait time.Duration

	// ScopeSecret keys the digests that the middleware stores credentials
	// as (see Scoper); at least MinScopeSecretLen bytes. Default: the
	// secret in the data directory's ScopeSecretFile, created (32 random
	// bytes, mode 0600) at the first open; with InMemory, a random one.
	// A secret given here is not written to the directory; the file's
	// secret, if any, is then still accepted as a previous one.
	ScopeSecret []byte

	// PreviousScopeSecrets are earlier secrets whose records are still
	// found, for a rotation: keep the old secret here for one TTL and
	// Lease after the new one took over. Open refuses a directory whose
	// records were stored under a secret that is neither ScopeSecret nor
	// one of these (ErrInvalid), or whose secret file is missing or
	// damaged (ErrCorrupt).
	PreviousScopeSecrets [][]byte

	// Clock tells the time. Default the system clock.
	Clock expiry.Clock

	// Logger receives background errors (sweeps, background syncs) and
	// Pebble's own errors. Default slog.Default().
	Logger *slog.Logger

	// InMemory keeps everything in memory: dir names nothing on disk,
	// nothing survives Close, and Durability does not matter. For tests
	// and demos that are not about durability. Not with ReadOnly or
	// Repair.
	InMemory bool

	// MemTableSize is Pebble's memtable size in bytes. Default 64 MiB.
	MemTableSize uint64

	// BlockCacheSize is the memory, in bytes, for Pebble's cache of table
	// and blob blocks (decompressed), which answers reads from storage.
	// Default 64 MiB. Pebble charges its memtables to the same cache, so
	// the engine creates it with room for them too: BlockCacheSize plus
	// three times MemTableSize (the mutable memtable, one being flushed,
	// one kept for reuse). Blocks may use that room while
	// memtables do not, so blocks and memtables together take at most
	// BlockCacheSize + 3 × MemTableSize (256 MiB by default).
	BlockCacheSize int64

	// fs, if set, replaces the filesystem (vfs.Default, or a new
	// in-memory one for InMemory): the engine's own tests inject faults
	// and power losses through it.
	fs vfs.FS
}

// withDefaults returns a copy of o (which may be nil) with defaults filled
// in and validates it.
func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	p := expiry.Policy{TTL: c.TTL, Lease: c.Lease}.WithDefaults()
	c.TTL, c.Lease = p.TTL, p.Lease
	if c.GenerationWidth == 0 {
		c.GenerationWidth = expiry.DefaultWidth(c.TTL)
	}
	if c.WhenInProgress == DefaultWait {
		c.WhenInProgress = Wait
	}
	if c.MaxBodySize == 0 {
		c.MaxBodySize = 16 << 20
	}
	if c.CacheSize == 0 {
		c.CacheSize = 64 << 20
	}
	if c.Stripes == 0 {
		c.Stripes = 512
	}
	if c.Clock == nil {
		c.Clock = expiry.SystemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.fs == nil {
		c.fs = vfs.Default
		if c.InMemory {
			c.fs = vfs.NewMem()
		}
	}
	if c.MemTableSize == 0 {
		c.MemTableSize = 64 << 20
	}
	if c.BlockCacheSize == 0 {
		c.BlockCacheSize = 64 << 20
	}
	if c.OpenFaultWait == 0 {
		c.OpenFaultWait = 30 * time.Second
	}
	switch {
	case c.Durability > Relaxed:
		return c, fmt.Errorf("%w: unknown durability %d", ErrInvalid, c.Durability)
	case c.WhenInProgress > NoWait:
		return c, fmt.Errorf("%w: unknown wait policy %d", ErrInvalid, c.WhenInProgress)
	case c.Compression > codec.Zstd:
		return c, fmt.Errorf("%w: unknown compression %d", ErrInvalid, c.Compression)
	case c.MaxBodySize < 0 || c.MaxBodySize > codec.MaxLen:
		return c, fmt.Errorf("%w: MaxBodySize %d out of range (0 to %d)", ErrInvalid, c.MaxBodySize, codec.MaxLen)
	case c.Stripes < 1 || c.Stripes&(c.Stripes-1) != 0:
		return c, fmt.Errorf("%w: Stripes %d is not a power of two", ErrInvalid, c.Stripes)
	case c.SweepInterval < 0 || c.OpenFaultWait < 0:
		return c, fmt.Errorf("%w: negative interval", ErrInvalid)
	}
	return c, nil
}
