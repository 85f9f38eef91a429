package engine_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/expiry"
	"github.com/idemkv/idemkv/record"
)

// openScoped opens dir (on disk) with o, failing t on error; closed when t
// ends, or by the caller.
func openScoped(t *testing.T, dir string, o *engine.Options) *engine.Engine {
	t.Helper()
	if o == nil {
		o = &engine.Options{}
	}
	o.Logger = quietLogger()
	e, err := engine.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// TestScopeSecretIsMadeOnceAndKept: a new directory gets a random secret
// in a file only its owner can read, kept across restarts (and read-only
// opens), so a credential's scope is stable in one directory, differs
// between two, and is never the unkeyed digest anyone could compute.
func TestScopeSecretIsMadeOnceAndKept(t *testing.T) {
	const cred = "Bearer sk_live_123"
	dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	a := openScoped(t, dirA, nil)
	scope := a.Scoper().Scope(cred)
	if len(scope) != 32 || scope == engine.LegacyScope(cred) || a.Scoper().Upgrading() {
		t.Fatalf("scope %x (%d bytes), upgrading %v; want a keyed 32-byte digest and no upgrade window", scope, len(scope), a.Scoper().Upgrading())
	}
	if a.Scoper().Scope("") != "" {
		t.Fatal("an empty credential has a scope")
	}
	fi, err := os.Stat(filepath.Join(dirA, engine.ScopeSecretFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v, mode %v; want 0600", err, fi.Mode())
	}
	if b := openScoped(t, dirB, nil); b.Scoper().Scope(cred) == scope {
		t.Fatal("two directories give one credential the same scope")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := openScoped(t, dirA, &engine.Options{ReadOnly: true}).Scoper().Scope(cred); got != scope {
		t.Fatal("a read-only open digests with another secret")
	}
	if got := openScoped(t, dirA, nil).Scoper().Scope(cred); got != scope {
		t.Fatal("the scope changed across a restart")
	}
}

// TestOpenRefusesALostOrDamagedScopeSecret: without the right secret no
// stored record would be found, and every retry would run its handler
// again; so a directory whose secret file is missing, damaged or replaced
// is refused with an error matching ErrCorrupt, and opens again once the
// file is restored.
func TestOpenRefusesALostOrDamagedScopeSecret(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	e := openScoped(t, dir, nil)
	scope := e.Scoper().Scope("Bearer x")
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, engine.ScopeSecretFile)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return b
	}
	for name, content := range map[string][]byte{
		"missing":          nil,
		"a digit changed":  flip(len(good) - 2),
		"the header":       flip(0),
		"cut short":        good[:len(good)-10],
		"empty":            {},
		"upper-case hex":   bytes.ToUpper(good),
		"another secret":   append([]byte("idemkv scope secret v1\n"), bytes.Repeat([]byte("ab"), 32)...),
		"a line too many":  append(bytes.Clone(good), "00\n"...),
		"no final newline": good[:len(good)-1],
	} {
		if content == nil {
			os.Remove(path)
		} else if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := engine.Open(dir, &engine.Options{Logger: quietLogger()}); !errors.Is(err, engine.ErrCorrupt) {
			t.Fatalf("%s: Open: %v; want ErrCorrupt", name, err)
		}
		r, err := engine.Open(dir, &engine.Options{ReadOnly: true, Logger: quietLogger()})
		switch {
		case content == nil && (err != nil || r.Scoper() != nil):
			// A reader without the secret reads records, digests nothing.
			t.Fatalf("%s: read-only Open: %v; want an engine without a Scoper", name, err)
		case content != nil && !errors.Is(err, engine.ErrCorrupt):
			t.Fatalf("%s: read-only Open: %v; want ErrCorrupt", name, err)
		}
		if err == nil {
			mustClose(t, r)
		}
	}
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := openScoped(t, dir, nil).Scoper().Scope("Bearer x"); got != scope {
		t.Fatal("the restored secret gives another scope")
	}
}

// TestScopeSecretRotation: records stored under the directory's own
// secret are found after the operator configures a new one (the file's
// secret is accepted as a previous one), and under a configured secret
// after the next rotation if it is listed in PreviousScopeSecrets; a
// secret the records were not stored under is refused (ErrInvalid).
func TestScopeSecretRotation(t *testing.T) {
	const cred = "Bearer x"
	dir := filepath.Join(t.TempDir(), "data")
	e := openScoped(t, dir, nil)
	s0 := e.Scoper().Scope(cred)
	mustClose(t, e)

	s1Secret, s2Secret := []byte("the second secret, 32 bytes long"), []byte("the third secret, 32 bytes long.")
	e = openScoped(t, dir, &engine.Options{ScopeSecret: s1Secret})
	s1 := e.Scoper().Scope(cred)
	if s1 == s0 || !contains(e.Scoper().Earlier(nil, cred, cred), s0) {
		t.Fatal("after configuring a new secret, the file's secret is not a previous one")
	}
	mustClose(t, e)

	if _, err := engine.Open(dir, &engine.Options{ScopeSecret: s2Secret, Logger: quietLogger()}); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("a secret the records were not stored under: %v; want ErrInvalid", err)
	}
	e = openScoped(t, dir, &engine.Options{ScopeSecret: s2Secret, PreviousScopeSecrets: [][]byte{s1Secret}})
	if earlier := e.Scoper().Earlier(nil, cred, cred); !contains(earlier, s1) || !contains(earlier, s0) {
		t.Fatal("the previous secret's scope (and the file's) are not looked up")
	}
	mustClose(t, e)
	// The check now names the newest secret: the one before it alone is
	// refused.
	if _, err := engine.Open(dir, &engine.Options{ScopeSecret: s1Secret, Logger: quietLogger()}); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("going back to the replaced secret: %v; want ErrInvalid", err)
	}
	if _, err := engine.Open(dir, &engine.Options{ScopeSecret: []byte("short"), Logger: quietLogger()}); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("a short secret: %v; want ErrInvalid", err)
	}
}

