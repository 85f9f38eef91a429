package main

// The data-directory tools (inspect, get, stats, sweep) share what is in
// this file: the -data and -ttl flags, opening a directory without ever
// creating one, and showing stored bytes safely on a terminal.

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"math"
	"os"
	"strings"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/expiry"
	"github.com/idemkv/idemkv/record"
)

// dataFlags are the flags every data-directory tool takes.
type dataFlags struct {
	dir        string
	ttl        time.Duration
	secretFile string
}

func (f *dataFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dir, "data", "./idemkv-data", "data `directory` to open; it must exist and is never created")
	fs.DurationVar(&f.ttl, "ttl", expiry.DefaultTTL, "the TTL the server uses (get looks for records within it)")
	fs.StringVar(&f.secretFile, "scope-secret-file", "", "the scope secret's `file`, if the server was given one (else "+scopeSecretEnv+", else the directory's own "+engine.ScopeSecretFile+"); needed by -credential")
}

// noSweep is the sweep interval of the tools: in effect, never.
const noSweep = time.Duration(math.MaxInt64)

// openDataDir opens the existing data directory f.dir, read-only unless
// write is set (idemkv sweep). It never creates a directory. A read-only
// open writes nothing and works while a server has the directory open
// (the engine then reads a snapshot of it); a writable one needs the
// directory to itself. The caller must close the engine.
func openDataDir(f *dataFlags, write bool) (*engine.Engine, error) {
	if err := checkDataDir(f.dir); err != nil {
		return nil, err
	}
	secret, err := readSecret(f.secretFile, scopeSecretEnv)
	if err != nil {
		return nil, err
	}
	eng, err := engine.Open(f.dir, &engine.Options{
		TTL:         f.ttl,
		ScopeSecret: secret,
		ReadOnly:    !write,
		// The tools sweep only when told to (idemkv sweep): looking must
		// not change what there is to see.
		SweepInterval: noSweep,
	})
	switch {
	case err == nil:
		return eng, nil
	case errors.Is(err, engine.ErrLocked):
		return nil, fmt.Errorf("data directory %s is in use by another process (stop the server that uses it first)", f.dir)
	case errors.Is(err, engine.ErrNoData):
		return nil, fmt.Errorf("%s holds no idemkv data: %w", f.dir, err)
	case errors.Is(err, expiry.ErrPolicy):
		return nil, fmt.Errorf("%w (set -ttl to the TTL the server uses)", err)
	}
	return nil, err
}

// checkDataDir reports an error unless dir is a directory that holds a
// Pebble store (a MANIFEST file), so that an open never creates one.
func checkDataDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("data directory %s does not exist", dir)
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "MANIFEST-") {
			return nil
		}
	}
	return fmt.Errorf("%s holds no idemkv data", dir)
}

// scopeFlags are -scope and -scope-hex, of which at most one may be set.
type scopeFlags struct {
	scope      string
	credential string // -credential, digested by resolve
	from       string // the flag that set scope, "" if none
}

func (s *scopeFlags) register(fs *flag.FlagSet) {
	fs.Func("scope", "the `scope` (tenant) as text", func(v string) error {
		return s.set("-scope", v)
	})
	fs.Func("scope-hex", "the `scope` in hex (optionally 0x-prefixed), for binary scopes such as the keyed digests of the HTTP middleware",
		func(v string) error {
			b, err := hex.DecodeString(strings.TrimPrefix(v, "0x"))
			if err != nil {
				return errors.New("not hexadecimal")
			}
			return s.set("-scope-hex", string(b))
		})
	fs.Func("credential", "the `credential` (the whole value of the scope header, e.g. 'Bearer sk_demo') whose scope the HTTP middleware uses; it is digested with the directory's scope secret, never stored",
		func(v string) error {
			s.credential = v
			return s.set("-credential", "")
		})
}

