package engine_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idemkv/idemkv/codec"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/expiry"
)

// layout locates the parts of an encoded record: the header from hdr to
// hdrEnd, its checksum after it, and the body frame from frame to the end.
type layout struct{ hdr, hdrEnd, frame int }

func layoutOf(v []byte) layout {
	n, w := binary.Uvarint(v[2:])
	l := layout{hdr: 2 + w, hdrEnd: 2 + w + int(n)}
	l.frame = l.hdrEnd + 4
	return l
}

// A damage changes the stored bytes of a record as a failing disk could.
// Damages to a body payload are not tried on records without a body.
type damage struct {
	name     string
	needBody bool
	fn       func(v []byte, l layout) []byte
}

func flip(i func(v []byte, l layout) int, mask byte) func([]byte, layout) []byte {
	return func(v []byte, l layout) []byte { v[i(v, l)] ^= mask; return v }
}

func cut(n func(v []byte, l layout) int) func([]byte, layout) []byte {
	return func(v []byte, l layout) []byte { return v[:n(v, l)] }
}

var damages = []damage{
	{"magic", false, flip(func([]byte, layout) int { return 0 }, 0xff)},
	{"version", false, flip(func([]byte, layout) int { return 1 }, 0x40)},
	{"header length", false, flip(func([]byte, layout) int { return 2 }, 0x01)},
	{"state", false, flip(func(_ []byte, l layout) int { return l.hdr }, 0x03)},
	{"fingerprint", false, flip(func(_ []byte, l layout) int { return l.hdr + 5 }, 0x01)},
	{"last header byte", false, flip(func(_ []byte, l layout) int { return l.hdrEnd - 1 }, 0x20)},
	{"header checksum", false, flip(func(_ []byte, l layout) int { return l.hdrEnd + 1 }, 0x01)},
	{"frame kind", false, flip(func(_ []byte, l layout) int { return l.frame }, 0x01)},
	{"frame length", false, flip(func(_ []byte, l layout) int { return l.frame + 1 }, 0x01)},
	{"payload start", true, flip(func(_ []byte, l layout) int { return l.frame + 3 }, 0x08)},
	{"payload middle", true, flip(func(v []byte, l layout) int { return (l.frame + len(v)) / 2 }, 0x80)},
	{"frame checksum", false, flip(func(v []byte, _ layout) int { return len(v) - 1 }, 0x80)},
	{"zeroed", false, func(v []byte, _ layout) []byte { clear(v); return v }},
	{"truncated to nothing", false, cut(func([]byte, layout) int { return 0 })},
	{"truncated to 2 bytes", false, cut(func([]byte, layout) int { return 2 })},
	{"truncated in the header", false, cut(func(_ []byte, l layout) int { return (l.hdr + l.hdrEnd) / 2 })},
	{"truncated in the header checksum", false, cut(func(_ []byte, l layout) int { return l.hdrEnd + 2 })},
	{"truncated before the frame", false, cut(func(_ []byte, l layout) int { return l.frame })},
	{"truncated in the frame", false, cut(func(v []byte, l layout) int { return (l.frame + len(v)) / 2 })},
	{"last byte missing", false, cut(func(v []byte, _ layout) int { return len(v) - 1 })},
	{"garbage appended", false, func(v []byte, _ layout) []byte { return append(v, "garbage"...) }},
}

// A corruptCase is a kind of stored record.
type corruptCase struct {
	name        string
	compression codec.Method
	body        []byte // nil: an interrupted claim
}

var corruptCases = []corruptCase{
	{"completed, raw", codec.Auto, []byte(strings.Repeat(`{"a":1}`, 40))},
	{"completed, s2", codec.Auto, largeBody(20 << 10)},
	{"completed, zstd", codec.Zstd, largeBody(2 << 10)},
	{"interrupted claim", codec.Auto, nil},
}

