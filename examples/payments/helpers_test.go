package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

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
	req.Header.Set("Authorization", "Bearer sk_test_1")
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

// execGo runs the go command.
func execGo(args ...string) ([]byte, error) {
	return exec.Command("go", args...).CombinedOutput()
}