// TestUpgradeWindow: a directory written by a version without keyed
// digests (the golden one) opens with an upgrade window of one TTL and
// lease, during which the version-1 digests are looked up; after it they
// are not, and the window is forgotten.
func TestUpgradeWindow(t *testing.T) {
	dir := copyGoldenDir(t)
	clock := expiry.NewFakeClock(goldenNow)
	o := goldenOptions(clock)
	o.Lease = time.Minute
	e := openScoped(t, dir, o)
	s := e.Scoper()
	if !s.Upgrading() || !s.LegacyUntil().Equal(goldenNow.Add(goldenTTL+time.Minute).Truncate(time.Second)) && !s.LegacyUntil().Equal(goldenNow.Add(goldenTTL+time.Minute)) {
		t.Fatalf("upgrading %v until %v; want a window to %v", s.Upgrading(), s.LegacyUntil(), goldenNow.Add(goldenTTL+time.Minute))
	}
	earlier := s.Earlier(nil, "Bearer x", "bearer  x")
	if len(earlier) != 2 || earlier[0] != engine.LegacyScope("Bearer x") || earlier[1] != engine.LegacyScope("bearer  x") {
		t.Fatalf("earlier scopes %x; want the version-1 digests of both spellings", earlier)
	}
	mustClose(t, e)
	// Reopened within the window: the same window.
	clock.Set(goldenNow.Add(30 * time.Minute))
	e = openScoped(t, dir, goldenOptions(clock))
	if !e.Scoper().Upgrading() {
		t.Fatal("the window closed at a restart")
	}
	clock.Set(goldenNow.Add(goldenTTL + 2*time.Minute))
	if e.Scoper().Upgrading() || len(e.Scoper().Earlier(nil, "Bearer x", "bearer  x")) != 0 {
		t.Fatal("the window is still open after one TTL and lease")
	}
	mustClose(t, e)
	e = openScoped(t, dir, goldenOptions(clock))
	if !e.Scoper().LegacyUntil().IsZero() {
		t.Fatalf("a closed window is kept: %v", e.Scoper().LegacyUntil())
	}
}

