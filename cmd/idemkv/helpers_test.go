package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// runCmd runs idemkv with args in this process and returns its exit code
// and what it wrote to standard output and standard error.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	dir := t.TempDir()
	outF, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	errF, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = outF, errF
	code = run(args)
	os.Stdout, os.Stderr = oldOut, oldErr
	outF.Close()
	errF.Close()
	o, _ := os.ReadFile(outF.Name())
	e, _ := os.ReadFile(errF.Name())
	return code, string(o), string(e)
}

// buildIdemkv builds the command once per test binary.
var buildIdemkv = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "idemkv-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "idemkv")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// process is a running idemkv command.
type process struct {
	cmd    *exec.Cmd
	addr   string // http://host:port
	admin  string // of the admin listener, if any
	stderr *lockedBuffer
	done   chan error
}

var (
	addrRE  = regexp.MustCompile(`^idemkv .* on (http://127\.0\.0\.1:\d+)`)
	adminRE = regexp.MustCompile(`^admin on (http://127\.0\.0\.1:\d+)`)
)

// lockedBuffer collects a process's stderr while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs idemkv with args and waits for the line naming its address.
func start(t *testing.T, args ...string) *process {
	t.Helper()
	bin, err := buildIdemkv()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: exec.Command(bin, args...), stderr: &lockedBuffer{}, done: make(chan error, 1)}
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		for range lines {
		}
	})
	deadline := time.After(30 * time.Second)
	for p.addr == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("idemkv %v exited before listening; stderr:\n%s", args, p.stderr)
			}
			if m := adminRE.FindStringSubmatch(line); m != nil {
				p.admin = m[1]
			}
			if m := addrRE.FindStringSubmatch(line); m != nil {
				p.addr = m[1]
			}
		case <-deadline:
			t.Fatalf("idemkv %v did not start; stderr:\n%s", args, p.stderr)
		}
	}
	go func() {
		for range lines {
		}
	}()
	return p
}

// stop sends SIGTERM and returns the exit error.
func (p *process) stop(t *testing.T) error {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit after SIGTERM; stderr:\n%s", p.stderr)
		return nil
	}
}

// send sends a JSON request as tenant "Bearer sk_test" with key (none if
// "") and the header pairs hdr (a pair with value "" removes the header).
func send(t *testing.T, method, url, key, body string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer sk_test")
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// quietLogger drops Pebble's chatter.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Errorf(string, ...any)          {}
func (quietLogger) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }

// waitFor polls cond every 10 ms for up to 10 s, and fails t if it never
// holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
