package engine

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Scopes. A request's scope (its tenant) is derived from a credential
// (an Authorization value, a session cookie) that must not be stored, nor
// be recoverable from what is stored: the scope is a keyed digest,
//
//	HMAC-SHA256(secret, "idemkv scope v2\x00" + credential)
//
// under a secret of the deployment. Without the secret, a digest read
// from a data directory (or from Redis) cannot be tested against guessed
// credentials, and the same credential has unrelated digests in two
// deployments.
//
// The embedded engine keeps its secret in the file ScopeSecretFile of the
// data directory (mode 0600), created at the first open, unless
// Options.ScopeSecret gives one. A check value of the secret is stored
// with the data, so that a directory opened with another secret (a
// missing or damaged file, a wrong configuration) is refused instead of
// silently running every stored key again.
//
// Versions before keyed digests stored SHA-256("idemkv scope v1\x00" +
// credential) (version 1). A data directory written by one is upgraded at
// its first open: for one TTL and lease after it (the upgrade window,
// kept in the data), a request that would run as new first looks for a
// record under its version-1 digest (see Scoper.Earlier).

// ScopeSecretFile names the file of a data directory that holds its scope
// secret. It must be backed up with the directory: without it, no stored
// record can be found (and Open refuses the directory).
const ScopeSecretFile = "SCOPE-SECRET"

// MinScopeSecretLen is the shortest scope secret accepted, in bytes. The
// engine generates 32 random bytes.
const MinScopeSecretLen = 16

const scopeDomain = "idemkv scope v2\x00"

// ScopeKeys configure a Scoper.
type ScopeKeys struct {
	// Secret keys the digests of new records; at least
	// MinScopeSecretLen bytes.
	Secret []byte
	// Previous are earlier secrets whose records are still found: during
	// a rotation, keep the old secret here for one TTL (and lease) after
	// the new one took over.
	Previous [][]byte
	// LegacyUntil is the end of the upgrade window: until then, records
	// stored under version-1 (unkeyed) digests are found too. Zero for
	// none.
	LegacyUntil time.Time
	// Now tells the time (for LegacyUntil). Default time.Now.
	Now func() time.Time
}

// A Scoper turns credentials into scopes, keyed digests under the
// deployment's secret (see ScopeSecretFile). It is safe for concurrent use.
type Scoper struct {
	keys        [][]byte // keys[0] is the current secret
	pools       []sync.Pool
	legacyUntil time.Time
	now         func() time.Time
}

// NewScoper returns a Scoper for k. It returns an error matching
// ErrInvalid for a secret shorter than MinScopeSecretLen.
func NewScoper(k ScopeKeys) (*Scoper, error) {
	s := &Scoper{legacyUntil: k.LegacyUntil, now: k.Now}
	if s.now == nil {
		s.now = time.Now
	}
	for i, key := range append([][]byte{k.Secret}, k.Previous...) {
		if len(key) < MinScopeSecretLen {
			what := "the scope secret"
			if i > 0 {
				what = "a previous scope secret"
			}
			return nil, fmt.Errorf("%w: %s has %d bytes; it needs at least %d", ErrInvalid, what, len(key), MinScopeSecretLen)
		}
		s.keys = append(s.keys, bytes.Clone(key))
	}
	s.pools = make([]sync.Pool, len(s.keys))
	for i := range s.pools {
		key := s.keys[i]
		s.pools[i].New = func() any { return hmac.New(sha256.New, key) }
	}
	return s, nil
}

// Scope returns the scope of credential: its keyed digest, 32 bytes of
// binary, under the current secret; "" for an empty credential.
func (s *Scoper) Scope(credential string) string {
	if credential == "" {
		return ""
	}
	return s.digest(0, credential)
}

func (s *Scoper) digest(i int, credential string) string {
	h := s.pools[i].Get().(hash.Hash)
	h.Reset()
	io.WriteString(h, scopeDomain)
	io.WriteString(h, credential)
	var sum [sha256.Size]byte
	d := string(h.Sum(sum[:0]))
	s.pools[i].Put(h)
	return d
}

// Earlier appends to dst the scopes that records of credential may have
// been stored under before: its digests under the previous secrets and,
// during the upgrade window, its version-1 digests (of credential, and of
// asSent if that differs: the spelling the request used, which versions
// before credential normalisation digested as it came). Nothing for an
// empty credential. A request that would run as new looks for a record
// under each (one read of the store each); with no previous secrets and
// the window closed, there is none.
func (s *Scoper) Earlier(dst []string, credential, asSent string) []string {
	if credential == "" {
		return dst
	}
	for i := 1; i < len(s.keys); i++ {
		dst = append(dst, s.digest(i, credential))
	}
	if s.Upgrading() {
		dst = append(dst, LegacyScope(credential))
		if asSent != credential && asSent != "" {
			dst = append(dst, LegacyScope(asSent))
		}
	}
	return dst
}

