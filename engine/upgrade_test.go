package engine_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/expiry"
	"github.com/idemkv/idemkv/record"
)

// The golden data directory testdata/datadir-v1 was written by the current
// on-disk format: metadata version 1 and records version 1. Every later
// build must open it and answer from it exactly as the build that wrote
// it did; TestUpgradeGoldenDataDir checks that. It is regenerated only on
// purpose, with
//
//	IDEMKV_UPDATE_GOLDEN=1 go test -run TestUpgradeGoldenDataDir ./engine
//
// which is right only when nothing in the format changed (a new format
// version gets a new directory, and the old one stays).
const (
	goldenDir = "testdata/datadir-v1"
	envUpdate = "IDEMKV_UPDATE_GOLDEN"
	goldenTTL = time.Hour
)

// goldenT0 is the fake clock's time when the golden directory's first
// process started; goldenNow when its last one ended, and when the tests
// open it.
var (
	goldenT0  = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	goldenNow = goldenT0.Add(80 * time.Minute)
)

// goldenStep is one request of the processes that wrote the golden
// directory, in order.
type goldenStep struct {
	key     string
	process int           // the process (incarnation) that ran it: 1 or 2
	at      time.Duration // since goldenT0
	resp    *engine.Response
	attempt uint32 // of the claim; a recovered claim has 2
	flush   bool   // flush Pebble's memtable afterwards
}

// An interrupted claim has no response: its process ended while it ran.
var goldenSteps = []goldenStep{
	// Expired at 60m, before the golden directory's "now".
	{key: "expired", process: 1, at: 0, attempt: 1, resp: &engine.Response{
		Status: 200, Header: []record.Header{{Name: "Content-Type", Value: "text/plain"}}, Body: []byte("old body"),
	}},
	// Claimed by process 1, interrupted, recovered and completed by 2.
	{key: "retried", process: 1, at: 65 * time.Minute, attempt: 1},
	{key: "retried", process: 2, at: 70 * time.Minute, attempt: 2, resp: &engine.Response{
		Status: 201, Header: []record.Header{{Name: "Content-Type", Value: "application/json"}},
		Body: []byte(`{"id":"call_retried","attempt":2}`),
	}},
	{key: "small-json", process: 2, at: 71 * time.Minute, attempt: 1, resp: &engine.Response{
		Status: 201,
		Header: []record.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Location", Value: "/v1/calls/call_1"}},
		Body:   []byte(`{"data":{"id":"call_1","object":"call","status":"queued"}}`),
	}},
	{key: "no-body", process: 2, at: 72 * time.Minute, attempt: 1, resp: &engine.Response{Status: 204}},
	// 256 bytes and more are stored in Pebble's blob files.
	{key: "binary", process: 2, at: 73 * time.Minute, attempt: 1, flush: true, resp: &engine.Response{
		Status: 200, Header: []record.Header{{Name: "Content-Type", Value: "application/octet-stream"}},
		Body: allBytes(),
	}},
	// 16 KiB and more are compressed with s2 before Pebble sees them.
	{key: "large", process: 2, at: 74 * time.Minute, attempt: 1, resp: &engine.Response{
		Status: 200, Header: manyHeaders(12), Body: largeBody(40 << 10),
	}},
	{key: "headers", process: 2, at: 75 * time.Minute, attempt: 1, resp: &engine.Response{
		Status: 409,
		Header: []record.Header{
			{Name: "Set-Cookie", Value: "a=1"}, {Name: "Set-Cookie", Value: "b=2"},
			{Name: "X-Empty", Value: ""}, {Name: "X-Unicode", Value: "naïve – ✓"},
		},
		Body:      []byte("conflict\n"),
		RequestID: "handler-id",
	}},
	// Lease until 84m: recovered at 80m because its process is gone.
	{key: "interrupted", process: 2, at: 79 * time.Minute, attempt: 1},
}

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func manyHeaders(n int) []record.Header {
	h := make([]record.Header, n)
	for i := range h {
		h[i] = record.Header{Name: fmt.Sprintf("X-Header-%02d", i), Value: strings.Repeat(string(rune('a'+i)), i+1)}
	}
	return h
}

