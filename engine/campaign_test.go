package engine_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// TestCorruptionCampaign damages a data directory the way disks and
// operators do, after it was written under concurrent load and killed with
// SIGKILL: for every file of the directory (write-ahead logs, tables, blob
// files, MANIFESTs and their mirrors, OPTIONS, the scope secret, the sync
// mark), one byte flipped at many offsets (the start, the middle, the
// tail), and the file cut short. For each case the directory must either refuse to open
// with an error matching ErrCorrupt or ErrStorage that names the kind of
// file, or open and answer every acknowledged completion with its exact
// response or with an error — never Proceed, which would run a handler a
// second time for a response the client already has (a silent loss).
//
// The directory comes from TestCrashChild: two kill -9 cycles, so that the
// first cycle's records are in tables and blob files (flushed when the
// second process opened the directory) and the second's in the log.
// IDEMKV_CORRUPTION_OFFSETS sets the flips per file (default 8, 3 under
// the race detector; the README quotes a long run). Cuts of the newest log
// past its sync mark cannot be told from a torn tail; they are counted,
// not checked (with 4,000 completions per cycle there are none).
func TestCorruptionCampaign(t *testing.T) {
	flips, acksPerCycle := 8, 4000
	if raceEnabled { // the race detector makes each case ~10x slower
		flips, acksPerCycle = 3, 1500
	}
	if s := os.Getenv("IDEMKV_CORRUPTION_OFFSETS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		flips = n
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	killed := t.TempDir()
	var acks []string
	for cycle := range 2 {
		a, _, _ := runChild(t, exe, killed, engine.Synced, cycle+100, acksPerCycle)
		acks = append(acks, a...)
		if cycle == 0 {
			verifyAfterCrash(t, killed, acks, nil) // opens: flushes the log into tables
		}
	}
	slices.Sort(acks)
	acks = slices.Compact(acks)

	ents, err := os.ReadDir(killed)
	if err != nil {
		t.Fatal(err)
	}
	c := campaignCounts{secret: scopeSecretOf(t, killed)}
	t.Run("cases", func(t *testing.T) { // its cases run in parallel: it returns when all have
		for _, ent := range ents {
			name := ent.Name()
			kind := fileKind(name)
			if kind == "" {
				continue
			}
			fi, err := ent.Info()
			if err != nil {
				t.Fatal(err)
			}
			size := fi.Size()
			if size == 0 {
				continue
			}
			var offsets []int64
			for i := range flips {
				offsets = append(offsets, size*int64(i)/int64(flips))
			}
			offsets = append(offsets, size-1, max(0, size-40))
			if raceEnabled && smallFile(kind) {
				// The short mode (CI, under the race detector) damages the
				// small files of the directory once, in the middle; the
				// long mode and TestManifestDamageIsNeverTakenForATornTail
				// cover them byte by byte.
				offsets = []int64{size / 2}
			}
			slices.Sort(offsets)
			// Damage to bytes past the last proof of their fsync (the last
			// fsync before the kill, whose proof was not yet written) cannot
			// be told from a torn tail: see "The sync mark" in the package
			// doc. Such cases are counted, not checked.
			beyondMark := func(at int64, what string) bool {
				if kind != "write-ahead log" || markCovers(t, killed, name, at) {
					return false
				}
				c.cases++
				c.beyondMark++
				t.Logf("%s %s: past the sync mark, not checked", name, what)
				return true
			}
			for _, off := range slices.Compact(offsets) {
				what := fmt.Sprintf("flip at %d of %d", off, size)
				if beyondMark(off, what) {
					continue
				}
				c.run(t, killed, name, kind, what, acks, func(b []byte) []byte { b[off] ^= 0x10; return b })
			}
			cuts := []int64{size / 2, size - 1}
			if raceEnabled && smallFile(kind) {
				cuts = cuts[1:]
			}
			for _, keep := range cuts {
				what := fmt.Sprintf("cut to %d of %d", keep, size)
				if beyondMark(keep, what) {
					continue
				}
				c.run(t, killed, name, kind, what, acks, func(b []byte) []byte { return b[:keep] })
			}
		}
	})
	t.Logf("%d cases over %d files (%d acknowledged completions each): %d refused at Open, %d opened with every completion replayed, %d opened with some completions refused (%d refusals), 0 silent losses; %d cuts and flips of the newest log past its sync mark not checked",
		c.cases, c.files, len(acks), c.refusedOpen, c.clean, c.partial, c.refusedKeys, c.beyondMark)
	t.Logf("repair of those %d directories: %d completions replayed, %d lost and named in the report, %d lost inside damage the report describes, 0 unreported, 0 wrong",
		c.repaired, c.repairReplayed, c.repairLostNamed, c.repairLostUnnamed)
	if !t.Failed() && c.refusedOpen+c.clean+c.partial+c.beyondMark != c.cases {
		t.Fatal("cases miscounted")
	}
}

type campaignCounts struct {
	mu sync.Mutex // the parallel cases add their counts under it (add)

	cases, files, refusedOpen, clean, partial, refusedKeys, beyondMark int
	// Repairs of the directories refused at Open or in part.
	repaired, repairReplayed, repairLostNamed, repairLostUnnamed int
	seen                                                         map[string]bool
	// secret is the directory's scope secret, which the repair of a
	// directory whose secret file is damaged is given.
	secret []byte
}

// scopeSecretOf reads the scope secret file of dir.
func scopeSecretOf(t *testing.T, dir string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, engine.ScopeSecretFile))
	if err != nil {
		t.Fatal(err)
	}
	_, line, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	secret, err := hex.DecodeString(line)
	if err != nil || len(secret) != 32 {
		t.Fatalf("scope secret file %q: %v", b, err)
	}
	return secret
}

