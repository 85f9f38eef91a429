package main

import (
	"bufio"

	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCrashBetweenPhases kills the server (SIGKILL, from inside, right
// after it recorded a recovery point) after each phase in turn — and
// after two phases in two successive crashes — then retries the request
// on a restarted server: every phase's side effect must have happened
// exactly once, and the final response must replay.
func TestCrashBetweenPhases(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "payments")
	if out, err := execGo("build", "-o", bin, "."); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
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
				if status, body, err := post(srv.addr, key); err == nil {
					t.Fatalf("crash after %s: the request was answered: %d %s", phase, status, body)
				}
				srv.wait(t)
			}
			srv := startServer(t, bin, data, led, "")
			defer srv.stop()
			status, first, err := post(srv.addr, key)
			if err != nil || status != http.StatusCreated {
				t.Fatalf("retry after the crashes: %d %s %v", status, first, err)
			}
			status, again, err := post(srv.addr, key)
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

type server struct {
	cmd  *exec.Cmd
	addr string
	done chan error
}

func startServer(t *testing.T, bin, data, led, crashAfter string) *server {
	t.Helper()
	args := []string{"-listen", "127.0.0.1:0", "-data", data, "-ledger", led}
	if crashAfter != "" {
		args = append(args, "-crash-after", crashAfter)
	}
	s := &server{cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	s.cmd.Stderr = os.Stderr
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "payments on ") {
		t.Fatalf("the server did not start: %q", sc.Text())
	}
	s.addr = strings.TrimPrefix(sc.Text(), "payments on ")
	go func() {
		_, _ = io.Copy(io.Discard, out)
		s.done <- s.cmd.Wait()
	}()
	return s
}

// wait waits for a server that is to kill itself.
func (s *server) wait(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not crash")
	}
}

func (s *server) stop() { _ = s.cmd.Process.Kill() }

func post(addr, key string) (int, string, error) {
	req, _ := http.NewRequest("POST", addr+"/v1/payments", strings.NewReader(`{"amount":1200}`))
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
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

// execGo runs the go command.
func execGo(args ...string) ([]byte, error) {
	return exec.Command("go", args...).CombinedOutput()
}