func largeBody(n int) []byte {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"id":"call_%d","object":"call","status":"queued","seq":%d},`, i, i*7919%1000)
	}
	return []byte(b.String()[:n])
}

func goldenKey(k string) record.Key {
	return record.Key{Scope: "tenant-a", Endpoint: "POST /v1/calls", Key: k}
}

func goldenReq(k string) engine.Request {
	return engine.Request{Key: goldenKey(k), Fingerprint: record.Sum([]byte("body of " + k)), RequestID: "req-" + k}
}

// goldenOptions are the options of the processes that wrote the golden
// directory and of the tests that open it. The sweeper never runs, so the
// expired record stays on disk.
func goldenOptions(clock expiry.Clock) *engine.Options {
	return &engine.Options{Clock: clock, TTL: goldenTTL, SweepInterval: 24 * time.Hour, MemTableSize: 1 << 20, BlockCacheSize: 1 << 20}
}

// writeGoldenDir runs goldenSteps into a new data directory dir.
func writeGoldenDir(t *testing.T, dir string) {
	t.Helper()
	clock := expiry.NewFakeClock(goldenT0)
	var e *engine.Engine
	process := 0
	for _, s := range goldenSteps {
		if s.process != process {
			if e != nil {
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			if e, err = engine.Open(dir, goldenOptions(clock)); err != nil {
				t.Fatal(err)
			}
			process = s.process
		}
		clock.Set(goldenT0.Add(s.at))
		res := begin(t, e, goldenReq(s.key))
		mustOutcome(t, res, engine.Proceed)
		if res.Claim.Attempt() != s.attempt {
			t.Fatalf("%s: attempt %d; want %d", s.key, res.Claim.Attempt(), s.attempt)
		}
		if s.resp != nil {
			if err := res.Claim.Complete(ctx, *s.resp); err != nil {
				t.Fatal(err)
			}
		}
		if s.flush {
			if err := e.FlushForTest(); err != nil {
				t.Fatal(err)
			}
		}
	}
	clock.Set(goldenNow)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// Pebble recreates its lock file; it holds nothing.
	if err := os.Remove(filepath.Join(dir, "LOCK")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// copyGoldenDir copies the golden directory into a new temporary one (the
// golden files are never opened in place) and returns its path.
func copyGoldenDir(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "data")
	if err := copyDir(goldenDir, dst); err != nil {
		t.Fatalf("%v (IDEMKV_UPDATE_GOLDEN=1 go test -run TestUpgradeGoldenDataDir ./engine creates it)", err)
	}
	return dst
}

func copyDir(src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, ent := range ents {
		if !ent.Type().IsRegular() {
			continue
		}
		if err := copyFile(filepath.Join(src, ent.Name()), filepath.Join(dst, ent.Name())); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// goldenFinal returns the last step of each key: what the directory holds.
func goldenFinal() map[string]goldenStep {
	m := map[string]goldenStep{}
	for _, s := range goldenSteps {
		m[s.key] = s
	}
	return m
}

func TestUpgradeGoldenDataDir(t *testing.T) {
	if os.Getenv(envUpdate) != "" {
		if err := os.RemoveAll(goldenDir); err != nil {
			t.Fatal(err)
		}
		writeGoldenDir(t, goldenDir)
	}
	dir := copyGoldenDir(t)
	clock := expiry.NewFakeClock(goldenNow)
	o := goldenOptions(clock)
	o.GenerationWidth = 10 * time.Minute // ignored: the directory's own is kept
	e, err := engine.Open(dir, o)
	if err != nil {
		t.Fatalf("opening the v1 data directory: %v", err)
	}
	defer e.Close()
	if st := e.Stats(); st.Incarnation != 3 || st.GenerationWidth != 7*time.Minute+30*time.Second {
		t.Fatalf("incarnation %d, generation width %v; want 3 (two processes wrote it) and 7m30s (stored)", st.Incarnation, st.GenerationWidth)
	}

	// Everything the processes left is on disk, the expired record too.
	stored := map[string]engine.Entry{}
	err = e.Scan(ctx, engine.ScanOptions{IncludeExpired: true, WithBody: true}, func(en engine.Entry) error {
		if en.Err != nil {
			t.Errorf("stored record %v: %v", en.Key, en.Err)
		}
		stored[en.Key.Key] = en
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	final := goldenFinal()
	if len(stored) != len(final) {
		t.Fatalf("the golden directory holds %d records; want %d", len(stored), len(final))
	}

	for _, s := range final {
		t.Run(s.key, func(t *testing.T) {
			at := goldenT0.Add(s.at)
			expired := s.resp != nil && !goldenNow.Before(at.Add(goldenTTL))
			switch {
			case expired:
				// Never replayed, though the sweeper has not run.
				if _, err := e.Get(ctx, goldenKey(s.key)); !errors.Is(err, engine.ErrNotFound) {
					t.Fatalf("Get of an expired record: %v; want ErrNotFound", err)
				}
				res := begin(t, e, goldenReq(s.key))
				mustOutcome(t, res, engine.Proceed)
				if res.Recovered || res.Claim.Attempt() != 1 {
					t.Fatalf("recovered=%v attempt=%d; want a fresh first claim", res.Recovered, res.Claim.Attempt())
				}
				_ = res.Claim.Release(ctx)

			case s.resp != nil:
				want := *s.resp
				for _, evict := range []bool{false, true} {
					if evict {
						e.EvictCacheForTest()
					}
					res := begin(t, e, goldenReq(s.key))
					assertReplay(t, res, want)
					checkGoldenRecord(t, res.Record, s, at)
				}
				r, err := e.Get(ctx, goldenKey(s.key))
				if err != nil {
					t.Fatal(err)
				}
				checkGoldenRecord(t, r, s, at)
				// The stored fingerprint is still this build's.
				other := goldenReq(s.key)
				other.Fingerprint = record.Sum([]byte("another body"))
				res := begin(t, e, other)
				mustOutcome(t, res, engine.Conflict)
				if wantID := cmp(want.RequestID, "req-"+s.key); res.OriginalRequestID != wantID {
					t.Fatalf("OriginalRequestID = %q; want %q", res.OriginalRequestID, wantID)
				}

			default:
				// Interrupted by the end of process 2: recovered at once,
				// though its lease has not run out.
				res := begin(t, e, goldenReq(s.key))
				mustOutcome(t, res, engine.Proceed)
				prev := res.Record
				if !res.Recovered || res.Claim.Attempt() != 2 || prev == nil {
					t.Fatalf("recovered=%v attempt=%d record=%+v; want a recovered second attempt", res.Recovered, res.Claim.Attempt(), prev)
				}
				if prev.State != record.Claimed || prev.RequestID != "req-"+s.key || prev.Attempt != 1 ||
					prev.Fingerprint != goldenReq(s.key).Fingerprint || !prev.CreatedAt.Equal(at) ||
					prev.Lease.Owner != 2 || !prev.Lease.ExpiresAt.Equal(at.Add(5*time.Minute)) {
					t.Fatalf("interrupted claim %+v", prev)
				}
				if err := res.Claim.Complete(ctx, response("after upgrade")); err != nil {
					t.Fatal(err)
				}
				e.EvictCacheForTest()
				assertReplay(t, begin(t, e, goldenReq(s.key)), response("after upgrade"))
			}
		})
	}
}

// TestUpgradeGoldenDataDirIsV1 reads the golden directory's stored bytes
// with Pebble alone and checks that they are of version 1: metadata,
// record headers and body frames. A build that writes a newer version
// must not regenerate this directory; it keeps it and adds its own.
func TestUpgradeGoldenDataDirIsV1(t *testing.T) {
	db, err := pebble.Open(copyGoldenDir(t), &pebble.Options{ReadOnly: true, Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	records := 0
	for it.First(); it.Valid(); it.Next() {
		v := it.Value()
		if bytes.Equal(it.Key(), engine.MetaKeyForTest()) {
			if len(v) < 2 || v[0] != 0x1E || v[1] != 1 {
				t.Errorf("metadata %x; want magic 0x1e, version 1", v)
			}
			continue
		}
		records++
		if len(v) < 2 || v[0] != 0x1D || v[1] != 1 {
			t.Errorf("record %q: %x...; want magic 0x1d, version 1", it.Key(), v[:min(len(v), 8)])
			continue
		}
		n, w := binary.Uvarint(v[2:])
		if frame := v[2+w+int(n)+4:]; frame[0]>>4 != 1 {
			t.Errorf("record %q: body frame version %d; want 1", it.Key(), frame[0]>>4)
		}
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	if records != len(goldenFinal()) {
		t.Errorf("%d records; want %d", records, len(goldenFinal()))
	}
}

// quietPebble drops Pebble's chatter.
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)           {}
func (quietPebble) Errorf(string, ...any)          {}
func (quietPebble) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }

// checkGoldenRecord checks the metadata of a replayed golden record.
func checkGoldenRecord(t *testing.T, r *record.Record, s goldenStep, at time.Time) {
	t.Helper()
	if r.State != record.Completed || r.Attempt != s.attempt || r.RequestID != cmp(s.resp.RequestID, "req-"+s.key) ||
		r.Fingerprint != goldenReq(s.key).Fingerprint || !r.CompletedAt.Equal(at) || !r.ExpiresAt.Equal(at.Add(goldenTTL)) ||
		r.Checkpoint != nil {
		t.Fatalf("record %+v", r.WithoutBody())
	}
	// A recovered claim keeps the time of the first one.
	var created time.Time
	for _, f := range goldenSteps {
		if f.key == s.key {
			created = goldenT0.Add(f.at)
			break
		}
	}
	if !r.CreatedAt.Equal(created) {
		t.Fatalf("created at %v; want %v", r.CreatedAt, created)
	}
}

func cmp(s, dflt string) string {
	if s != "" {
		return s
	}
	return dflt
}

// TestUpgradeNewerMetaVersionRefused checks that a data directory written
// by a newer, unknown format is refused with ErrVersion, whatever its
// metadata looks like after the version, and is not changed by trying.
func TestUpgradeNewerMetaVersionRefused(t *testing.T) {
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	seal := func(b []byte) []byte { return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)) }
	tests := []struct {
		name    string
		rewrite func(b []byte) []byte
		version int
	}{
		{"next version, same layout", func(b []byte) []byte {
			b = b[:len(b)-4]
			b[1]++
			return seal(b)
		}, engine.MetaVersionForTest + 1},
		{"next version, longer layout", func(b []byte) []byte {
			b = append(b[:len(b)-4], "new fields"...)
			b[1]++
			return seal(b)
		}, engine.MetaVersionForTest + 1},
		{"next version, no checksum", func(b []byte) []byte {
			b[1]++
			return append(b, 0xff, 0xff)
		}, engine.MetaVersionForTest + 1},
		{"version 255", func(b []byte) []byte { return seal([]byte{b[0], 255}) }, 255},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyGoldenDir(t)
			clock := expiry.NewFakeClock(goldenNow)
			e, err := engine.Open(dir, goldenOptions(clock))
			if err != nil {
				t.Fatal(err)
			}
			if err := e.RewriteMetaForTest(tt.rewrite); err != nil {
				t.Fatal(err)
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			for range 2 { // the refused Open leaves the directory as it was
				e, err := engine.Open(dir, goldenOptions(clock))
				if err == nil {
					e.Close()
					t.Fatal("a data directory of a newer format was opened")
				}
				if !errors.Is(err, engine.ErrVersion) || !errors.Is(err, engine.ErrCorrupt) {
					t.Fatalf("Open: %v; want an error matching ErrVersion (and ErrCorrupt)", err)
				}
				if want := fmt.Sprintf("version %d", tt.version); !strings.Contains(err.Error(), want) {
					t.Fatalf("Open: %v; want it to name %q", err, want)
				}
			}
		})
	}
}

// setRecordVersion rewrites the format version of an encoded record and
// reseals its header checksum, as a newer build would have written it.
func setRecordVersion(v []byte, version byte) []byte {
	v[1] = version
	n, w := binary.Uvarint(v[2:])
	end := 2 + w + int(n)
	binary.LittleEndian.PutUint32(v[end:], crc32.Checksum(v[:end], crc32.MakeTable(crc32.Castagnoli)))
	return v
}

// setFrameVersion rewrites the version of an encoded record's body frame
// and reseals the frame's checksum.
func setFrameVersion(v []byte, version byte) []byte {
	n, w := binary.Uvarint(v[2:])
	frame := v[2+w+int(n)+4:]
	frame[0] = version<<4 | frame[0]&0x0f
	binary.LittleEndian.PutUint32(frame[len(frame)-4:], crc32.Checksum(frame[:len(frame)-4], crc32.MakeTable(crc32.Castagnoli)))
	return v
}

// TestUpgradeNewerRecordVersionRefused checks that a stored record of a
// newer, unknown format (its header's or its body frame's version) is
// reported as an error matching ErrVersion and ErrCorrupt, and never
// replayed, taken over or run again as new.
func TestUpgradeNewerRecordVersionRefused(t *testing.T) {
	dir := copyGoldenDir(t)
	e, err := engine.Open(dir, goldenOptions(expiry.NewFakeClock(goldenNow)))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	tests := []struct {
		key    string
		damage func([]byte) []byte
	}{
		{"small-json", func(v []byte) []byte { return setRecordVersion(v, 2) }},
		{"large", func(v []byte) []byte { return setRecordVersion(v, 2) }},
		{"interrupted", func(v []byte) []byte { return setRecordVersion(v, 255) }},
		{"binary", func(v []byte) []byte { return setFrameVersion(v, 2) }},
		{"retried", func(v []byte) []byte { return setFrameVersion(v, 15) }},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if err := e.DamageForTest(goldenKey(tt.key), tt.damage); err != nil {
				t.Fatal(err)
			}
			e.EvictCacheForTest()
			assertRefused(t, e, goldenReq(tt.key), engine.ErrVersion)
		})
	}
}

// assertRefused checks that every way of asking for r's key fails with an
// error matching want and ErrCorrupt: Begin (with r's fingerprint, another
// one, and without waiting), Get and Scan.
func assertRefused(t *testing.T, e *engine.Engine, r engine.Request, want error) {
	t.Helper()
	other := r
	other.Fingerprint = record.Sum([]byte("another body"))
	noWait := r
	noWait.WhenInProgress = engine.NoWait
	for _, q := range []engine.Request{r, other, noWait} {
		res, err := e.Begin(ctx, q)
		if !errors.Is(err, want) || !errors.Is(err, engine.ErrCorrupt) {
			t.Fatalf("Begin: outcome %v, error %v; want an error matching %v", res.Outcome, err, want)
		}
		if res.Outcome != 0 || res.Claim != nil || res.Record != nil {
			t.Fatalf("Begin answered %+v with its error", res)
		}
	}
	if rec, err := e.Get(ctx, r.Key); !errors.Is(err, want) || rec != nil {
		t.Fatalf("Get: %v, %v; want an error matching %v", rec, err, want)
	}
	seen := 0
	err := e.Scan(ctx, engine.ScanOptions{WithBody: true, IncludeExpired: true, Prefix: record.EndpointPrefix(r.Key.Scope, r.Key.Endpoint)}, func(en engine.Entry) error {
		if en.Key == r.Key {
			seen++
			if !errors.Is(en.Err, want) || en.Record != nil {
				t.Errorf("Scan entry: record %v, error %v; want an error matching %v", en.Record, en.Err, want)
			}
		}
		return nil
	})
	if err != nil || seen != 1 {
		t.Fatalf("Scan: %v, visited the key %d times; want once", err, seen)
	}
}
