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
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return "", err
		}
		args := append([]string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no", "--protected-mode", "yes",
		}, cfg...)
		cmd := exec.Command(bin, args...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			return "", err
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			return "", fmt.Errorf("start %s: %w", bin, err)
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
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		select {
		case err = <-ready:
		case <-time.After(10 * time.Second):
			err = fmt.Errorf("redis-server on %s not ready after 10s", addr)
		}
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if attempt < 3 && strings.Contains(err.Error(), "Address already in use") {
				continue // the free port was taken meanwhile
			}
			return "", err
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		return addr, nil
	}
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
