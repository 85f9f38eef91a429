package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idemkv/idemkv/examples/internal/killtest"
)

// TestCrashBetweenPhases kills the server (SIGKILL, from inside, right
// after it recorded a recovery point) after each phase in turn — and
// after two phases in two successive crashes — then retries the request
// on a restarted server: every phase's side effect must have happened
// exactly once, and the final response must replay.
func TestCrashBetweenPhases(t *testing.T) {
	bin := killtest.Build(t)
	cases := [][]string{
		{phaseOrder},
		{phaseCharged},
		{phaseEmailed},
		{phaseOrder, phaseCharged},
		{phaseOrder, phaseCharged, phaseEmailed},
	}
	for _, crashes := range cases {
		t.Run(strings.Join(crashes, "+"), func(t *testing.T) {
			data, led := t.TempDir(), t.TempDir()
			key := "pay-" + strings.Join(crashes, "-")
			for _, phase := range crashes {
				srv := startServer(t, bin, data, led, phase)
				if status, body, err := post(srv.Addr, key); err == nil {
					t.Fatalf("crash after %s: the request was answered: %d %s", phase, status, body)
				}
				srv.Wait(t)
			}
			srv := startServer(t, bin, data, led, "")
			defer srv.Kill()
			status, first, err := post(srv.Addr, key)
			if err != nil || status != http.StatusCreated {
				t.Fatalf("retry after the crashes: %d %s %v", status, first, err)
			}
			status, again, err := post(srv.Addr, key)
			if err != nil || status != http.StatusCreated || again != first {
				t.Fatalf("replay: %d %s %v; want %s", status, again, err, first)
			}
			for _, effect := range []string{"orders", "charges", "emails"} {
				if n := count(t, led, effect, key); n != 1 {
					t.Errorf("%s: %d lines for %s; want exactly 1", effect, n, key)
				}
			}
		})
	}
}

// count returns the number of lines of the ledger file effect for key.
func count(t *testing.T, dir, effect, key string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, effect+".log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key+" ") {
			n++
		}
	}
	return n
}
