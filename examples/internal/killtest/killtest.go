// Package killtest runs an example server as a process of its own, so
// that its tests can kill it with SIGKILL at any moment and start it
// again, as a crash would.
package killtest

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

// Build builds the example in the current directory and returns the
// binary's path.
func Build(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "example")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// Server is a running example.
type Server struct {
	cmd  *exec.Cmd
	Addr string // http://HOST:PORT
	done chan error
}

// Start starts bin with args and waits for the line with which the
// examples announce their address, "NAME on http://HOST:PORT"; t's
// cleanup kills it.
func Start(t testing.TB, bin string, args ...string) *Server {
	t.Helper()
	s := &Server{cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	s.cmd.Stderr = os.Stderr
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	sc := bufio.NewScanner(out)
	line := ""
	if sc.Scan() {
		line = sc.Text()
	}
	_, addr, ok := strings.Cut(line, " on ")
	if !ok || !strings.HasPrefix(addr, "http://") {
		t.Fatalf("the server did not start: %q", line)
	}
	s.Addr = addr
	go func() {
		_, _ = io.Copy(io.Discard, out)
		s.done <- s.cmd.Wait()
	}()
	return s
}

// Wait waits for a server that is to kill itself.
func (s *Server) Wait(t testing.TB) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not exit")
	}
}

// Kill kills the server with SIGKILL.
func (s *Server) Kill() { _ = s.cmd.Process.Kill() }

// Post sends body to addr+path with an API key and an idempotency key,
// and returns the answer.
func Post(addr, path, key, body string) (status int, answer string, h http.Header, err error) {
	req, err := http.NewRequest("POST", addr+path, strings.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Authorization", "Bearer sk_test_1")
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header, err
}