// fileKind names the kind of a data file the campaign damages, or "".
func fileKind(name string) string {
	switch {
	case strings.HasSuffix(name, ".log"):
		return "write-ahead log"
	case strings.HasSuffix(name, ".sst"):
		return "table"
	case strings.HasSuffix(name, ".blob"):
		return "blob file"
	case strings.HasPrefix(name, "MANIFEST-"):
		return "MANIFEST"
	case strings.HasPrefix(name, "MIRROR-"):
		return "MANIFEST mirror"
	case strings.HasPrefix(name, "OPTIONS-"):
		return "OPTIONS"
	case name == engine.ScopeSecretFile:
		return "scope secret"
	case name == "IDEMKV-SYNCED":
		return "sync mark"
	}
	return ""
}

// smallFile reports whether files of kind are the directory's small ones
// (metadata beside the data).
func smallFile(kind string) bool {
	switch kind {
	case "MANIFEST mirror", "OPTIONS", "scope secret", "sync mark":
		return true
	}
	return false
}

func (c *campaignCounts) run(t *testing.T, killed, name, kind, what string, acks []string, damage func([]byte) []byte) {
	t.Helper()
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	if !c.seen[name] {
		c.seen[name] = true
		c.files++
	}
	c.cases++
	t.Run(name+" "+what, func(t *testing.T) {
		t.Parallel()
		r := campaignCounts{secret: c.secret} // this case's, added to c at its end
		defer c.add(&r)
		dir := damagedCopy(t, killed, name, damage)
		e, err := engine.Open(dir, &engine.Options{Logger: quietLogger()})
		if err != nil {
			if !errors.Is(err, engine.ErrCorrupt) && !errors.Is(err, engine.ErrStorage) {
				t.Fatalf("%s %s: Open: %v; want an error matching ErrCorrupt or ErrStorage", kind, what, err)
			}
			r.refusedOpen++
			r.checkRepair(t, dir, kind, what, acks)
			return
		}
		defer e.Close()
		refused := 0
		for _, k := range acks {
			body := bodyFor(k)
			res, err := e.Begin(context.Background(), engine.Request{Key: crashKey(k), Fingerprint: record.Sum(body)})
			switch {
			case err != nil:
				if !errors.Is(err, engine.ErrCorrupt) && !errors.Is(err, engine.ErrStorage) {
					t.Fatalf("%s %s: Begin(%s): %v; want ErrCorrupt or ErrStorage", kind, what, k, err)
				}
				refused++
			case res.Outcome == engine.Replay && bytes.Equal(res.Record.Body, body) && res.Record.Status == 201:
			default:
				t.Fatalf("%s %s: acknowledged %s answered %v (silent loss)", kind, what, k, res.Outcome)
			}
		}
		if refused == 0 {
			r.clean++
		} else {
			r.partial++
			r.refusedKeys += refused
			e.Close()
			r.checkRepair(t, dir, kind, what, acks)
		}
	})
}