// Upgrading reports whether the upgrade window is open: whether records
// stored under version-1 digests may still be live.
func (s *Scoper) Upgrading() bool {
	return !s.legacyUntil.IsZero() && s.now().Before(s.legacyUntil)
}

// LegacyUntil is the end of the upgrade window (zero if there is none).
func (s *Scoper) LegacyUntil() time.Time { return s.legacyUntil }

// Check returns the check value of the current secret: 8 bytes that tell
// whether two Scopers share a secret without revealing it. Stores keep it
// with their data to refuse another secret.
func (s *Scoper) Check() []byte { return scopeCheck(s.keys[0]) }

// Knows reports which secret check is the check value of: 0 for the
// current one, i for Previous[i-1], -1 for none.
func (s *Scoper) Knows(check []byte) int {
	for i, k := range s.keys {
		if hmac.Equal(scopeCheck(k), check) {
			return i
		}
	}
	return -1
}

func scopeCheck(secret []byte) []byte {
	h := hmac.New(sha256.New, secret)
	io.WriteString(h, "idemkv scope check")
	return h.Sum(nil)[:8]
}

// LegacyScope is the version-1 (unkeyed) scope of credential, which
// versions before keyed digests stored: SHA-256("idemkv scope v1\x00" +
// credential); "" for an empty credential.
func LegacyScope(credential string) string {
	if credential == "" {
		return ""
	}
	h := sha256.New()
	io.WriteString(h, "idemkv scope v1\x00")
	io.WriteString(h, credential)
	return string(h.Sum(nil))
}

// NewScopeSecret returns a new random secret of 32 bytes.
func NewScopeSecret() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
}

// The scope secret file, text:
//
//	idemkv scope secret v1\n
//	<the secret, 64 lower-case hex digits>\n
const scopeFileHeader = "idemkv scope secret v1\n"

func encodeScopeFile(secret []byte) []byte {
	return []byte(scopeFileHeader + hex.EncodeToString(secret) + "\n")
}

// parseScopeFile reads a scope secret file; an error matches ErrCorrupt.
func parseScopeFile(b []byte) ([]byte, error) {
	rest, ok := bytes.CutPrefix(b, []byte(scopeFileHeader))
	if !ok {
		return nil, damaged("the scope secret file "+ScopeSecretFile+" does not start with its header", nil)
	}
	line, ok := bytes.CutSuffix(rest, []byte("\n"))
	if !ok || len(line) != 64 {
		return nil, damaged("the scope secret file "+ScopeSecretFile+" does not hold one 64-digit secret", nil)
	}
	secret := make([]byte, 32)
	if _, err := hex.Decode(secret, line); err != nil || !bytes.Equal(bytes.ToLower(line), line) {
		return nil, damaged("the scope secret file "+ScopeSecretFile+" holds a secret that is not lower-case hex", nil)
	}
	return secret, nil
}

// scopeMetaKey holds the directory's scope metadata (after metaKey,
// before every generation-prefixed key). Its layout, part of the on-disk
// format:
//
//	+-------+---------+-----------+----------------------------------+------------+
//	| magic | version | check (8) | legacy until (uvarint, unix secs)| crc32c (4) |
//	+-------+---------+-----------+----------------------------------+------------+
//
// check is the Scoper.Check of the current secret; legacy until is the
// end of the upgrade window, 0 for none.
var scopeMetaKey = []byte("\x00idemkv-scope")

const (
	scopeMetaMagic   = 0x5C
	scopeMetaVersion = 1
)

