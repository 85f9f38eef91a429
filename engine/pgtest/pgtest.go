// Package pgtest starts real PostgreSQL servers for tests, as package
// redistest starts Redis servers.
//
// [Start] returns the URL of a new, empty database for the test, dropped
// when the test ends: a database in the server named by the environment
// variable IDEMKV_TEST_POSTGRES_URL if it is set, or else in a server of
// the test binary's own, launched at the first Start (initdb in a
// temporary directory, postgres on a free 127.0.0.1 port) and stopped by
// [Main] when the package's tests end. Without PostgreSQL it skips the
// test with a message saying what to install, so that `go test ./...`
// passes on a machine without it (unless IDEMKV_TEST_POSTGRES_REQUIRED=1,
// as in CI, makes that a failure).
//
// The server binaries are looked for on PATH and then where Debian's
// postgresql package puts them (/usr/lib/postgresql/VERSION/bin). PostgreSQL
// refuses to run as root; run as root, pgtest runs the server as the user
// postgres (which the package creates).
package pgtest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL is the environment variable that names a running server to use
// (postgres://USER@HOST:PORT/DB, a user that may create databases).
const EnvURL = "IDEMKV_TEST_POSTGRES_URL"

// EnvRequired, set to 1, makes a missing PostgreSQL fail the test instead
// of skipping it (CI sets it).
const EnvRequired = "IDEMKV_TEST_POSTGRES_REQUIRED"

// skipMessage tells how to run the skipped tests.
const skipMessage = "PostgreSQL not found: install it (apt-get install postgresql) or set " +
	EnvURL + " to a server's URL to run the PostgreSQL tests"

// Main runs the package's tests and then stops the server that Start
// launched for them, if any. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// Without it the server still ends with the test binary (it is killed
// when its parent dies, on Linux), but its directory is left behind.
func Main(m *testing.M) int {
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv != nil {
		shared.srv.shutdown()
		_ = os.RemoveAll(shared.srv.dir)
		shared.srv = nil
	}
	return code
}

// shared is the server that Start launches, one per test binary.
var shared struct {
	mu  sync.Mutex
	srv *server
	err error
	n   int // databases made
}

// Start returns the URL of a new, empty database for t, which t's cleanup
// drops.
func Start(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvURL)
	shared.mu.Lock()
	if admin == "" {
		if shared.srv == nil && shared.err == nil {
			bins, err := binaries()
			if err != nil {
				shared.mu.Unlock()
				skip(t, err)
			}
			shared.srv, shared.err = launch(bins, nil)
		}
		if shared.err != nil {
			err := shared.err
			shared.mu.Unlock()
			t.Fatalf("pgtest: %v", err)
		}
		admin = shared.srv.url("postgres")
	}
	shared.n++
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := fmt.Sprintf("idemkv_test_%d_%s", shared.n, hex.EncodeToString(b[:]))
	shared.mu.Unlock()
	dbURL, err := createDatabase(admin, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := dropDatabase(admin, name); err != nil {
			t.Logf("pgtest: %v", err)
		}
	})
	return dbURL
}

