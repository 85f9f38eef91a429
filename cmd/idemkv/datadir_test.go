package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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

// The records of the test data directory.
var (
	binScope   = string(func() []byte { s := sha256.Sum256([]byte("tenant")); return s[:] }())
	binScopeX  = "0x" + hex.EncodeToString([]byte(binScope))
	binBody    = []byte{0, 1, 2, 0xff, 'x'}
	jsonBody   = `{"id":"call_1"}`
	damagedKey = record.Key{Scope: "acme", Endpoint: "POST /v1/refunds", Key: "d1"}
)

// newDataDir returns a data directory holding, in scope acme: two
// expired records (POST /v1/old), completed k1 and k2 and interrupted k3
// (POST /v1/calls), a1 (POST /v1/agents) and damaged d1 (POST
// /v1/refunds); k1 in a binary scope, with a binary body; and anon in
// the empty scope.
func newDataDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	ctx := context.Background()
	complete := func(eng *engine.Engine, k record.Key, status int, body []byte, hdr ...record.Header) {
		t.Helper()
		res, err := eng.Begin(ctx, engine.Request{Key: k, Fingerprint: record.Sum([]byte(k.Key)), RequestID: "req-" + k.Key})
		if err != nil || res.Outcome != engine.Proceed {
			t.Fatalf("Begin %v: %v %v", k, res.Outcome, err)
		}
		if err := res.Claim.Complete(ctx, engine.Response{Status: status, Header: hdr, Body: body}); err != nil {
			t.Fatal(err)
		}
	}

	// Records written three days ago expired two days ago.
	old, err := engine.Open(dir, &engine.Options{Clock: expiry.NewFakeClock(time.Now().Add(-72 * time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	complete(old, record.Key{Scope: "acme", Endpoint: "POST /v1/old", Key: "old-1"}, 200, []byte("old"))
	complete(old, record.Key{Scope: "acme", Endpoint: "POST /v1/old", Key: "old-2"}, 200, []byte("old"))
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	eng, err := engine.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ct := record.Header{Name: "Content-Type", Value: "application/json"}
	complete(eng, record.Key{Scope: "acme", Endpoint: "POST /v1/calls", Key: "k1"}, 201, []byte(jsonBody), ct)
	complete(eng, record.Key{Scope: "acme", Endpoint: "POST /v1/calls", Key: "k2"}, 201, []byte(jsonBody), ct)
	complete(eng, record.Key{Scope: "acme", Endpoint: "POST /v1/agents", Key: "a1"}, 200, []byte("agent"))
	complete(eng, record.Key{Scope: binScope, Endpoint: "POST /v1/calls", Key: "k1"}, 200, binBody)
	complete(eng, record.Key{Scope: "", Endpoint: "POST /v1/calls", Key: "anon"}, 202, nil)
	complete(eng, damagedKey, 200, []byte("secret refund body"))
	// A claim that is never completed: closing the engine interrupts it.
	k3 := record.Key{Scope: "acme", Endpoint: "POST /v1/calls", Key: "k3"}
	if res, err := eng.Begin(ctx, engine.Request{Key: k3, Fingerprint: record.Sum(nil), RequestID: "req-k3"}); err != nil || res.Outcome != engine.Proceed {
		t.Fatalf("Begin k3: %v %v", res.Outcome, err)
	}
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	damage(t, dir, damagedKey)
	return dir
}

// damage flips a byte of key's stored record with Pebble itself, behind
// the engine's back, as disk corruption would.
func damage(t *testing.T, dir string, key record.Key) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it, err := db.NewIter(&pebble.IterOptions{
		LowerBound: expiry.AppendPrefix(nil, 0),
		UpperBound: []byte{expiry.KeyPrefix + 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	var k, v []byte
	for it.First(); it.Valid(); it.Next() {
		_, suffix, _ := expiry.SplitKey(it.Key())
		if got, err := record.DecodeKey(suffix); err == nil && got == key {
			k, v = bytes.Clone(it.Key()), bytes.Clone(it.Value())
		}
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if k == nil {
		t.Fatalf("record %v not found", key)
	}
	v[len(v)/2] ^= 0x40
	if err := db.Set(k, v, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// squeeze collapses each run of spaces and tabs in s into one space, so
// that tests need not know the widths of table columns.
func squeeze(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		b.WriteString(strings.Join(strings.Fields(line), " "))
		if strings.HasSuffix(line, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// checkOutput runs idemkv with args and checks its exit code and that its
// output (stdout and stderr, squeezed) has every string of want and none
// of notWant.
func checkOutput(t *testing.T, args []string, code int, want, notWant []string) {
	t.Helper()
	gotCode, out, errOut := runCmd(t, args...)
	all := squeeze(out + errOut)
	if gotCode != code {
		t.Errorf("exit %d; want %d", gotCode, code)
	}
	for _, w := range want {
		if !strings.Contains(all, squeeze(w)) {
			t.Errorf("output lacks %q", w)
		}
	}
	for _, w := range notWant {
		if strings.Contains(all, w) {
			t.Errorf("output has %q", w)
		}
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
	}
}

func TestInspect(t *testing.T) {
	dir := newDataDir(t)
	tests := []struct {
		name    string
		args    []string
		code    int
		want    []string // in stdout and stderr
		notWant []string
	}{
		{"all", nil, 1,
			[]string{"completed acme", "interrupted acme", "k3", "a1", binScopeX, `""`, "anon", "damaged", "d1", "corrupt", "7 records", "1 damaged record", "2 expired records not shown"},
			[]string{"old-1", "expired acme"}},
		{"expired", []string{"-expired"}, 1,
			[]string{"expired acme", "old-1", "old-2", "9 records"}, nil},
		{"scope", []string{"-scope", "acme"}, 1,
			[]string{"k1", "k2", "k3", "a1", "d1", "5 records"}, []string{binScopeX, "anon"}},
		{"endpoint", []string{"-scope", "acme", "-endpoint", "POST /v1/calls"}, 0,
			[]string{"k1", "k2", "k3", "req-k1", "201", "3 records"}, []string{"a1", "d1", "damaged", "anon"}},
		{"empty scope", []string{"-scope", "", "-endpoint", "POST /v1/calls"}, 0,
			[]string{"anon", "202", "1 record,"}, []string{"k1"}},
		{"scope hex", []string{"-scope-hex", binScopeX[2:]}, 0,
			[]string{binScopeX, "k1", "1 record,"}, []string{"acme"}},
		{"scope 0x hex and endpoint", []string{"-scope-hex", binScopeX, "-endpoint", "POST /v1/calls"}, 0,
			[]string{binScopeX, "1 record,"}, nil},
		{"no such endpoint", []string{"-scope", "acme", "-endpoint", "POST /v1/call"}, 0,
			[]string{"0 records"}, []string{"k1"}},
		{"limit", []string{"-limit", "2"}, 0,
			[]string{"2 records", "stopped at -limit 2"}, nil},
		{"endpoint without scope", []string{"-endpoint", "POST /v1/calls"}, 2,
			[]string{"needs -scope"}, nil},
		{"both scopes", []string{"-scope", "acme", "-scope-hex", "00"}, 2,
			[]string{"one of -scope, -scope-hex and -credential"}, nil},
		{"bad hex", []string{"-scope-hex", "xyz"}, 2, []string{"not hexadecimal"}, nil},
		{"negative limit", []string{"-limit", "-1"}, 2, nil, nil},
		{"help", []string{"-h"}, 0, []string{"Usage: idemkv inspect"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkOutput(t, append([]string{"inspect", "-data", dir}, tt.args...), tt.code, tt.want, tt.notWant)
		})
	}
}

func TestInspectJSON(t *testing.T) {
	dir := newDataDir(t)
	code, out, errOut := runCmd(t, "inspect", "-data", dir, "-json", "-expired")
	if code != 1 || !strings.Contains(errOut, "9 records") {
		t.Fatalf("exit %d; want 1; stderr:\n%s", code, errOut)
	}
	states := map[string]int{}
	var sawBinary, sawDamaged bool
	for line := range strings.Lines(out) {
		var e entryJSON
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		states[e.State]++
		if e.ScopeHex == binScopeX[2:] && e.Scope == nil && *e.Key == "k1" && e.Status == 200 {
			sawBinary = true
		}
		if e.State == "damaged" && *e.Key == "d1" && e.Error != "" && e.Size > 0 && e.Expires == nil {
			sawDamaged = true
		}
		if e.State == "completed" && (e.Created == nil || e.Completed == nil || e.Expires == nil || e.Expires.Location() != time.UTC) {
			t.Errorf("times of %s: %v %v %v", line, e.Created, e.Completed, e.Expires)
		}
	}
	want := map[string]int{"completed": 5, "expired": 2, "interrupted": 1, "damaged": 1}
	for s, n := range want {
		if states[s] != n {
			t.Errorf("%d %s records; want %d (all: %v)", states[s], s, n, states)
		}
	}
	if !sawBinary || !sawDamaged {
		t.Errorf("binary scope seen: %v, damaged record seen: %v; output:\n%s", sawBinary, sawDamaged, out)
	}
}

func TestGet(t *testing.T) {
	dir := newDataDir(t)
	calls := []string{"get", "-data", dir, "-scope", "acme", "-endpoint", "POST /v1/calls"}
	tests := []struct {
		name    string
		args    []string
		code    int
		want    []string
		notWant []string
	}{
		{"completed", append(calls, "-key", "k1"), 0,
			[]string{"state        completed", "status       201", "req-k1", "fingerprint v1:", "Content-Type: application/json", "body (15 bytes):\n" + jsonBody + "\n"}, nil},
		{"interrupted", append(calls, "-key", "k3"), 0,
			[]string{"interrupted", "lease", "no body"}, []string{"status"}},
		{"binary body", []string{"get", "-data", dir, "-scope-hex", binScopeX, "-endpoint", "POST /v1/calls", "-key", "k1"}, 0,
			[]string{"scope " + binScopeX, "binary", "00 01 02 ff 78"}, nil},
		{"empty scope", []string{"get", "-data", dir, "-endpoint", "POST /v1/calls", "-key", "anon"}, 0,
			[]string{`scope ""`, "202", "body: empty"}, nil},
		{"not found", append(calls, "-key", "nope"), 1,
			[]string{"no record for scope acme, endpoint POST /v1/calls, key nope"}, nil},
		{"expired", []string{"get", "-data", dir, "-scope", "acme", "-endpoint", "POST /v1/old", "-key", "old-1"}, 1,
			[]string{"no record"}, nil},
		{"damaged", []string{"get", "-data", dir, "-scope", "acme", "-endpoint", damagedKey.Endpoint, "-key", "d1"}, 1,
			[]string{"is damaged", "corrupt"}, []string{"secret"}},
		{"damaged body only", []string{"get", "-data", dir, "-scope", "acme", "-endpoint", damagedKey.Endpoint, "-key", "d1", "-body-only"}, 1,
			[]string{"is damaged"}, []string{"secret"}},
		{"body of interrupted", append(calls, "-key", "k3", "-body-only"), 1, []string{"has no body"}, nil},
		{"no key", calls, 2, []string{"needs -endpoint and -key"}, nil},
		{"no endpoint", []string{"get", "-data", dir, "-key", "k1"}, 2, []string{"needs -endpoint and -key"}, nil},
		{"json and body only", append(calls, "-key", "k1", "-json", "-body-only"), 2, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkOutput(t, tt.args, tt.code, tt.want, tt.notWant)
		})
	}

	t.Run("body only", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			want string
		}{
			{append(calls, "-key", "k1"), jsonBody},
			{[]string{"get", "-data", dir, "-scope-hex", binScopeX, "-endpoint", "POST /v1/calls", "-key", "k1"}, string(binBody)},
		} {
			code, out, errOut := runCmd(t, append(tt.args, "-body-only")...)
			if code != 0 || out != tt.want {
				t.Errorf("%v: exit %d, stdout %q; want 0, %q; stderr:\n%s", tt.args, code, out, tt.want, errOut)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		code, out, errOut := runCmd(t, append(calls, "-key", "k1", "-json")...)
		var r recordJSON
		if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil {
			t.Fatalf("exit %d, %v; stdout:\n%s\nstderr:\n%s", code, err, out, errOut)
		}
		if *r.Scope != "acme" || *r.Key != "k1" || r.State != "completed" || r.Status != 201 || r.Body == nil || *r.Body != jsonBody ||
			len(r.Header) != 1 || r.Header[0] != (headerJSON{"Content-Type", "application/json"}) || r.Lease != nil {
			t.Errorf("got %s", out)
		}
		code, out, _ = runCmd(t, "get", "-data", dir, "-scope-hex", binScopeX, "-endpoint", "POST /v1/calls", "-key", "k1", "-json")
		r = recordJSON{}
		if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil || r.ScopeHex != binScopeX[2:] || r.Body != nil || !bytes.Equal(r.BodyBase64, binBody) {
			t.Errorf("binary: exit %d, %v; got %s", code, err, out)
		}
	})
}

func TestStats(t *testing.T) {
	dir := newDataDir(t)
	code, out, errOut := runCmd(t, "stats", "-data", dir)
	if code != 1 || !strings.Contains(errOut, "1 damaged record") {
		t.Errorf("exit %d; want 1 for the damaged record; stderr:\n%s", code, errOut)
	}
	for _, w := range []string{"records 9, 5 completed, 2 expired, 1 interrupted, 1 damaged", "generation width 3h0m0s", "scopes 3", "top scopes by records", "disk bytes "} {
		if !strings.Contains(squeeze(out), w) {
			t.Errorf("output lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("stdout:\n%s", out)
	}

	code, out, errOut = runCmd(t, "stats", "-data", dir, "-json")
	var s dirStats
	if err := json.Unmarshal([]byte(out), &s); code != 1 || err != nil {
		t.Fatalf("exit %d, %v; stdout:\n%s\nstderr:\n%s", code, err, out, errOut)
	}
	want := map[string]int{"completed": 5, "expired": 2, "interrupted": 1, "damaged": 1}
	if s.Records != 9 || s.Damaged != 1 || s.Scopes != 3 || len(s.States) != len(want) {
		t.Errorf("got %d records, %d damaged, %d scopes, states %v; want 9, 1, 3", s.Records, s.Damaged, s.Scopes, s.States)
	}
	for st, n := range want {
		if s.States[st] != n {
			t.Errorf("%d %s; want %d", s.States[st], st, n)
		}
	}
	if len(s.TopScopes) != 3 || *s.TopScopes[0].Scope != "acme" || s.TopScopes[0].Records != 7 || s.TopScopes[1].Scope == nil || *s.TopScopes[1].Scope != "" ||
		s.TopScopes[2].ScopeHex != binScopeX[2:] {
		t.Errorf("top scopes: %+v", s.TopScopes)
	}
	if s.StoredBytes <= 0 || s.BytesPerRecord != s.StoredBytes/9 || s.DiskBytes == 0 || s.OldestExpiry == nil || !s.OldestExpiry.Before(time.Now().Add(-24*time.Hour)) ||
		s.NewestExpiry == nil || !s.NewestExpiry.After(time.Now()) {
		t.Errorf("sizes and expiry: %s", out)
	}
}

func TestSweep(t *testing.T) {
	dir := newDataDir(t)
	code, out, errOut := runCmd(t, "sweep", "-data", dir)
	if code != 0 || !strings.Contains(out, "dropped ") || strings.Contains(out, "dropped 0 ") || !strings.Contains(out, "disk bytes") {
		t.Fatalf("exit %d; stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if _, out, _ := runCmd(t, "inspect", "-data", dir, "-expired"); strings.Contains(out, "old-1") || !strings.Contains(out, "k1") {
		t.Errorf("after sweep, inspect -expired:\n%s", out)
	}
	if code, out, _ := runCmd(t, "sweep", "-data", dir); code != 0 || !strings.Contains(out, "nothing to drop") {
		t.Errorf("second sweep: exit %d:\n%s", code, out)
	}
}

func TestDataDirRefused(t *testing.T) {
	root := t.TempDir()
	missing := filepath.Join(root, "missing")
	empty := filepath.Join(root, "empty")
	file := filepath.Join(root, "file")
	foreign := filepath.Join(root, "foreign")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := pebble.Open(foreign, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	dataDir := newDataDir(t)

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing", []string{"inspect", "-data", missing}, "data directory " + missing + " does not exist"},
		{"missing get", []string{"get", "-data", missing, "-endpoint", "e", "-key", "k"}, "does not exist"},
		{"missing stats", []string{"stats", "-data", missing}, "does not exist"},
		{"missing sweep", []string{"sweep", "-data", missing}, "does not exist"},
		{"empty", []string{"stats", "-data", empty}, empty + " holds no idemkv data"},
		{"file", []string{"stats", "-data", file}, "is not a directory"},
		{"foreign", []string{"stats", "-data", foreign}, "holds no idemkv data"},
		{"ttl", []string{"stats", "-data", dataDir, "-ttl", "1000h"}, "set -ttl to the TTL the server uses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, tt.args...)
			if code != 1 || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d; want 1 and %q; stdout:\n%s\nstderr:\n%s", code, tt.want, out, errOut)
			}
		})
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("the missing directory was created: %v", err)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("files were created in the empty directory: %v", ents)
	}
}

// TestDataDirInUse checks the tools against a directory that a process has
// open: inspect, get and stats read a snapshot of it (and show the claims
// of that process as in flight), sweep, which writes, is refused.
func TestDataDirInUse(t *testing.T) {
	t.Run("engine in this process", func(t *testing.T) {
		dir := newDataDir(t)
		eng, err := engine.Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		res, err := eng.Begin(context.Background(), engine.Request{
			Key:         record.Key{Scope: "s", Endpoint: "e", Key: "running"},
			Fingerprint: record.Fingerprint{Version: 1, Sum: 7}, RequestID: "req-running",
		})
		if err != nil || res.Outcome != engine.Proceed {
			t.Fatalf("Begin: %v %v", res.Outcome, err)
		}
		defer res.Claim.Release(context.Background())
		if err := eng.Sync(context.Background()); err != nil { // the lease on disk
			t.Fatal(err)
		}
		code, out, errOut := runCmd(t, "inspect", "-data", dir, "-scope", "s")
		if code != 0 || !strings.Contains(out, "running") || !strings.Contains(out, "in-flight") {
			t.Errorf("inspect: exit %d; stdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		// The directory holds a damaged record on purpose: stats exits 1.
		if code, out, errOut := runCmd(t, "stats", "-data", dir); !strings.Contains(out, "1 in-flight") || strings.TrimSpace(errOut) != "idemkv: 1 damaged record" {
			t.Errorf("stats: exit %d; stdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		code, _, errOut = runCmd(t, "sweep", "-data", dir)
		if code != 1 || !strings.Contains(errOut, "data directory "+dir+" is in use by another process") {
			t.Errorf("sweep: exit %d; stderr:\n%s", code, errOut)
		}
	})

	// A real server in another process, then the records it wrote.
	t.Run("server", func(t *testing.T) {
		dir := t.TempDir()
		p := start(t, "serve", "-listen", "127.0.0.1:0", "-data", dir)
		if code, _, _ := send(t, "POST", p.addr+"/v1/calls", "key-1", `{"to":"+15550100"}`); code != 201 {
			t.Fatalf("POST: %d", code)
		}
		code, out, errOut := runCmd(t, "inspect", "-data", dir)
		if code != 0 || !strings.Contains(out, "key-1") || !strings.Contains(out, "completed") {
			t.Errorf("inspect while serving: exit %d; stdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		if err := p.stop(t); err != nil {
			t.Fatal(err)
		}
		// The scope is keyed with the directory's secret: -credential
		// finds it, the unkeyed digest of earlier versions does not.
		code, out, errOut = runCmd(t, "inspect", "-data", dir, "-credential", "Bearer sk_test")
		if code != 0 || !strings.Contains(out, "key-1") || !strings.Contains(out, "1 record,") {
			t.Fatalf("after serving: exit %d; stdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		unkeyed := "0x" + hex.EncodeToString([]byte(engine.LegacyScope("Bearer sk_test")))
		if code, out, _ := runCmd(t, "inspect", "-data", dir, "-scope-hex", unkeyed); code != 0 || strings.Contains(out, "key-1") {
			t.Fatalf("the unkeyed digest of the credential finds its record (exit %d):\n%s", code, out)
		}
		code, out, errOut = runCmd(t, "get", "-data", dir, "-credential", "Bearer sk_test", "-endpoint", "POST /v1/calls", "-key", "key-1", "-body-only")
		if code != 0 || !strings.Contains(out, "+15550100") {
			t.Errorf("get: exit %d; stdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
	})
}

// TestReadOnlyToolsWriteNothing runs inspect, get and stats on a stopped
// server's directory, whose log still holds records: not a byte, name or
// modification time in it may change (no replay flushed, no incarnation).
func TestReadOnlyToolsWriteNothing(t *testing.T) {
	dir := t.TempDir()
	p := start(t, "serve", "-listen", "127.0.0.1:0", "-data", dir)
	for _, k := range []string{"k1", "k2"} {
		if code, _, _ := send(t, "POST", p.addr+"/v1/calls", k, `{"to":"+15550100"}`); code != 201 {
			t.Fatalf("POST: %d", code)
		}
	}
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}
	before := dirState(t, dir)
	for _, args := range [][]string{
		{"inspect", "-data", dir},
		{"stats", "-data", dir},
		{"get", "-data", dir, "-credential", "Bearer sk_test", "-endpoint", "POST /v1/calls", "-key", "k1"},
	} {
		if code, out, errOut := runCmd(t, args...); code != 0 {
			t.Fatalf("%s: exit %d; stdout:\n%s\nstderr:\n%s", args[0], code, out, errOut)
		}
		if after := dirState(t, dir); after != before {
			t.Fatalf("%s changed the directory:\nbefore %s\nafter  %s", args[0], before, after)
		}
	}
}

// dirState describes every file of dir: name, size, modification time.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, ent := range ents {
		fi, err := ent.Info()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%d:%d ", ent.Name(), fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}

// TestRepair salvages a directory with a damaged record: the new directory
// holds every intact, unexpired record and not the damaged one, the report
// names the lost key and the exit status says something was lost, and the
// damaged directory is left as it was.
func TestRepair(t *testing.T) {
	dir := newDataDir(t)
	out := filepath.Join(t.TempDir(), "new")
	before := dirState(t, dir)
	code, stdout, stderr := runCmd(t, "repair", "-data", dir, "-out", out)
	if code != 3 {
		t.Fatalf("exit %d, want 3 (records lost); stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"5 completed records, 1 interrupted claims; left behind 2 expired",
		"lost: 1 records named below",
		"lost " + damagedKey.String(),
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
	if after := dirState(t, dir); after != before {
		t.Errorf("repair changed the damaged directory:\nbefore %s\nafter  %s", before, after)
	}
	checkOutput(t, []string{"inspect", "-data", out}, 0,
		[]string{"k1", "k2", "a1", "anon", "k3"}, []string{"POST /v1/refunds", "corrupt", "old-1"})

	// Repairing the repaired directory finds nothing to lose.
	again := filepath.Join(t.TempDir(), "again")
	if code, stdout, stderr := runCmd(t, "repair", "-data", out, "-out", again); code != 0 || !strings.Contains(stdout, "nothing was lost") {
		t.Errorf("repair of a sound directory: exit %d; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	// A destination that holds anything is refused.
	if code, _, stderr := runCmd(t, "repair", "-data", out, "-out", again); code != 1 || !strings.Contains(stderr, "is not empty") {
		t.Errorf("repair into a full directory: exit %d; stderr:\n%s", code, stderr)
	}
}

// TestRepairMendsADamagedManifest: a directory whose MANIFEST is damaged is
// refused by the tools, naming the MANIFEST; repair reads the MANIFEST's
// mirror, loses nothing and says so (exit 0).
func TestRepairMendsADamagedManifest(t *testing.T) {
	sound := filepath.Join(t.TempDir(), "sound")
	if code, _, stderr := runCmd(t, "repair", "-data", newDataDir(t), "-out", sound); code != 3 {
		t.Fatalf("repair of the damaged record's directory: exit %d\n%s", code, stderr)
	}
	var manifest string
	ents, err := os.ReadDir(sound)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if m, ok := strings.CutPrefix(ent.Name(), "marker.manifest."); ok {
			_, manifest, _ = strings.Cut(m, ".")
		}
	}
	path := filepath.Join(sound, manifest)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("current MANIFEST %q: %v", manifest, err)
	}
	b[len(b)/2] ^= 0x10
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCmd(t, "inspect", "-data", sound); code != 1 || !strings.Contains(stderr, manifest) {
		t.Fatalf("inspect of a directory with a damaged MANIFEST: exit %d, want 1 naming %s\n%s", code, manifest, stderr)
	}
	out := filepath.Join(t.TempDir(), "mended")
	code, stdout, stderr := runCmd(t, "repair", "-data", sound, "-out", out)
	if code != 0 || !strings.Contains(stdout, "mended: "+manifest) || !strings.Contains(stdout, "nothing was lost") {
		t.Fatalf("repair of a damaged MANIFEST: exit %d, want 0, mended, nothing lost\n%s\n%s", code, stdout, stderr)
	}
	checkOutput(t, []string{"inspect", "-data", out}, 0, []string{"k1", "k2", "a1", "anon", "k3"}, nil)
}

// TestToolsReadADirectoryKeyedWithAConfiguredSecret: a directory served
// with IDEMKV_SCOPE_SECRET has no secret file; inspect still lists it,
// and -credential finds the tenant's records once given the secret (and
// says what is missing without it).
func TestToolsReadADirectoryKeyedWithAConfiguredSecret(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("IDEMKV_SCOPE_SECRET", "the configured secret of this test")
	p := start(t, "serve", "-listen", "127.0.0.1:0", "-data", dir)
	if code, _, _ := send(t, "POST", p.addr+"/v1/calls", "key-1", `{"to":"+15550100"}`); code != 201 {
		t.Fatalf("POST: %d", code)
	}
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, engine.ScopeSecretFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a configured secret was written to the directory: %v", err)
	}
	if code, out, errOut := runCmd(t, "inspect", "-data", dir, "-credential", "Bearer sk_test"); code != 0 || !strings.Contains(out, "key-1") {
		t.Fatalf("inspect -credential with the secret in the environment: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Setenv("IDEMKV_SCOPE_SECRET", "")
	if code, out, errOut := runCmd(t, "inspect", "-data", dir); code != 0 || !strings.Contains(out, "key-1") {
		t.Fatalf("inspect without the secret: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, _, errOut := runCmd(t, "inspect", "-data", dir, "-credential", "Bearer sk_test"); code != 1 || !strings.Contains(errOut, "IDEMKV_SCOPE_SECRET") {
		t.Fatalf("inspect -credential without the secret: exit %d\n%s", code, errOut)
	}
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("the configured secret of this test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCmd(t, "get", "-data", dir, "-scope-secret-file", secretFile, "-credential", "Bearer sk_test", "-endpoint", "POST /v1/calls", "-key", "key-1", "-body-only"); code != 0 || !strings.Contains(out, "+15550100") {
		t.Fatalf("get -credential with -scope-secret-file: exit %d\n%s\n%s", code, out, errOut)
	}
}
