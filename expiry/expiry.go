package expiry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// Defaults of the TTL policy.
const (
	// DefaultTTL is how long a completed record can be replayed, counted
	// from its completion.
	DefaultTTL = 24 * time.Hour
	// DefaultLease is how long a claim may stay in flight, within one
	// process, before another request may take it over. Claims left by an
	// earlier process are taken over at once, whatever their lease.
	DefaultLease = 5 * time.Minute
	// MinWidth is the narrowest generation.
	MinWidth = time.Second
	// MaxProbes bounds the number of generations a lookup may probe,
	// which bounds TTL/width.
	MaxProbes = 64
)

// DefaultWidth returns the generation width used for a new data directory
// whose TTL is ttl: an eighth of the TTL, rounded down to a whole second
// and at least MinWidth. Narrower generations leave fewer expired records
// on disk (at most W/TTL of the live set) at the cost of more generations
// to consider per lookup, which the engine's in-memory key filters make
// cheap. (Data directories created by earlier builds used a quarter; a data
// directory keeps the width it was created with.)
func DefaultWidth(ttl time.Duration) time.Duration {
	return max(MinWidth, (ttl / 8).Truncate(time.Second))
}

// ErrPolicy is returned for a policy or generation width that cannot work.
var ErrPolicy = errors.New("idemkv/expiry: invalid policy")

// Policy is the time-to-live policy of an engine.
type Policy struct {
	// TTL is how long a completed record is replayed, counted from
	// completion. Zero means DefaultTTL.
	TTL time.Duration
	// Lease is how long a claim may stay in flight within one process
	// before it may be taken over. Zero means DefaultLease.
	Lease time.Duration
}

// WithDefaults returns p with zero fields set to their defaults.
func (p Policy) WithDefaults() Policy {
	if p.TTL == 0 {
		p.TTL = DefaultTTL
	}
	if p.Lease == 0 {
		p.Lease = DefaultLease
	}
	return p
}

// Validate reports whether p can be used with generations of width w.
func (p Policy) Validate(w time.Duration) error {
	switch {
	case p.TTL < time.Second:
		return fmt.Errorf("%w: TTL %v is shorter than a second", ErrPolicy, p.TTL)
	case p.Lease < time.Millisecond:
		return fmt.Errorf("%w: lease %v is shorter than a millisecond", ErrPolicy, p.Lease)
	case w < MinWidth || w%time.Second != 0:
		return fmt.Errorf("%w: generation width %v is not a whole number of seconds", ErrPolicy, w)
	case p.TTL/w+1 > MaxProbes:
		return fmt.Errorf("%w: TTL %v spans %d generations of %v (max %d); use a data directory created with a longer TTL",
			ErrPolicy, p.TTL, p.TTL/w+1, w, MaxProbes)
	}
	return nil
}

// Clock tells the time. Engines take one so that tests can move time.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// FakeClock is a Clock that moves only when told to. It is safe for
// concurrent use; its zero value reads as the zero time.
type FakeClock struct {
	mu sync.Mutex
	t  time.Time // guarded by mu
}

// NewFakeClock returns a FakeClock set to t.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{t: t} }

// Now returns the clock's time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set sets the clock to t.
func (c *FakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Generations maps expiry times to generations of a fixed width.
type Generations struct {
	Width time.Duration
}

// Of returns the generation of a record that expires at t. Times before
// the Unix epoch map to 0 and times beyond the range of a uint32 to its
// maximum.
func (g Generations) Of(t time.Time) uint32 {
	n := t.UnixNano()
	if n <= 0 {
		return 0
	}
	q := n / int64(g.Width)
	if q > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(q)
}

// End returns the time at which generation gen ends: every record in it
// has expired by then.
func (g Generations) End(gen uint32) time.Time {
	return time.Unix(0, 0).Add(time.Duration(gen+1) * g.Width)
}

// Live returns the first and last generation that can hold a record that
// is live at now under a TTL of ttl.
func (g Generations) Live(now time.Time, ttl time.Duration) (first, last uint32) {
	return g.Of(now), g.Of(now.Add(ttl))
}

// Droppable returns the first generation that may still hold a live
// record at now: every generation before it may be dropped.
func (g Generations) Droppable(now time.Time) uint32 {
	return g.Of(now)
}

// The layout of generation-prefixed keys. These constants are part of the
// on-disk format.
const (
	// KeyPrefix is the first byte of every generation-prefixed key.
	KeyPrefix = 'r'
	// PrefixLen is the length of a generation prefix.
	PrefixLen = 5
)

// AppendPrefix appends the key prefix of generation gen to dst.
func AppendPrefix(dst []byte, gen uint32) []byte {
	return binary.BigEndian.AppendUint32(append(dst, KeyPrefix), gen)
}

// AppendKey appends the key of suffix (an encoded record.Key, as bytes or
// a string) in generation gen to dst.
func AppendKey[S ~string | ~[]byte](dst []byte, gen uint32, suffix S) []byte {
	return append(AppendPrefix(dst, gen), suffix...)
}

// SplitKey splits a generation-prefixed key into its generation and
// suffix. ok is false if key is not a generation-prefixed key.
func SplitKey(key []byte) (gen uint32, suffix []byte, ok bool) {
	if len(key) < PrefixLen || key[0] != KeyPrefix {
		return 0, nil, false
	}
	return binary.BigEndian.Uint32(key[1:]), key[PrefixLen:], true
}

// DropRange returns the key range [start, end) that holds generations
// from to to-1. Callers pass the lowest generation that may still hold
// records as from, so that the range is no wider than what it deletes.
func DropRange(from, to uint32) (start, end []byte) {
	return AppendPrefix(nil, from), AppendPrefix(nil, to)
}

// NextBoundary returns where the span of key ends when storage cuts its
// files at generation boundaries: the start of the next generation. Every
// generation below low (already dropped) forms one span ending at low, so
// that a range deletion over dropped generations is never cut into one
// file per generation; a key before the generation keyspace ends at low
// too. It returns nil for a key after the generation keyspace.
func NextBoundary(key []byte, low uint32) []byte {
	switch {
	case len(key) == 0 || key[0] < KeyPrefix:
		return AppendPrefix(nil, low)
	case key[0] > KeyPrefix:
		return nil
	}
	var buf [4]byte
	copy(buf[:], key[1:])
	gen := binary.BigEndian.Uint32(buf[:])
	switch {
	case gen < low:
		return AppendPrefix(nil, low)
	case gen == math.MaxUint32:
		return []byte{KeyPrefix + 1}
	}
	return AppendPrefix(nil, gen+1)
}
