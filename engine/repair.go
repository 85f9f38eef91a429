package engine

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pebblerecord "github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/idemkv/idemkv/expiry"
	"github.com/idemkv/idemkv/record"
)

// Repair: salvaging a damaged data directory, explicitly.
//
// An engine refuses to open a directory whose acknowledged bytes are
// damaged (ErrCorrupt), and refuses single damaged records as it reads
// them; it never repairs anything by itself, because what repair drops is
// lost for good. Repair is the operator's step after that: it reads the
// damaged directory (which it never changes) and writes every intact,
// unexpired record into a new directory, reporting what it could not
// carry over.
//
// How it reads:
//
//  1. Write-ahead logs: every intact record (a Pebble batch, checked by
//     its chunk checksums) is kept, including those after a damaged
//     stretch; the damaged stretch is reported with its offset and
//     length. The records of a log are written into a fresh log of the
//     same number in a working copy of the directory.
//  2. A damaged MANIFEST is mended: every MANIFEST has a mirror beside it
//     that holds what its fsyncs covered (MIRROR-000123 beside
//     MANIFEST-000123; see package walfs). Each chunk of the current
//     MANIFEST that does not read (Pebble would stop at it and drop the
//     edits after, silently, or not open at all) is taken from the
//     mirror, in the working copy. If both copies are damaged at the same
//     place before the end of what was fsynced, the tables cannot be
//     trusted, and step 4 follows.
//  3. Tables and blob files: Pebble opens the working copy read-only,
//     with the MANIFEST, and replays the rewritten logs, which gives the
//     state the directory held less what the damaged log bytes held.
//     Every key is then read: a record whose value cannot be read or
//     fails its checksum is lost (its key is reported), and a table block
//     that cannot be read is stepped over (from the next table boundary,
//     and backwards from it), reported as a span of unreadable keys.
//  4. If Pebble still cannot open the working copy (a MANIFEST damaged
//     without a usable mirror, as in a directory written before mirrors
//     existed; a table the MANIFEST names missing), the logs alone are
//     applied, in order, to an empty store: what was flushed to tables
//     before is lost, and the report says so.
//
// Every record written to the new directory passed its checksums; expired
// records are left behind (they would never be replayed). The new
// directory keeps the generation width and the incarnation of the old.
//
// Repair builds the new directory inside a working directory beside dst
// (".idemkv-repair-<pid>-…") and renames it to dst only once it is
// complete, so a repair that is interrupted never leaves anything that
// looks repaired; the next Repair beside it removes the working
// directories of processes that are gone.

// RepairReport says what Repair carried over and what it could not.
type RepairReport struct {
	// Completed and Claimed count the records written to the new
	// directory: completed responses, and leases of claims that were
	// interrupted (a retry with the same fingerprint recovers them).
	Completed, Claimed int
	// Expired counts records left behind because they had expired.
	Expired int
	// Lost lists the records whose key could be read but whose record
	// could not (a damaged value or blob); they are not in the new
	// directory, and a retry of one runs its handler again.
	Lost []record.Key
	// LostUnknown counts stored entries lost whose key could not be read
	// either (a damaged key).
	LostUnknown int
	// Damage describes every damaged place found that may have cost
	// records: log stretches whose records could not be read (their keys
	// cannot be known), table blocks stepped over, and the failure to
	// open the tables at all.
	Damage []string
	// Mended describes damage put right without loss: a MANIFEST whose
	// damaged chunks were read from its mirror.
	Mended []string
	// Interrupted lists the keys copied as in-flight leases. If any
	// write-ahead log was damaged, the completion of one of these may
	// have been in the damaged bytes.
	Interrupted []record.Key
	// Verdict is what Open says of the damaged directory (nil if it
	// would open).
	Verdict error

	verdictMended bool // Verdict names a file that Mended put right
}

// Clean reports whether nothing was lost: every stored record was carried
// over, and no damage was found but what Mended lists.
func (r *RepairReport) Clean() bool {
	return len(r.Lost) == 0 && r.LostUnknown == 0 && len(r.Damage) == 0 && (r.Verdict == nil || r.verdictMended)
}