// createDatabase creates database name on the server of admin (a URL of
// a database there) and returns the URL of the new database.
func createDatabase(admin, name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", redact(admin), err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

func dropDatabase(admin, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", redact(admin), err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// redact drops the password of a URL for messages.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "the server"
}

// skip skips t, or fails it if EnvRequired is set.
func skip(t testing.TB, why error) {
	t.Helper()
	if os.Getenv(EnvRequired) == "1" {
		t.Fatalf("pgtest: %s is set, but: %s (%v)", EnvRequired, skipMessage, why)
	}
	t.Skipf("%s (%v)", skipMessage, why)
}

// bins are the server's programs.
type bins struct{ initdb, postgres string }

// binaries finds initdb and postgres: on PATH, or else in the newest
// /usr/lib/postgresql/VERSION/bin.
func binaries() (bins, error) {
	if i, err := exec.LookPath("initdb"); err == nil {
		if p, err := exec.LookPath("postgres"); err == nil {
			return bins{i, p}, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		b := bins{filepath.Join(d, "initdb"), filepath.Join(d, "postgres")}
		if isFile(b.initdb) && isFile(b.postgres) {
			return b, nil
		}
	}
	return bins{}, errors.New("no initdb and postgres on PATH or in /usr/lib/postgresql/*/bin")
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// server is a postgres process of pgtest's own.
type server struct {
	bins bins
	dir  string // holds data/ and the Unix socket
	port int
	cfg  []string
	cred *credential // nil: run as this process's user
	cmd  *exec.Cmd
}

func (s *server) url(db string) string {
	return fmt.Sprintf("postgres://idemkv@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// launch makes a new cluster in a temporary directory and starts it on a
// free port.
func launch(b bins, cfg []string) (*server, error) {
	s := &server{bins: b, cfg: cfg}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, PostgreSQL must run as another user, and there is no user postgres: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &credential{uid: uid, gid: gid}
	}
	dir, err := os.MkdirTemp("", "idemkv-pgtest-")
	if err != nil {
		return nil, err
	}
	s.dir = dir
	if s.cred != nil {
		if err := os.Chown(dir, s.cred.uid, s.cred.gid); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	initdb := exec.Command(b.initdb, "-D", filepath.Join(dir, "data"), "-U", "idemkv", "-A", "trust",
		"-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
	s.prepare(initdb)
	if out, err := initdb.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("%s: %w\n%s", b.initdb, err, out)
	}
	for attempt := 0; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		s.port = l.Addr().(*net.TCPAddr).Port
		l.Close()
		err = s.start()
		if err == nil {
			return s, nil
		}
		if attempt < 3 && strings.Contains(err.Error(), "already in use") {
			continue // the free port was taken meanwhile
		}
		_ = os.RemoveAll(dir)
		return nil, err
	}
}

// prepare makes cmd run as the server's user, in its own process group,
// and die with this process.
func (s *server) prepare(cmd *exec.Cmd) {
	cmd.Dir = s.dir
	cmd.SysProcAttr = sysProcAttr(s.cred)
}

// start starts postgres on s.port and waits until it accepts connections.
func (s *server) start() error {
	args := append([]string{
		"-D", filepath.Join(s.dir, "data"), "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + s.dir,
		"-c", "max_connections=300", "-c", "logging_collector=off",
	}, s.cfg...)
	cmd := exec.Command(s.bins.postgres, args...)
	s.prepare(cmd)
	out, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bins.postgres, err)
	}
	ready := make(chan error, 1)
	go func() {
		var log strings.Builder
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			log.WriteString(line + "\n")
			if strings.Contains(line, "ready to accept connections") {
				ready <- nil
				for sc.Scan() { // drain, so the server never blocks on its log
				}
				return
			}
		}
		ready <- fmt.Errorf("postgres exited before it was ready:\n%s", log.String())
	}()
	select {
	case err = <-ready:
	case <-time.After(30 * time.Second):
		err = fmt.Errorf("postgres on port %d not ready after 30s", s.port)
	}
	if err != nil {
		killGroup(cmd)
		return err
	}
	s.cmd = cmd
	return nil
}

// stop kills the server and every process of it (as a crash of its
// machine would), and waits for it.
func (s *server) stop() {
	if s.cmd != nil {
		killGroup(s.cmd)
		s.cmd = nil
	}
}

// shutdown stops the server as an operator would (a fast shutdown, in
// which the server ends its children), or kills it after 10 s.
func (s *server) shutdown() {
	if s.cmd == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		close(done)
	}()
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		gone := signalGroup(s.cmd)
		<-done
		gone()
	}
	s.cmd = nil
}

// Server is a PostgreSQL server of a test's own, which the test stops and
// starts again on the same address and data: for tests of what a store
// does while its database is down.
type Server struct {
	t testing.TB
	s *server
}

// Options are extra settings for a server that Launch starts.
type Options struct {
	// Config holds postgres settings as arguments, such as
	// []string{"-c", "fsync=off"}, after the defaults.
	Config []string
}

// Launch starts a Server for t, which t's cleanup stops and removes.
func Launch(t testing.TB, o *Options) *Server {
	t.Helper()
	b, err := binaries()
	if err != nil {
		skip(t, err)
	}
	var cfg []string
	if o != nil {
		cfg = o.Config
	}
	s, err := launch(b, cfg)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		s.shutdown()
		_ = os.RemoveAll(s.dir)
	})
	return &Server{t: t, s: s}
}

// URL returns the URL of database db (the server has "postgres").
func (s *Server) URL(db string) string { return s.s.url(db) }

// Stop kills the server (as a crash would) and waits for it to exit.
func (s *Server) Stop() { s.s.stop() }

// Start starts the server again on its address and data.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.s.start(); err != nil {
		s.t.Fatalf("pgtest: restart: %v", err)
	}
}
