// Package redistest starts real Redis servers for tests, as net/http's
// httptest starts real HTTP servers.
//
// [Start] returns the URL of a server for the test: the one named by the
// environment variable IDEMKV_TEST_REDIS_URL if it is set (CI starts one),
// or else a redis-server process of its own on a free 127.0.0.1 port and
// a temporary directory, stopped when the test ends. Without either it
// skips the test with a message saying what to install, so that
// `go test ./...` passes on a machine without Redis (unless
// IDEMKV_TEST_REDIS_REQUIRED=1, as in CI, makes that a failure).
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// EnvURL is the environment variable that names a running server to use.
const EnvURL = "IDEMKV_TEST_REDIS_URL"

// EnvRequired, set to 1, makes a missing redis-server fail the test
// instead of skipping it (CI sets it).
const EnvRequired = "IDEMKV_TEST_REDIS_REQUIRED"

// skipMessage tells how to run the skipped tests.
const skipMessage = "redis-server not found: install it (apt-get install redis-server) or set " +
	EnvURL + " to a server's URL to run the Redis tests"

// Options are extra settings for a server that Start launches.
type Options struct {
	// Config holds redis-server arguments, such as
	// []string{"--appendonly", "no"}, after the defaults: an append-only
	// file fsynced every second (as a production server would run, and
	// as redisstore.Open requires), no RDB snapshots.
	Config []string
}

// Start returns the URL (redis://127.0.0.1:PORT/0) of a Redis server for
// t. A server named by IDEMKV_TEST_REDIS_URL is shared and not flushed:
// tests must use keys of their own. o applies only to a server Start
// launches; nil means the defaults.
func Start(t testing.TB, o *Options) string {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" && o == nil {
		return u
	}
	bin := serverBinary(t)
	var cfg []string
	if o != nil {
		cfg = o.Config
	}
	addr, err := launch(t, bin, t.TempDir(), cfg)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return "redis://" + addr + "/0"
}

// serverBinary returns the path of redis-server, or skips t (fails it if
// EnvRequired is set) when there is none.
func serverBinary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(EnvRequired) == "1" {
			t.Fatalf("redistest: %s is set, but: %s", EnvRequired, skipMessage)
		}
		t.Skip(skipMessage)
	}
	return bin
}

// launch starts redis-server in dir on a free port and waits until it
// accepts connections; the test's cleanup stops it.
func launch(t testing.TB, bin, dir string, cfg []string) (string, error) {
	addr, cmd, err := launchCmd(bin, dir, cfg)
	if err != nil {
		return "", err
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return addr, nil
}

// launchCmd starts redis-server in dir on a free port and waits until it
// accepts connections.
func launchCmd(bin, dir string, cfg []string) (string, *exec.Cmd, error) {
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return "", nil, err
		}
		cmd, err := startOn(bin, dir, port, cfg)
		if err != nil {
			if attempt < 3 && strings.Contains(err.Error(), "Address already in use") {
				continue // the free port was taken meanwhile
			}
			return "", nil, err
		}
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd, nil
	}
}

// startOn starts redis-server in dir on port and waits until it accepts
// connections.
func startOn(bin, dir string, port int, cfg []string) (*exec.Cmd, error) {
	args := append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no", "--protected-mode", "yes",
	}, cfg...)
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	ready := make(chan error, 1)
	go func() {
		var log strings.Builder
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			log.WriteString(line + "\n")
			if strings.Contains(line, "Ready to accept connections") {
				ready <- nil
				for sc.Scan() { // drain, so the server never blocks on its log
				}
				return
			}
		}
		ready <- fmt.Errorf("redis-server exited before it was ready:\n%s", log.String())
	}()
	select {
	case err = <-ready:
	case <-time.After(10 * time.Second):
		err = fmt.Errorf("redis-server on port %d not ready after 10s", port)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	return cmd, nil
}

// Server is a redis-server that a test stops and starts again, on the
// same address and data directory: for tests of what a client does while
// its Redis is down.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	cfg  []string
	cmd  *exec.Cmd
}

// Launch starts a Server for t (never a shared one: it is stopped), which
// t's cleanup stops.
func Launch(t testing.TB, o *Options) *Server {
	t.Helper()
	s := &Server{t: t, bin: serverBinary(t), dir: t.TempDir()}
	if o != nil {
		s.cfg = o.Config
	}
	addr, cmd, err := launchCmd(s.bin, s.dir, s.cfg)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	_, port, _ := net.SplitHostPort(addr)
	s.port, _ = strconv.Atoi(port)
	s.cmd = cmd
	t.Cleanup(s.Stop)
	return s
}

// URL is the server's redis://127.0.0.1:PORT/0.
func (s *Server) URL() string { return "redis://127.0.0.1:" + strconv.Itoa(s.port) + "/0" }

// Stop kills the server (as a crash would) and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Start starts the server again on its address and data directory.
func (s *Server) Start() {
	s.t.Helper()
	cmd, err := startOn(s.bin, s.dir, s.port, s.cfg)
	if err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
	s.cmd = cmd
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