// TestCorruptRecordRegions extends TestCorruptRecordIsReportedNotReplayed
// to every part of a record (header fields, header checksum, body frame,
// frame checksum, truncation at each boundary, trailing garbage), to
// compressed bodies and interrupted claims, and to damage found after a
// restart, whether the damaged bytes are still in the write-ahead log or
// in tables: every one is reported as ErrCorrupt by Begin (whatever the
// fingerprint and wait policy), Get and Scan, and never replayed, taken
// over or run again as new. Undamaged neighbours still replay.
func TestCorruptRecordRegions(t *testing.T) {
	for _, cc := range corruptCases {
		for _, flushed := range []bool{false, true} {
			where := "in the log"
			if flushed {
				where = "in tables"
			}
			t.Run(cc.name+"/"+where, func(t *testing.T) {
				dir := t.TempDir()
				o := &engine.Options{Compression: cc.compression}
				e, err := engine.Open(dir, o)
				if err != nil {
					t.Fatal(err)
				}
				store := func(k string) {
					res := begin(t, e, req(k, "a"))
					mustOutcome(t, res, engine.Proceed)
					if cc.body != nil {
						if err := res.Claim.Complete(ctx, response(string(cc.body))); err != nil {
							t.Fatal(err)
						}
					}
				}
				store("control-before")
				var tried []string
				for _, d := range damages {
					if d.needBody && cc.body == nil {
						continue
					}
					store(d.name)
					err := e.DamageForTest(key(d.name), func(v []byte) []byte { return d.fn(v, layoutOf(v)) })
					if err != nil {
						t.Fatal(err)
					}
					tried = append(tried, d.name)
				}
				store("control-after")
				if flushed {
					if err := e.FlushForTest(); err != nil {
						t.Fatal(err)
					}
				}
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
				if e, err = engine.Open(dir, o); err != nil {
					t.Fatal(err)
				}
				defer e.Close()
				for _, name := range tried {
					t.Run(name, func(t *testing.T) { assertRefused(t, e, req(name, "a"), engine.ErrCorrupt) })
				}
				for _, k := range []string{"control-before", "control-after"} {
					res := begin(t, e, req(k, "a"))
					if cc.body == nil {
						mustOutcome(t, res, engine.Proceed)
						if !res.Recovered {
							t.Fatalf("%s: an undamaged interrupted claim was not recovered", k)
						}
						continue
					}
					assertReplay(t, res, response(string(cc.body)))
				}
				if s := e.Stats(); s.Corrupt == 0 {
					t.Error("Stats.Corrupt = 0 after damaged records were found")
				}
			})
		}
	}
}