// Repair salvages the data directory dir into the new directory dst (see
// above), which must not exist or be empty, and reports what it carried
// over and what was lost. It never changes dir. It refuses a directory
// that a process has open (ErrLocked); stop the server first. o
// configures the engine that writes dst (nil means the defaults; its
// GenerationWidth is dir's); FS must be the real filesystem.
//
// Once the report is read: keep dir, put dst in its place, start the
// server.
func Repair(dir, dst string, o *Options) (_ *RepairReport, err error) {
	opts, err := o.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("engine: repair %q: %w", dir, err)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("engine: repair %q: %w", dir, err)
		}
	}()
	defer recoverRepair(&err)
	if opts.fs != vfs.Default || opts.ReadOnly {
		return nil, fmt.Errorf("%w: Repair needs a directory on disk (not InMemory) and a writable destination", ErrInvalid)
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %w", ErrNoData, err)
		}
		return nil, err
	}
	if !slices.ContainsFunc(names, func(n os.DirEntry) bool {
		return strings.HasPrefix(n.Name(), "MANIFEST-") || strings.HasSuffix(n.Name(), ".log")
	}) {
		return nil, fmt.Errorf("%w (no MANIFEST and no write-ahead log)", ErrNoData)
	}
	if openHere(dir) || lockedElsewhere(dir) {
		return nil, fmt.Errorf("%w: a process has the directory open; stop it before repairing", ErrLocked)
	}
	if within(dst, dir) || within(dir, dst) {
		return nil, fmt.Errorf("%w: destination %q and the damaged directory must not contain each other (Repair never writes into the damaged directory)", ErrInvalid, dst)
	}
	if ents, err := os.ReadDir(dst); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%w: destination %q is not empty", ErrInvalid, dst)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(dst)), 0o755); err != nil {
		return nil, err
	}
	// The working directory carries the process id, so that one left by
	// a repair that was interrupted (killed, a machine crash) is removed
	// by the next Repair beside it.
	removeStale(filepath.Dir(filepath.Clean(dst)), repairPrefix)
	work, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dst)), fmt.Sprintf("%s%d-", repairPrefix, os.Getpid()))
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	rep := &RepairReport{}
	if err := checkLogs(vfs.Default, dir); err != nil {
		// A log cut short (or damaged at its end) below what was fsynced:
		// the acknowledged records in the missing bytes are lost.
		rep.Verdict = err
		rep.Damage = append(rep.Damage, err.Error())
	} else {
		rep.Verdict = verdict(dir)
	}
	logs, err := copyForRepair(dir, work, rep)
	if err != nil {
		return rep, err
	}
	// A damaged MANIFEST is mended from its mirror (Pebble would stop at
	// the damaged edit, silently, or refuse).
	var db *pebble.DB
	usable, err := mendManifestIn(work, rep)
	switch {
	case err != nil:
		return rep, err
	case usable:
		db, err = pebble.Open(work, repairPebbleOptions(true))
	default:
		err = errors.New("the MANIFEST and its mirror are damaged")
	}
	if err != nil {
		rep.Damage = append(rep.Damage, fmt.Sprintf("the tables could not be opened, so only the write-ahead logs were salvaged and every record flushed to tables before them is lost (%v)", err))
		if db, err = logsOnly(filepath.Join(work, "logs-only"), logs); err != nil {
			return rep, err
		}
	}
	defer db.Close()
	width, inc, err := readMeta(db)
	if err != nil {
		return rep, err
	}
	opts.GenerationWidth = width
	if (expiry.Policy{TTL: opts.TTL, Lease: opts.Lease}).Validate(width) != nil {
		opts.TTL = 8 * width
	}
	// The new directory is built inside the working directory and renamed
	// to dst once complete: a repair that is interrupted leaves no
	// half-written directory that could be taken for a repaired one.
	building := filepath.Join(work, "new")
	legacyUntil, err := carryScopeSecret(dir, building, db, &opts)
	if err != nil {
		return rep, err
	}
	out, err := open(dst, building, opts)
	if err != nil {
		return rep, err
	}
	err = salvage(db, out, opts.Clock.Now(), rep)
	if err == nil {
		err = out.db.Set(metaKey, encodeMeta(width, max(inc, out.incarnation)), pebble.Sync)
	}
	if err == nil {
		err = out.db.Set(scopeMetaKey, encodeScopeMeta(out.scoper.Check(), legacyUntil), pebble.Sync)
	}
	if err = errors.Join(err, out.Close()); err != nil {
		return rep, err
	}
	// An empty dst (checked above) gives way; os.Remove removes nothing else.
	if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		return rep, err
	}
	if err := os.Rename(building, dst); err != nil {
		return rep, err
	}
	return rep, syncDir(filepath.Dir(filepath.Clean(dst)))
}