func encodeScopeMeta(check []byte, legacyUntil time.Time) []byte {
	b := append([]byte{scopeMetaMagic, scopeMetaVersion}, check...)
	var secs uint64
	if !legacyUntil.IsZero() {
		secs = uint64(legacyUntil.Unix())
	}
	b = binary.AppendUvarint(b, secs)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeScopeMeta(b []byte) (check []byte, legacyUntil time.Time, err error) {
	if len(b) < 2+8+1+4 || b[0] != scopeMetaMagic {
		return nil, time.Time{}, damaged("bad scope metadata record", nil)
	}
	if b[1] != scopeMetaVersion {
		return nil, time.Time{}, fmt.Errorf("%w: scope metadata version %d (this build reads %d)", ErrVersion, b[1], scopeMetaVersion)
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, time.Time{}, damaged("scope metadata checksum mismatch", nil)
	}
	secs, n := binary.Uvarint(body[10:])
	if n <= 0 || 10+n != len(body) || secs > 1<<40 || n != len(binary.AppendUvarint(nil, secs)) {
		return nil, time.Time{}, damaged("bad scope metadata record", nil)
	}
	if secs != 0 {
		legacyUntil = time.Unix(int64(secs), 0)
	}
	return bytes.Clone(body[2:10]), legacyUntil, nil
}

// loadScopes sets up the engine's Scoper: from Options.ScopeSecret, or the
// directory's secret file (written now for a new directory, or one that
// an earlier version wrote: an upgrade), checked against the check value
// stored with the data. created says whether Open created the directory.
func (e *Engine) loadScopes(created bool) error {
	now := e.clock.Now()
	var check []byte
	var legacyUntil time.Time
	v, closer, err := e.db.Get(scopeMetaKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return err
	default:
		check, legacyUntil, err = decodeScopeMeta(v)
		closer.Close()
		if err != nil {
			return err
		}
	}
	path := e.opts.fs.PathJoin(e.dir, ScopeSecretFile)
	var fileSecret []byte
	if !e.opts.InMemory {
		if fileSecret, err = readScopeFile(e.opts.fs, path); err != nil {
			return err
		}
	}
	if check == nil && !created {
		// A directory of a version without keyed digests (or one whose
		// first open stopped before this point): open the upgrade window.
		legacyUntil = now.Add(e.opts.TTL + e.opts.Lease)
	}
	stored := legacyUntil
	if !legacyUntil.IsZero() && !now.Before(legacyUntil) {
		legacyUntil = time.Time{} // the window has closed: forget it
	}
	secret, previous := e.opts.ScopeSecret, e.opts.PreviousScopeSecrets
	switch {
	case secret != nil:
		if fileSecret != nil && !bytes.Equal(fileSecret, secret) {
			previous = append(previous[:len(previous):len(previous)], fileSecret)
		}
	case fileSecret != nil:
		secret = fileSecret
	case check != nil && e.opts.ReadOnly:
		// A reader that was not given the secret (configured elsewhere,
		// the directory has no file): it reads records, but digests no
		// credential.
		e.scoper = nil
		return nil
	case check != nil:
		return damaged("the scope secret file "+ScopeSecretFile+" is missing: without it no stored record can be found (restore it from a backup of the directory, or give the secret as Options.ScopeSecret)", nil)
	case e.opts.ReadOnly:
		// A directory of a version without keyed digests, read: its
		// records are found under their version-1 digests.
		secret, legacyUntil = NewScopeSecret(), now.Add(100*365*24*time.Hour)
	default:
		secret = NewScopeSecret()
		if !e.opts.InMemory {
			if err := writeScopeFile(e.opts.fs, e.dir, path, secret); err != nil {
				return err
			}
		}
	}
	s, err := NewScoper(ScopeKeys{Secret: secret, Previous: previous, LegacyUntil: legacyUntil, Now: e.clock.Now})
	if err != nil {
		return err
	}
	if check != nil && s.Knows(check) < 0 {
		if e.opts.ScopeSecret != nil {
			return fmt.Errorf("%w: Options.ScopeSecret is not the secret this directory's records were stored under (nor is any of PreviousScopeSecrets)", ErrInvalid)
		}
		return damaged("the scope secret file "+ScopeSecretFile+" does not hold the secret this directory's records were stored under (restore it from a backup, or give the secret as Options.ScopeSecret)", nil)
	}
	e.scoper = s
	if e.opts.ReadOnly || check != nil && s.Knows(check) == 0 && stored.Equal(legacyUntil) {
		return nil // nothing to record
	}
	return e.db.Set(scopeMetaKey, encodeScopeMeta(s.Check(), legacyUntil), pebble.Sync)
}

// readScopeFile returns the secret in path, nil if there is no file.
func readScopeFile(fs vfs.FS, path string) ([]byte, error) {
	f, err := fs.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<10))
	if err != nil {
		return nil, err
	}
	return parseScopeFile(b)
}

// writeScopeFile writes secret to path durably: a temporary file,
// synced, renamed into place, and the directory synced. The file is
// readable by its owner only.
func writeScopeFile(fs vfs.FS, dir, path string, secret []byte) error {
	tmp := path + ".tmp"
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if fs == vfs.Default {
		if err := os.Chmod(tmp, 0o600); err != nil {
			f.Close()
			return err
		}
	}
	_, err = f.Write(encodeScopeFile(secret))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, path)
	}
	if err == nil {
		var d vfs.File
		if d, err = fs.OpenDir(dir); err == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("%w: writing the scope secret file: %w", ErrStorage, err)
	}
	return nil
}

// Scoper returns the engine's Scoper (see Options.ScopeSecret). It is nil
// only for a read-only engine on a directory whose secret was configured
// (it has no ScopeSecretFile) and not given to this Open: such an engine
// reads records but cannot digest credentials.
func (e *Engine) Scoper() *Scoper { return e.scoper }
