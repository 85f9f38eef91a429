package expiry_test

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/idemkv/idemkv/expiry"
)

func TestGenerations(t *testing.T) {
	g := expiry.Generations{Width: 6 * time.Hour}
	base := time.Unix(0, 0).Add(1000 * 6 * time.Hour) // the start of generation 1000
	tests := []struct {
		name string
		t    time.Time
		want uint32
	}{
		{"start", base, 1000},
		{"just before the end", base.Add(6*time.Hour - 1), 1000},
		{"end", base.Add(6 * time.Hour), 1001},
		{"before the epoch", time.Unix(-5, 0), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := g.Of(tt.t); got != tt.want {
				t.Errorf("Of(%v) = %d; want %d", tt.t, got, tt.want)
			}
		})
	}
	if got := (expiry.Generations{Width: time.Second}).Of(time.Unix(0, math.MaxInt64)); got != math.MaxUint32 {
		t.Errorf("far future: Of = %d; want MaxUint32", got)
	}
	if got := g.End(1000); !got.Equal(base.Add(6 * time.Hour)) {
		t.Errorf("End(1000) = %v", got)
	}
}

// TestLiveWindowCoversEveryLiveRecord checks the invariant lookups rely
// on: a record live at now is in a generation of the probe window, and
// every generation the sweeper may drop holds only expired records.
func TestLiveWindowCoversEveryLiveRecord(t *testing.T) {
	ttl := 24 * time.Hour
	g := expiry.Generations{Width: expiry.DefaultWidth(ttl)}
	start := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	for completed := start; completed.Before(start.Add(72 * time.Hour)); completed = completed.Add(17 * time.Minute) {
		exp := completed.Add(ttl)
		gen := g.Of(exp)
		for now := completed; now.Before(exp.Add(12 * time.Hour)); now = now.Add(13 * time.Minute) {
			live := now.Before(exp)
			first, last := g.Live(now, ttl)
			if live && (gen < first || gen > last) {
				t.Fatalf("record expiring %v in gen %d is live at %v but outside window [%d,%d]", exp, gen, now, first, last)
			}
			if gen < g.Droppable(now) && live {
				t.Fatalf("gen %d droppable at %v while a record in it expires at %v", gen, now, exp)
			}
		}
	}
	if first, last := g.Live(start, ttl); last-first+1 != 9 {
		t.Errorf("default width probes %d generations; want 9", last-first+1)
	}
}

func TestKeys(t *testing.T) {
	k := expiry.AppendKey(nil, 0x01020304, []byte("suffix"))
	if want := []byte("r\x01\x02\x03\x04suffix"); !bytes.Equal(k, want) {
		t.Fatalf("AppendKey = %q; want %q", k, want)
	}
	gen, suffix, ok := expiry.SplitKey(k)
	if !ok || gen != 0x01020304 || string(suffix) != "suffix" {
		t.Fatalf("SplitKey = %d, %q, %v", gen, suffix, ok)
	}
	if _, _, ok := expiry.SplitKey([]byte("m\x00\x00\x00\x00")); ok {
		t.Error("SplitKey accepted a key of another namespace")
	}
	start, end := expiry.DropRange(3, 7)
	for gen := uint32(0); gen < 10; gen++ {
		key := expiry.AppendKey(nil, gen, []byte("\xff\xff"))
		in := bytes.Compare(key, start) >= 0 && bytes.Compare(key, end) < 0
		if in != (gen >= 3 && gen < 7) {
			t.Errorf("generation %d: in drop range = %v", gen, in)
		}
	}
	tests := []struct {
		key  []byte
		want []byte
	}{
		{nil, expiry.AppendPrefix(nil, 2)},
		{[]byte("meta"), expiry.AppendPrefix(nil, 2)},
		{expiry.AppendKey(nil, 5, []byte("k")), expiry.AppendPrefix(nil, 6)},
		{[]byte("r\x00"), expiry.AppendPrefix(nil, 2)}, // dropped generations are one span
		{expiry.AppendKey(nil, 1, ""), expiry.AppendPrefix(nil, 2)},
		{expiry.AppendKey(nil, 2, ""), expiry.AppendPrefix(nil, 3)},
		{expiry.AppendPrefix(nil, math.MaxUint32), []byte("s")},
		{[]byte("z"), nil},
	}
	for _, tt := range tests {
		if got := expiry.NextBoundary(tt.key, 2); !bytes.Equal(got, tt.want) {
			t.Errorf("NextBoundary(%q) = %q; want %q", tt.key, got, tt.want)
		}
	}
}

func TestPolicy(t *testing.T) {
	p := expiry.Policy{}.WithDefaults()
	if p.TTL != expiry.DefaultTTL || p.Lease != expiry.DefaultLease {
		t.Fatalf("defaults = %+v", p)
	}
	w := expiry.DefaultWidth(p.TTL)
	if w != 3*time.Hour {
		t.Errorf("DefaultWidth(24h) = %v; want 3h", w)
	}
	if err := p.Validate(w); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		p    expiry.Policy
		w    time.Duration
	}{
		{"ttl too short", expiry.Policy{TTL: time.Millisecond, Lease: time.Second}, time.Second},
		{"fractional width", expiry.Policy{TTL: time.Hour, Lease: time.Second}, 1500 * time.Millisecond},
		{"too many probes", expiry.Policy{TTL: 30 * 24 * time.Hour, Lease: time.Second}, time.Hour},
		{"lease too short", expiry.Policy{TTL: time.Hour, Lease: time.Microsecond}, time.Minute},
	}
	for _, tt := range bad {
		if err := tt.p.Validate(tt.w); !errors.Is(err, expiry.ErrPolicy) {
			t.Errorf("%s: Validate = %v; want ErrPolicy", tt.name, err)
		}
	}
	if got := expiry.DefaultWidth(time.Second); got != time.Second {
		t.Errorf("DefaultWidth(1s) = %v; want 1s", got)
	}
}

func TestFakeClock(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := expiry.NewFakeClock(t0)
	c.Advance(time.Hour)
	if got := c.Now(); !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("Now = %v", got)
	}
	c.Set(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Fatalf("Now = %v", got)
	}
}