// syncDir fsyncs directory dir, so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	p, err1 := filepath.Abs(path)
	d, err2 := filepath.Abs(dir)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(d, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// verdict is what a read-only Open says of dir.
func verdict(dir string) error {
	e, err := Open(dir, &Options{ReadOnly: true, Logger: discardLogger})
	if err != nil {
		return err
	}
	return e.Close()
}

// repairPebbleOptions are the options of the Pebble stores Repair reads.
func repairPebbleOptions(readOnly bool) *pebble.Options {
	return &pebble.Options{
		ReadOnly:           readOnly,
		FS:                 vfs.Default,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{l: discardLogger},
		EventListener:      &pebble.EventListener{DataCorruption: func(pebble.DataCorruptionInfo) {}},
	}
}

// copyForRepair copies dir into work for Pebble to open (as a snapshot is
// copied: tables and blob files hard-linked where possible), with every
// write-ahead log rewritten from its intact records (see salvageLog). It
// returns the logs' records in order.
func copyForRepair(dir, work string, rep *RepairReport) ([][]byte, error) {
	// The directory is not in use (Repair checked), so one copy is
	// consistent; its logs are then rewritten in place.
	if _, err := copyStore(dir, work); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type logFile struct {
		num  uint64
		name string
	}
	var logs []logFile
	for _, ent := range ents {
		if num, ok := logNum(ent.Name()); ok && ent.Type().IsRegular() {
			logs = append(logs, logFile{num, ent.Name()})
		}
	}
	slices.SortFunc(logs, func(a, b logFile) int { return cmp.Compare(a.num, b.num) })
	var all [][]byte
	for i, l := range logs {
		b, err := os.ReadFile(filepath.Join(dir, l.name))
		if err != nil {
			return nil, err
		}
		recs, skipped := salvageLog(b, l.num)
		for _, s := range skipped {
			rep.Damage = append(rep.Damage, fmt.Sprintf("write-ahead log %s: %d bytes from offset %d could not be read; the records written there are lost and their keys cannot be known",
				l.name, s[1]-s[0], s[0]))
		}
		// A log that is not the newest was closed, with Pebble's end
		// trailer, before the next began: one that ends without it was
		// cut or damaged at its end (or the process died while switching
		// logs), and what followed is lost. Its torn-looking end is no
		// torn tail.
		if good := goodPrefix(b, l.num); i < len(logs)-1 && !(good >= 11 && isTrailer(b, good-11, l.num)) {
			rep.Damage = append(rep.Damage, fmt.Sprintf("write-ahead log %s ends at offset %d without the end marker written when the next log began: it was cut or damaged there (or the process died while switching logs); the records after that offset are lost and their keys cannot be known",
				l.name, good))
		}
		if err := writeLog(filepath.Join(work, l.name), recs); err != nil {
			return nil, err
		}
		all = append(all, recs...)
	}
	return all, nil
}

// salvageLog returns the intact records of log b (number num) in order,
// and the byte ranges [from, to) of damage between them: stretches whose
// chunks do not parse, followed by an intact record. Whatever follows the
// last intact record (a torn tail, Pebble's end-of-log trailer, the old
// contents of a recycled file) is not damage.
func salvageLog(b []byte, num uint64) (recs [][]byte, skipped [][2]int) {
	var cur []byte
	inRecord := false
	recStart, badFrom := 0, -1
	bad := func(at int) {
		if badFrom < 0 {
			badFrom = at
		}
		inRecord, cur = false, nil
	}
	done := func(rec []byte) {
		recs = append(recs, rec)
		if badFrom >= 0 {
			skipped = append(skipped, [2]int{badFrom, recStart})
			badFrom = -1
		}
	}
	for i := 0; i < len(b); {
		if rest := logBlockSize - i%logBlockSize; rest < 19 && allZero(b[i:min(len(b), i+rest)]) {
			i += rest
			continue
		}
		kind, start, end, ok := chunkAt(b, i, num)
		if !ok {
			if !inRecord && badFrom < 0 && isTrailer(b, i, num) {
				break
			}
			if inRecord {
				bad(recStart)
			} else {
				bad(i)
			}
			i = (i/logBlockSize + 1) * logBlockSize // resynchronise at the next block
			continue
		}
		switch kind {
		case 0, 1: // full, first
			if inRecord {
				bad(recStart)
			}
			recStart = i
			cur = append([]byte(nil), b[start:end]...)
			inRecord = kind == 1
			if kind == 0 {
				done(cur)
			}
		default: // middle, last
			if !inRecord {
				bad(i) // a fragment of a record whose start was lost
				break
			}
			cur = append(cur, b[start:end]...)
			if kind == 3 {
				inRecord = false
				done(cur)
			}
		}
		i = end
	}
	return recs, skipped
}

// writeLog writes recs as a write-ahead log at path.
func writeLog(path string, recs [][]byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := pebblerecord.NewWriter(f)
	for _, r := range recs {
		if _, err := w.WriteRecord(r); err != nil {
			f.Close()
			return err
		}
	}
	return errors.Join(w.Close(), f.Close())
}

// mendManifestIn mends the current MANIFEST of the working copy work from
// its mirror (see walfs, and mendManifest in walcheck.go): every damaged
// chunk that the mirror holds intact is taken from it. It reports what it
// mended in rep, and returns usable=false if the MANIFEST lost bytes that
// were fsynced and that neither copy holds intact: Pebble would read it up
// to there and drop the edits after, silently, so its tables cannot be
// used.
func mendManifestIn(work string, rep *RepairReport) (usable bool, err error) {
	p, err := readManifests(vfs.Default, work)
	if err != nil {
		return false, err
	}
	if p.mb == nil {
		return true, nil // no mirror: Pebble judges the MANIFEST alone
	}
	// An unreadable MANIFEST (b nil) is mended from the mirror if it can be.
	cur, mirror, b, mb := p.name, p.mirror, p.b, p.mb
	mended, from, end := mendManifest(b, mb)
	if end < len(mb) {
		rep.Damage = append(rep.Damage, fmt.Sprintf("%s and its mirror %s are both damaged at offset %d, before the %d bytes that were fsynced: the edits from there are lost", cur, mirror, end, len(mb)))
		return false, nil
	}
	if len(from) == 0 {
		return true, nil
	}
	tmp := filepath.Join(work, cur+".mended")
	if err := os.WriteFile(tmp, mended, 0o644); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, filepath.Join(work, cur)); err != nil {
		return false, err
	}
	rep.Mended = append(rep.Mended, fmt.Sprintf("%s was damaged; %d of its chunks (from offset %d) were read from its mirror %s, which holds what was fsynced", cur, len(from), from[0], mirror))
	if rep.Verdict != nil && strings.Contains(rep.Verdict.Error(), cur) {
		rep.verdictMended = true
	}
	return true, nil
}