// TestRepairKeepsTheScopeSecret: a repaired directory has the secret of
// the damaged one (its records are found under their scopes), and a
// repaired directory of a version without keyed digests has an upgrade
// window.
func TestRepairKeepsTheScopeSecret(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	e := openScoped(t, dir, nil)
	scope := e.Scoper().Scope("Bearer x")
	key := record.Key{Scope: scope, Endpoint: "POST /x", Key: "k"}
	res := begin(t, e, engine.Request{Key: key, Fingerprint: record.Sum([]byte("b")), RequestID: "r"})
	if err := res.Claim.Complete(ctx, engine.Response{Status: 201, Body: []byte("ok")}); err != nil {
		t.Fatal(err)
	}
	mustClose(t, e)
	dst := filepath.Join(t.TempDir(), "repaired")
	if _, err := engine.Repair(dir, dst, &engine.Options{Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	r := openScoped(t, dst, nil)
	if r.Scoper().Scope("Bearer x") != scope {
		t.Fatal("the repaired directory has another secret")
	}
	if rec, err := r.Get(ctx, key); err != nil || string(rec.Body) != "ok" {
		t.Fatalf("the record in the repaired directory: %v", err)
	}

	// Without the secret file, Repair refuses (the records could not be
	// found), unless the secret is given.
	if err := os.Remove(filepath.Join(dir, engine.ScopeSecretFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Repair(dir, filepath.Join(t.TempDir(), "none"), &engine.Options{Logger: quietLogger()}); !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("Repair without the secret file: %v; want ErrCorrupt", err)
	}

	golden := copyGoldenDir(t)
	dst = filepath.Join(t.TempDir(), "repaired-v1")
	clock := expiry.NewFakeClock(goldenNow)
	o := goldenOptions(clock)
	o.Logger = quietLogger()
	if _, err := engine.Repair(golden, dst, o); err != nil {
		t.Fatal(err)
	}
	if !openScoped(t, dst, goldenOptions(clock)).Scoper().Upgrading() {
		t.Fatal("a repaired directory of a version without keyed digests has no upgrade window")
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func mustClose(t *testing.T, e *engine.Engine) {
	t.Helper()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
}

// FuzzParseScopeFile: any bytes in the secret file either parse to the
// secret that encodes back to exactly them, or fail with ErrCorrupt; never
// a panic, never a secret read from a damaged file.
func FuzzParseScopeFile(f *testing.F) {
	f.Add(engine.EncodeScopeFileForTest(bytes.Repeat([]byte{0xab}, 32)))
	f.Add([]byte("idemkv scope secret v1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		secret, err := engine.ParseScopeFileForTest(b)
		if err != nil {
			if !errors.Is(err, engine.ErrCorrupt) {
				t.Fatalf("error %v does not match ErrCorrupt", err)
			}
			return
		}
		if !bytes.Equal(engine.EncodeScopeFileForTest(secret), b) {
			t.Fatalf("%q parsed to a secret that encodes otherwise", b)
		}
	})
}

// FuzzDecodeScopeMeta: any bytes in the scope metadata record either
// decode to what encodes back to exactly them, or fail with ErrCorrupt
// (or ErrVersion for another version).
func FuzzDecodeScopeMeta(f *testing.F) {
	f.Add(engine.EncodeScopeMetaForTest([]byte("12345678"), time.Time{}))
	f.Add(engine.EncodeScopeMetaForTest([]byte("12345678"), time.Unix(1796000000, 0)))
	f.Fuzz(func(t *testing.T, b []byte) {
		check, until, err := engine.DecodeScopeMetaForTest(b)
		if err != nil {
			if !errors.Is(err, engine.ErrCorrupt) && !errors.Is(err, engine.ErrVersion) {
				t.Fatalf("error %v matches neither ErrCorrupt nor ErrVersion", err)
			}
			return
		}
		if !bytes.Equal(engine.EncodeScopeMetaForTest(check, until), b) {
			t.Fatalf("%x decoded to what encodes otherwise", b)
		}
	})
}

// BenchmarkScope: the keyed digest of a credential (what every keyed
// request pays), against the unkeyed SHA-256 of earlier versions.
func BenchmarkScope(b *testing.B) {
	const cred = "Bearer sk_live_4eC39HqLyjWDarjtT1zdp7dc"
	s, err := engine.NewScoper(engine.ScopeKeys{Secret: engine.NewScopeSecret()})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("keyed", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(cred)))
		for b.Loop() {
			_ = s.Scope(cred)
		}
	})
	b.Run("unkeyed-v1", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(cred)))
		for b.Loop() {
			_ = engine.LegacyScope(cred)
		}
	})
}

// TestConfiguredScopeSecretIsNotWritten: a secret given in Options is not
// written to the directory; a writable open without it is refused, a
// read-only one reads the records but digests no credential (Scoper nil),
// and one given the secret digests as the server did.
func TestConfiguredScopeSecretIsNotWritten(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	secret := []byte("a secret from the configuration")
	e := openScoped(t, dir, &engine.Options{ScopeSecret: secret})
	scope := e.Scoper().Scope("Bearer x")
	res := begin(t, e, engine.Request{Key: record.Key{Scope: scope, Endpoint: "POST /x", Key: "k"}, Fingerprint: record.Sum(nil), RequestID: "r"})
	if err := res.Claim.Complete(ctx, engine.Response{Status: 201}); err != nil {
		t.Fatal(err)
	}
	mustClose(t, e)
	if _, err := os.Stat(filepath.Join(dir, engine.ScopeSecretFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the configured secret was written: %v", err)
	}
	if _, err := engine.Open(dir, &engine.Options{Logger: quietLogger()}); !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("a writable open without the secret: %v; want ErrCorrupt", err)
	}
	r := openScoped(t, dir, &engine.Options{ReadOnly: true})
	n := 0
	if err := r.Scan(ctx, engine.ScanOptions{}, func(engine.Entry) error { n++; return nil }); err != nil || n != 1 || r.Scoper() != nil {
		t.Fatalf("read-only without the secret: %d records, %v, Scoper %v; want 1 record and no Scoper", n, err, r.Scoper())
	}
	if got := openScoped(t, dir, &engine.Options{ReadOnly: true, ScopeSecret: secret}).Scoper().Scope("Bearer x"); got != scope {
		t.Fatal("read-only with the secret digests otherwise")
	}
}
