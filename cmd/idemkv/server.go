package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
)

// serverFlags are the flags that serve and proxy share.
type serverFlags struct {
	listen, admin, data string
	ttl                 time.Duration
	durability          engine.Durability
	scopeHeader         string
	shutdownTimeout     time.Duration
	maxHeaderBytes      int
}

func (f *serverFlags) register(fs *flag.FlagSet, listen string) {
	fs.StringVar(&f.listen, "listen", listen, "`address` to serve on")
	fs.StringVar(&f.admin, "admin", "", "`address` of an admin listener serving /healthz and /metrics (Prometheus text); off if empty")
	fs.StringVar(&f.data, "data", "./idemkv-data", "data `directory` (created if missing)")
	fs.DurationVar(&f.ttl, "ttl", 24*time.Hour, "how long a completed response is replayed, from its completion")
	fs.Func("durability", "`mode`: synced (fsync before a response is sent) or relaxed (fsync every 100ms) (default synced)",
		func(s string) (err error) {
			f.durability, err = engine.ParseDurability(s)
			return err
		})
	fs.StringVar(&f.scopeHeader, "scope-header", "Authorization", "request `header` that names the tenant (stored as a SHA-256 digest)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long SIGINT/SIGTERM waits for requests in flight")
	fs.IntVar(&f.maxHeaderBytes, "max-header-bytes", 64<<10, "largest request header block accepted, in `bytes`; larger requests get 431")
}

// server is a running serve or proxy command.
type server struct {
	flags  *serverFlags
	logger *slog.Logger
	eng    *engine.Engine
	idem   *idemhttp.Middleware
}

// openServer opens the engine and builds the middleware.
func openServer(f *serverFlags, o *idemhttp.Options) (*server, error) {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	eng, err := engine.Open(f.data, &engine.Options{TTL: f.ttl, Durability: f.durability, Logger: logger})
	if err != nil {
		return nil, err
	}
	if o == nil {
		o = &idemhttp.Options{}
	}
	o.ScopeHeader = f.scopeHeader
	o.Logger = logger
	m, err := idemhttp.New(eng, o)
	if err != nil {
		eng.Close()
		return nil, err
	}
	return &server{flags: f, logger: logger, eng: eng, idem: m}, nil
}

// run serves h until SIGINT or SIGTERM, then shuts down gracefully:
// it stops accepting, waits for the requests in flight (their responses
// are recorded before they are sent), and closes the engine, which
// fsyncs. ready, if set, is called with the bound address.
func (s *server) run(h http.Handler, ready func(addr string)) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", s.flags.listen)
	if err != nil {
		s.eng.Close()
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: s.flags.maxHeaderBytes, ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn)}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()

	var adminSrv *http.Server
	var stopping atomic.Bool
	if s.flags.admin != "" {
		aln, err := net.Listen("tcp", s.flags.admin)
		if err != nil {
			srv.Close()
			s.eng.Close()
			return fmt.Errorf("admin listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
			if stopping.Load() {
				http.Error(w, "shutting down", http.StatusServiceUnavailable)
				return
			}
			if err := s.eng.Err(); err != nil {
				// The engine stopped after a storage failure: restart the
				// process once the disk is fixed.
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		mux.Handle("GET /metrics", idemhttp.MetricsHandler(s.idem, s.eng.Stats))
		adminSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- adminSrv.Serve(aln) }()
		fmt.Printf("admin on http://%s (/healthz, /metrics)\n", aln.Addr())
	}
	s.logger.Info("listening", "addr", ln.Addr().String(), "data", s.flags.data)
	if ready != nil {
		ready(ln.Addr().String())
	}

	var serveErr error
	select {
	case <-ctx.Done():
		s.logger.Info("shutting down: waiting for requests in flight", "timeout", s.flags.shutdownTimeout)
	case serveErr = <-errc:
	}
	stopping.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), s.flags.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.logger.Warn("shutdown: requests still in flight were cut off", "err", err)
	}
	if adminSrv != nil {
		adminSrv.Shutdown(sctx)
	}
	if err := s.eng.Close(); err != nil {
		return fmt.Errorf("closing the engine: %w", err)
	}
	s.logger.Info("stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}