// logsOnly applies the log records recs, in order, to a new store in dir.
func logsOnly(dir string, recs [][]byte) (*pebble.DB, error) {
	db, err := pebble.Open(dir, repairPebbleOptions(false))
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		b := db.NewBatch()
		if err := b.SetRepr(append([]byte(nil), r...)); err != nil {
			b.Close()
			continue
		}
		err := db.Apply(b, pebble.NoSync)
		b.Close()
		if err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// carryScopeSecret gives the directory Repair builds in building the scope
// secret of dir (its file, or Options.ScopeSecret), without which none of
// the salvaged records could be found, and returns the end of dir's
// upgrade window: the one dir has, or a new one for a directory of a
// version without keyed digests.
func carryScopeSecret(dir, building string, db *pebble.DB, opts *Options) (time.Time, error) {
	var check []byte
	legacyUntil := opts.Clock.Now().Add(opts.TTL + opts.Lease)
	if v, closer, err := db.Get(scopeMetaKey); err == nil {
		c, until, derr := decodeScopeMeta(v)
		closer.Close()
		if derr == nil {
			check, legacyUntil = c, until
		}
	}
	secret := opts.ScopeSecret
	if secret == nil {
		s, err := readScopeFile(vfs.Default, filepath.Join(dir, ScopeSecretFile))
		if err != nil && check != nil {
			return time.Time{}, fmt.Errorf("%w (give the directory's secret as Options.ScopeSecret)", err)
		}
		secret = s
	}
	switch {
	case secret == nil && check != nil:
		return time.Time{}, damaged("the scope secret file "+ScopeSecretFile+" is missing: without it no salvaged record could be found (restore it, or give the secret as Options.ScopeSecret)", nil)
	case secret == nil:
		return legacyUntil, nil // a directory of a version without keyed digests
	}
	if check != nil {
		if s, err := NewScoper(ScopeKeys{Secret: secret}); err != nil || s.Knows(check) != 0 {
			return time.Time{}, damaged("the scope secret is not the one the directory's records were stored under (give the right one as Options.ScopeSecret)", nil)
		}
	}
	opts.ScopeSecret = nil
	if err := os.MkdirAll(building, 0o755); err != nil {
		return time.Time{}, err
	}
	return legacyUntil, writeScopeFile(vfs.Default, building, filepath.Join(building, ScopeSecretFile), secret)
}

// readMeta reads the directory metadata from db.
func readMeta(db *pebble.DB) (time.Duration, uint64, error) {
	v, closer, err := db.Get(metaKey)
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			return 0, 0, fmt.Errorf("%w: the directory metadata is lost (its generation width cannot be known)", ErrNoData)
		}
		return 0, 0, damaged("the directory metadata cannot be read", err)
	}
	defer closer.Close()
	return decodeMeta(v)
}