// resolve sets the scope of -credential, a digest under eng's secret.
func (s *scopeFlags) resolve(eng *engine.Engine) error {
	if s.from != "-credential" {
		return nil
	}
	if eng.Scoper() == nil {
		return fmt.Errorf("-credential needs the scope secret the server was given: set %s or give -scope-secret-file", scopeSecretEnv)
	}
	s.scope = idemhttp.CredentialScope(eng.Scoper(), s.credential)
	return nil
}

func (s *scopeFlags) set(name, v string) error {
	if s.from != "" && s.from != name {
		return errors.New("give one of -scope, -scope-hex and -credential")
	}
	s.scope, s.from = v, name
	return nil
}

// isSet reports whether the flag name was given.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// usageError prints msg and the usage of fs and returns errUsage.
func usageError(fs *flag.FlagSet, msg string) error {
	fmt.Fprintln(fs.Output(), msg)
	fs.Usage()
	return errUsage
}

// isText reports whether s is printable ASCII (the empty string is).
func isText(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// showPart returns a key part (scope, endpoint or key) for a table: as
// is if it is printable ASCII, "" quoted if empty, and otherwise (or if
// it begins with "0x" or a quote, which would be ambiguous) as 0x-prefixed
// hex, the form -scope-hex accepts.
func showPart(s string) string {
	switch {
	case s == "":
		return `""`
	case isText(s) && !strings.HasPrefix(s, "0x") && s[0] != '"':
		return s
	}
	return "0x" + hex.EncodeToString([]byte(s))
}

// showKey returns k for a message.
func showKey(k record.Key) string {
	return fmt.Sprintf("scope %s, endpoint %s, key %s", showPart(k.Scope), showPart(k.Endpoint), showPart(k.Key))
}

// showText returns s as is if it is printable ASCII, else Go-quoted, so
// that stored bytes never drive the terminal.
func showText(s string) string {
	if isText(s) {
		return s
	}
	return fmt.Sprintf("%+q", s)
}

// jsonKey is a record's key in JSON. Each part is given as text (Scope)
// if it is printable ASCII, else in hex (ScopeHex).
type jsonKey struct {
	Scope       *string `json:"scope,omitempty"`
	ScopeHex    string  `json:"scope_hex,omitempty"`
	Endpoint    *string `json:"endpoint,omitempty"`
	EndpointHex string  `json:"endpoint_hex,omitempty"`
	Key         *string `json:"key,omitempty"`
	KeyHex      string  `json:"key_hex,omitempty"`
}

func newJSONKey(k record.Key) jsonKey {
	var j jsonKey
	j.Scope, j.ScopeHex = jsonPart(k.Scope)
	j.Endpoint, j.EndpointHex = jsonPart(k.Endpoint)
	j.Key, j.KeyHex = jsonPart(k.Key)
	return j
}

func jsonPart(s string) (*string, string) {
	if isText(s) {
		return &s, ""
	}
	return nil, hex.EncodeToString([]byte(s))
}

// showTime formats t as RFC 3339 in UTC, or "-" if it is zero.
func showTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// jsonTime returns t in UTC, or nil if it is zero.
func jsonTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// stateOf names the state of a record for the tools: completed, expired
// (completed, but no longer replayed; its generation is not dropped yet),
// in-flight (a claim held by the server that has the directory open) or
// interrupted (a claim whose process stopped without completing or
// releasing it; the next request with the key recovers it).
func stateOf(r *record.Record, st engine.Stats, now time.Time) string {
	switch {
	case r.State == record.Claimed && st.Live && r.Lease.Owner == st.Incarnation:
		return "in-flight"
	case r.State == record.Claimed:
		return "interrupted"
	case r.Expired(now):
		return "expired"
	}
	return "completed"
}

// damaged returns the error that reports n damaged records, or nil.
func damaged(n int) error {
	if n == 0 {
		return nil
	}
	return errors.New(plural(n, "damaged record"))
}

// plural returns "1 thing" or "n things".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// closeEngine closes eng and, if *err is nil, sets it to Close's error.
func closeEngine(eng *engine.Engine, err *error) {
	if cerr := eng.Close(); *err == nil {
		*err = cerr
	}
}