// TestCorruptEveryByte damages each byte of a small completed record and
// of an interrupted claim in turn (one key per byte) and checks, after a
// restart, that the engine refuses every one of them.
func TestCorruptEveryByte(t *testing.T) {
	for _, cc := range []corruptCase{corruptCases[0], corruptCases[3]} {
		t.Run(cc.name, func(t *testing.T) {
			dir := t.TempDir()
			e, err := engine.Open(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			var size int
			for i := 0; i == 0 || i < size; i++ {
				k := fmt.Sprint("byte-", i)
				res := begin(t, e, req(k, "a"))
				if cc.body != nil {
					if err := res.Claim.Complete(ctx, response(string(cc.body))); err != nil {
						t.Fatal(err)
					}
				}
				err := e.DamageForTest(key(k), func(v []byte) []byte {
					size = len(v)
					v[i] ^= 0x10
					return v
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			if e, err = engine.Open(dir, nil); err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			for i := range size {
				k := fmt.Sprint("byte-", i)
				res, err := e.Begin(ctx, req(k, "a"))
				if !errors.Is(err, engine.ErrCorrupt) {
					t.Fatalf("byte %d of %d damaged: Begin = %v, %v; want ErrCorrupt", i, size, res.Outcome, err)
				}
				if _, err := e.Get(ctx, key(k)); !errors.Is(err, engine.ErrCorrupt) {
					t.Fatalf("byte %d of %d damaged: Get = %v; want ErrCorrupt", i, size, err)
				}
			}
		})
	}
}

// TestCorruptMetaRefused checks that damaged metadata makes Open fail with
// ErrCorrupt (and not ErrVersion: it is not a newer format).
func TestCorruptMetaRefused(t *testing.T) {
	tests := []struct {
		name    string
		rewrite func([]byte) []byte
	}{
		{"magic", func(b []byte) []byte { b[0] ^= 0xff; return b }},
		{"width", func(b []byte) []byte { b[2] ^= 0x01; return b }},
		{"checksum", func(b []byte) []byte { b[len(b)-1] ^= 0x01; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }},
		{"too short", func(b []byte) []byte { return b[:2] }},
		{"empty", func([]byte) []byte { return nil }},
		{"garbage appended", func(b []byte) []byte { return append(b, 0) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			e, err := engine.Open(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.RewriteMetaForTest(tt.rewrite); err != nil {
				t.Fatal(err)
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			e, err = engine.Open(dir, nil)
			if err == nil {
				e.Close()
				t.Fatal("a directory with damaged metadata was opened")
			}
			if !errors.Is(err, engine.ErrCorrupt) || errors.Is(err, engine.ErrVersion) {
				t.Fatalf("Open: %v; want ErrCorrupt, not ErrVersion", err)
			}
		})
	}
}

// TestTruncatedWALTail damages the newest write-ahead log of a closed data
// directory (cut short, garbage or zeroes appended, a byte flipped), as a
// failing disk could, and reopens it. Every completion in it was
// acknowledged and fsynced, and the log proves it (see walcheck.go), so the
// engine must either replay every one exactly as stored or refuse to open
// with ErrCorrupt naming the log: bytes past the last fsync (garbage or
// zeroes appended) are a torn tail and open silently; a cut or a flipped
// byte before it is damage, whichever block it is in.
//
// A cut is the exception: it removes the log's last proofs with the bytes
// they prove, and is then indistinguishable from a torn tail. The engine
// may open with the completions of the cut part lost, but what survives is
// a prefix of what was written, replayed exactly. (A clean Close leaves
// the records in the log; see the Caveats in the package doc.)
func TestTruncatedWALTail(t *testing.T) {
	const n = 60 // about 100 KiB of log: several of Pebble's 32 KiB blocks
	bodyOf := func(i int) string { return fmt.Sprintf(`{"id":"call_%d","pad":%q}`, i, strings.Repeat("x", i*50)) }
	clock := expiry.NewFakeClock(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	o := &engine.Options{Clock: clock, SweepInterval: 24 * time.Hour}
	// write writes the requests in a data directory and returns the name of
	// its newest log. With reopened, an earlier process opened it first.
	write := func(reopened bool) (dir, newest string) {
		dir = t.TempDir()
		if reopened {
			e, err := engine.Open(dir, o)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
		}
		e, err := engine.Open(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			res := begin(t, e, req(fmt.Sprint("k", i), "a"))
			if err := res.Claim.Complete(ctx, response(bodyOf(i))); err != nil {
				t.Fatal(err)
			}
			clock.Advance(time.Second)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		slices.Sort(logs)
		if len(logs) == 0 {
			t.Fatal("no write-ahead log in the data directory")
		}
		newest = logs[len(logs)-1]
		if fi, err := os.Stat(newest); err != nil || fi.Size() < 64<<10 {
			t.Fatalf("newest log %s: %v; want the records in it", newest, err)
		}
		return dir, filepath.Base(newest)
	}
	sources := []struct {
		name     string
		reopened bool
	}{{"first log of a new directory", false}, {"log of a later process", true}}

	tests := []struct {
		name    string
		fn      func(b []byte) []byte
		corrupt bool // fsynced bytes damaged: Open may refuse
		cut     bool // the log's end cut off: completions may be lost
	}{
		{"cut 1 byte", func(b []byte) []byte { return b[:len(b)-1] }, true, true},
		{"cut 7 bytes", func(b []byte) []byte { return b[:len(b)-7] }, true, true},
		{"cut 100 bytes", func(b []byte) []byte { return b[:len(b)-100] }, true, true},
		{"cut 1000 bytes", func(b []byte) []byte { return b[:len(b)-1000] }, true, true},
		{"cut to half", func(b []byte) []byte { return b[:len(b)/2] }, true, true},
		{"garbage appended", func(b []byte) []byte { return append(b, "\x13\x37 garbage, not a log record"...) }, false, false},
		{"zeroes appended", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }, false, false},
		{"last byte flipped", func(b []byte) []byte { b[len(b)-1] ^= 0x01; return b }, true, false},
		{"byte 20 from the end flipped", func(b []byte) []byte { b[len(b)-20] ^= 0x01; return b }, true, false},
		{"byte in the last block flipped", func(b []byte) []byte { b[len(b)-len(b)%(32<<10)+100] ^= 0x01; return b }, true, false},
		{"byte in the first block flipped", func(b []byte) []byte { b[1000] ^= 0x01; return b }, true, false},
		{"byte in the middle flipped", func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b }, true, false},
	}
	for _, src := range sources {
		srcDir, newest := write(src.reopened)
		for _, tt := range tests {
			t.Run(src.name+"/"+tt.name, func(t *testing.T) {
				dir := damagedCopy(t, srcDir, newest, tt.fn)
				e, err := engine.Open(dir, &engine.Options{Clock: expiry.NewFakeClock(clock.Now()), SweepInterval: 24 * time.Hour})
				if err != nil {
					if !errors.Is(err, engine.ErrCorrupt) || !strings.Contains(err.Error(), newest) {
						t.Fatalf("Open: %v; want ErrCorrupt naming %s", err, newest)
					}
					if !tt.corrupt {
						t.Fatalf("Open refused a log with only a torn tail: %v", err)
					}
					return
				}
				defer e.Close()
				lost := -1
				for i := range n {
					res := begin(t, e, req(fmt.Sprint("k", i), "a"))
					if res.Outcome == engine.Replay {
						assertReplay(t, res, response(bodyOf(i)))
						if lost >= 0 {
							t.Fatalf("k%d replays but k%d, written before it, was lost", i, lost)
						}
						continue
					}
					if !tt.cut {
						t.Fatalf("k%d: outcome %v; want every completion replayed", i, res.Outcome)
					}
					if lost < 0 {
						lost = i
					}
				}
			})
		}
	}
}

// TestCorruptTableFiles flips a byte in one of Pebble's files (the table
// of the metadata, the table of the records, the blob file of their
// bodies) of a closed data directory, as a failing disk could. Pebble's
// block checksums catch it; the engine must then report ErrCorrupt (from
// Open, or from Begin and Get for the records in the damaged block), and
// never replay anything but the stored response.
func TestCorruptTableFiles(t *testing.T) {
	const n = 50
	bodyOf := func(i int) string {
		if i%2 == 0 {
			return fmt.Sprintf(`{"id":"call_%d"}`, i) // in the table
		}
		return fmt.Sprintf(`{"id":"call_%d","pad":%q}`, i, strings.Repeat("x", 300)) // in the blob file
	}
	src := t.TempDir()
	e, err := engine.Open(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		res := begin(t, e, req(fmt.Sprint("k", i), "a"))
		if err := res.Claim.Complete(ctx, response(bodyOf(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.FlushForTest(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// bySize lists the files with extension ext, smallest first.
	bySize := func(ext string) []string {
		files, _ := filepath.Glob(filepath.Join(src, "*."+ext))
		slices.SortFunc(files, func(a, b string) int {
			fa, _ := os.Stat(a)
			fb, _ := os.Stat(b)
			return int(fa.Size() - fb.Size())
		})
		if len(files) == 0 {
			t.Fatalf("no .%s file in the data directory", ext)
		}
		return files
	}
	tables, blobs := bySize("sst"), bySize("blob")
	tests := []struct {
		name string
		file string
	}{
		{"metadata table", tables[0]},
		{"records table", tables[len(tables)-1]},
		{"blob file", blobs[len(blobs)-1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := damagedCopy(t, src, filepath.Base(tt.file), func(b []byte) []byte { b[len(b)/3] ^= 0x01; return b })
			e, err := engine.Open(dir, nil)
			if err != nil {
				if !errors.Is(err, engine.ErrCorrupt) {
					t.Fatalf("Open: %v; want ErrCorrupt", err)
				}
				return
			}
			defer e.Close()
			bad := 0
			for i := range n {
				k := fmt.Sprint("k", i)
				res, err := e.Begin(ctx, req(k, "a"))
				if err != nil {
					if !errors.Is(err, engine.ErrCorrupt) {
						t.Fatalf("%s: Begin: %v; want ErrCorrupt", k, err)
					}
					if _, err := e.Get(ctx, key(k)); !errors.Is(err, engine.ErrCorrupt) {
						t.Fatalf("%s: Get: %v; want ErrCorrupt", k, err)
					}
					bad++
					continue
				}
				assertReplay(t, res, response(bodyOf(i)))
			}
			if bad == 0 {
				t.Fatal("a damaged table went unnoticed")
			}
		})
	}
}

// damagedCopy copies the data directory src to a fresh directory, replaces
// its file name with what damage makes of it, and returns the copy.
func damagedCopy(t *testing.T, src, name string, damage func([]byte) []byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := copyDir(src, dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, damage(b), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