// salvage copies every intact, unexpired record of db into out.
func salvage(db *pebble.DB, out *Engine, now time.Time, rep *RepairReport) error {
	lower, upper := expiry.AppendPrefix(nil, 0), []byte{expiry.KeyPrefix + 1}
	// Restart points past a damaged table block: every table's bounds.
	var restarts [][]byte
	if levels, err := db.SSTables(); err == nil {
		for _, level := range levels {
			for _, t := range level {
				restarts = append(restarts, t.Smallest.UserKey, t.Largest.UserKey)
			}
		}
	}
	restarts = append(restarts, upper)
	slices.SortFunc(restarts, bytes.Compare)
	restarts = slices.CompactFunc(restarts, bytes.Equal)

	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return damaged("the tables cannot be read", err)
	}
	defer func() { it.Close() }()
	w := &repairWriter{e: out}
	var last []byte // the last key read
	for valid := it.First(); ; {
		if !valid {
			if it.Error() == nil {
				break
			}
			from, cause := describeKey(last), it.Error()
			// Step over the damage: read backwards from the next restart
			// point, then on from it.
			next := upper
			if i, _ := slices.BinarySearchFunc(restarts, last, bytes.Compare); i < len(restarts) {
				next = restarts[i]
				if last != nil && bytes.Equal(next, last) && i+1 < len(restarts) {
					next = restarts[i+1]
				}
			}
			var back []kv
			for ok := it.SeekLT(next); ok && (last == nil || bytes.Compare(it.Key(), last) > 0); {
				k := slices.Clone(it.Key())
				v, err := valueOf(it)
				if err != nil {
					rep.lose(k)
					if it, err = renew(db, it, lower, upper); err != nil {
						return err
					}
					ok = it.SeekLT(k)
					continue
				}
				back = append(back, kv{k, slices.Clone(v)})
				ok = it.Prev()
			}
			to := describeKey(next)
			if len(back) > 0 {
				to = describeKey(back[len(back)-1].k)
			}
			rep.Damage = append(rep.Damage, fmt.Sprintf("table data between keys %s and %s could not be read: %v", from, to, cause))
			for i := len(back) - 1; i >= 0; i-- {
				if err := w.add(back[i].k, back[i].v, now, rep); err != nil {
					return err
				}
			}
			if bytes.Equal(next, upper) {
				break
			}
			last = next
			valid = it.SeekGE(next)
			continue
		}
		k := it.Key()
		last = append(last[:0], k...)
		v, err := valueOf(it)
		if err != nil {
			// A failed value read leaves the iterator unusable: go on
			// with a new one.
			rep.lose(k)
			if it, err = renew(db, it, lower, upper); err != nil {
				return err
			}
			valid = it.SeekGE(append(slices.Clone(last), 0))
			continue
		}
		if err := w.add(k, v, now, rep); err != nil {
			return err
		}
		valid = it.Next()
	}
	return w.flush()
}