// add adds the counts of one case to c.
func (c *campaignCounts) add(r *campaignCounts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refusedOpen += r.refusedOpen
	c.clean += r.clean
	c.partial += r.partial
	c.refusedKeys += r.refusedKeys
	c.repaired += r.repaired
	c.repairReplayed += r.repairReplayed
	c.repairLostNamed += r.repairLostNamed
	c.repairLostUnnamed += r.repairLostUnnamed
}

// checkRepair repairs the damaged directory dir and checks the result:
// the original is unchanged; in the new directory every acknowledged
// completion replays its exact response, or is accounted for by the
// report (named among the lost records, or inside a damaged stretch
// whose keys cannot be read); nothing replays a wrong response.
func (c *campaignCounts) checkRepair(t *testing.T, dir, kind, what string, acks []string) {
	t.Helper()
	before := dirDigest(t, dir)
	dst := filepath.Join(t.TempDir(), "repaired")
	opts := &engine.Options{Logger: quietLogger()}
	if kind == "scope secret" {
		// Without its secret no record can be found: Repair refuses too,
		// until the operator gives it.
		if _, err := engine.Repair(dir, dst, opts); !errors.Is(err, engine.ErrCorrupt) || !strings.Contains(err.Error(), engine.ScopeSecretFile) {
			t.Fatalf("%s %s: Repair without the secret: %v; want ErrCorrupt naming %s", kind, what, err, engine.ScopeSecretFile)
		}
		opts.ScopeSecret = c.secret
	}
	rep, err := engine.Repair(dir, dst, opts)
	if err != nil {
		t.Fatalf("%s %s: Repair: %v", kind, what, err)
	}
	if after := dirDigest(t, dir); after != before {
		t.Fatalf("%s %s: Repair changed the damaged directory", kind, what)
	}
	lost := map[string]bool{}
	for _, k := range rep.Lost {
		lost[k.Key] = true
	}
	e, err := engine.Open(dst, &engine.Options{Logger: quietLogger(), ScopeSecret: opts.ScopeSecret})
	if err != nil {
		t.Fatalf("%s %s: Open of the repaired directory: %v (report %+v)", kind, what, err, rep)
	}
	defer e.Close()
	replayed, unnamed := 0, 0
	for _, k := range acks {
		body := bodyFor(k)
		res, err := e.Begin(context.Background(), engine.Request{Key: crashKey(k), Fingerprint: record.Sum(body), WhenInProgress: engine.NoWait})
		switch {
		case err != nil:
			t.Fatalf("%s %s: repaired directory: Begin(%s): %v", kind, what, k, err)
		case res.Outcome == engine.Replay:
			if !bytes.Equal(res.Record.Body, body) || res.Record.Status != 201 {
				t.Fatalf("%s %s: repaired directory replays a wrong response for %s", kind, what, k)
			}
			replayed++
			continue
		case res.Outcome == engine.Proceed:
			res.Claim.Release(context.Background())
		}
		switch {
		case lost[crashKey(k).Key]:
		case len(rep.Damage) > 0:
			unnamed++
		default:
			t.Fatalf("%s %s: repaired directory lost %s (%v) and the report does not say so: %+v", kind, what, k, res.Outcome, rep)
		}
	}
	c.repaired++
	c.repairReplayed += replayed
	c.repairLostNamed += len(acks) - replayed - unnamed
	c.repairLostUnnamed += unnamed
}

// dirDigest hashes the names and contents of the files in dir.
func dirDigest(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join(dir, ent.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s %d\n", ent.Name(), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// markCovers reports whether the sync mark of dir proves bytes of the log
// name beyond keep (so that cutting it to keep must be refused). A log
// older than the mark's was fsynced whole before the next one began.
func markCovers(t *testing.T, dir, name string, keep int64) bool {
	t.Helper()
	num, size, ok := engine.SyncMarkForTest(dir)
	if !ok {
		return false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(name, ".log"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n < num || (n == num && keep < size)
}