type kv struct{ k, v []byte }

// valueOf reads the value at it's position; Pebble panics on some damage
// (a blob file's damaged footer), which is returned as an error.
func valueOf(it *pebble.Iterator) (v []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = damaged(fmt.Sprintf("value read failed: %v", r), nil)
		}
	}()
	return it.ValueAndErr()
}

// renew closes it and returns a new iterator over [lower, upper).
func renew(db *pebble.DB, it *pebble.Iterator, lower, upper []byte) (*pebble.Iterator, error) {
	func() {
		defer func() { _ = recover() }()
		_ = it.Close()
	}()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, damaged("the tables cannot be read", err)
	}
	return it, nil
}

// lose reports the stored entry under Pebble key k as lost.
func (r *RepairReport) lose(k []byte) {
	if key, ok := decodeStoredKey(k); ok {
		r.Lost = append(r.Lost, key)
		return
	}
	r.LostUnknown++
}

func decodeStoredKey(k []byte) (record.Key, bool) {
	_, ek, ok := expiry.SplitKey(k)
	if !ok {
		return record.Key{}, false
	}
	key, err := record.DecodeKey(ek)
	return key, err == nil
}

// describeKey names Pebble key k for a report.
func describeKey(k []byte) string {
	if k == nil {
		return "(the first)"
	}
	if key, ok := decodeStoredKey(k); ok {
		return key.String()
	}
	return fmt.Sprintf("%q", k)
}

// repairWriter writes salvaged records into an engine's store in batches.
type repairWriter struct {
	e *Engine
	b *pebble.Batch
}

// add checks the stored record v under Pebble key k and writes it if it
// is intact and unexpired.
func (w *repairWriter) add(k, v []byte, now time.Time, rep *RepairReport) error {
	key, ok := decodeStoredKey(k)
	if !ok {
		rep.LostUnknown++
		return nil
	}
	m, err := record.Peek(v)
	if err == nil {
		if m.State == record.Completed {
			_, err = record.Decode(v)
		} else {
			_, err = record.DecodeMeta(v)
		}
	}
	switch {
	case err != nil:
		rep.Lost = append(rep.Lost, key)
		return nil
	case m.Expired(now):
		rep.Expired++
		return nil
	case m.State == record.Completed:
		rep.Completed++
	default:
		rep.Claimed++
		rep.Interrupted = append(rep.Interrupted, key)
	}
	if w.b == nil {
		w.b = w.e.db.NewBatch()
	}
	_ = w.b.Set(k, v, nil)
	if w.b.Len() >= 4<<20 {
		return w.flush()
	}
	return nil
}

func (w *repairWriter) flush() error {
	if w.b == nil {
		return nil
	}
	err := w.b.Commit(pebble.Sync)
	w.b.Close()
	w.b = nil
	if err != nil {
		return storageErr("repair: write", err)
	}
	return nil
}

// discardLogger drops everything: Repair reports what matters.
var discardLogger = slog.New(slog.DiscardHandler)

// recoverRepair turns a panic of Pebble's while it reads damaged data (a
// Fatalf, or an invariant that damaged bytes break) into Repair's error.
func recoverRepair(err *error) {
	r := recover()
	if r == nil {
		return
	}
	if fe, ok := r.(*fatalError); ok {
		*err = fmt.Errorf("%w: %w", ErrStorage, fe)
		return
	}
	*err = damaged(fmt.Sprintf("the store failed while reading damaged data: %v", r), nil)
}
