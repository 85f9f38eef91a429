package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemadmin"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/idemprom"
	"github.com/idemkv/idemkv/engine/pgstore"
	"github.com/idemkv/idemkv/engine/redisstore"
)

// serverFlags are the flags that serve and proxy share.
type serverFlags struct {
	listen, admin, data string
	redisURL            string
	ttl                 time.Duration
	durability          engine.Durability
	scopeHeader         string
	shutdownTimeout     time.Duration
	maxHeaderBytes      int
	// The middleware's memory limits (idemhttp.Options).
	maxBufferedBytes             int64
	maxWaiters, maxWaitersPerKey int
	// The listener's timeouts (see http.Server): a client that trickles
	// its headers or body, reads its response slowly, or holds an idle
	// connection does not hold a connection, a goroutine and a buffered
	// body for ever.
	readHeaderTimeout, readTimeout, writeTimeout, idleTimeout time.Duration
	redisNoPersistence                                        bool
	redisLayout                                               int
	anonymous                                                 idemhttp.AnonymousPolicy
	scopeCookie                                               string
	scopeSecretFile, previousScopeSecretFile                  string
	fingerprintExclude                                        []string
	routeTTL                                                  map[string]time.Duration
	// Logging: the format and level of the server's log, and an access
	// log line per request the middleware handles.
	logFormat string
	logLevel  slog.Level
	accessLog bool
	// More of the middleware's options (idemhttp.Options).
	storedHeaders  []string
	canonicalJSON  bool
	conflictStatus int
	inProgress     idemhttp.InProgressPolicy
	waitTimeout    time.Duration
	redisFile      string
	// -postgres: the PostgreSQL store (or its URL's file).
	postgresURL, postgresFile string
	postgresNoMigrate         bool
	lease                     time.Duration
	// The admin API's bearer token (or its file).
	adminToken, adminTokenFile string
}

func (f *serverFlags) register(fs *flag.FlagSet, listen string) {
	fs.StringVar(&f.listen, "listen", listen, "`address` to serve on")
	fs.StringVar(&f.admin, "admin", "", "`address` of an admin listener: /healthz, /readyz, /metrics (Prometheus) and the admin API under /admin/ (see -admin-token); off if empty")
	fs.StringVar(&f.data, "data", "./idemkv-data", "data `directory` (created if missing)")
	fs.StringVar(&f.redisURL, "redis", "", "keep records in Redis at `URL` instead of the data directory, for many replicas: redis://host:port/db, or redis+cluster://host:port?addr=host2:port&addr=host3:port")
	fs.IntVar(&f.redisLayout, "redis-layout", 2, "the layout new -redis records are written in: 2, one string each; or 1, the hashes of versions before it, for a rolling upgrade from them (both are read)")
	fs.BoolVar(&f.redisNoPersistence, "redis-no-persistence", false, "accept a -redis server that persists nothing (no AOF, no RDB): a restart of it then forgets every record, and every retry runs its handler again")
	fs.DurationVar(&f.ttl, "ttl", 24*time.Hour, "how long a completed response is replayed, from its completion")
	fs.DurationVar(&f.lease, "lease", 0, "how long the key of a request whose process died (kill -9, a crash) stays held before a retry may run it again; with -redis and -postgres, a running request renews it (default: the store's, 5m for a data directory, 30s for -redis and -postgres)")
	fs.Func("durability", "`mode`: synced (fsync before a response is sent) or relaxed (respond first, fsync in the background at once) (default synced)",
		func(s string) (err error) {
			f.durability, err = engine.ParseDurability(s)
			return err
		})
	fs.StringVar(&f.scopeHeader, "scope-header", "Authorization", "request `header` that names the tenant (stored as a digest keyed with the scope secret)")
	fs.StringVar(&f.scopeSecretFile, "scope-secret-file", "", "read the scope secret (what tenant credentials are digested with; at least 16 bytes, surrounding blanks and newlines trimmed) from `file`, instead of the environment variable "+scopeSecretEnv+"; required with -redis, the same on every replica; default for a data directory: its own "+engine.ScopeSecretFile+" file")
	fs.StringVar(&f.previousScopeSecretFile, "previous-scope-secret-file", "", "during a rotation, the old scope secret's `file` (or "+previousScopeSecretEnv+"): records stored under it are still found; keep it for one TTL after every replica has the new secret")
	fs.StringVar(&f.scopeCookie, "scope-cookie", "", "name the tenant by this session `cookie` instead of -scope-header (stored as a digest), for APIs with cookie sessions")
	fs.Func("anonymous", "what a request with a key but no tenant credential gets: `refuse` (400 idempotency_scope_missing), pass (run without idempotency) or shared (one scope for all such clients: one can replay another's response; warns at start) (default refuse)",
		func(s string) error {
			switch s {
			case "refuse":
				f.anonymous = idemhttp.RefuseAnonymous
			case "pass":
				f.anonymous = idemhttp.PassAnonymous
			case "shared":
				f.anonymous = idemhttp.ShareAnonymous
			default:
				return fmt.Errorf("want refuse, pass or shared, got %q", s)
			}
			return nil
		})
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long SIGINT/SIGTERM waits for requests in flight")
	fs.Func("fingerprint-exclude", "JSON `fields` (comma-separated; dotted paths for nested ones, e.g. requested_at,meta.trace_id) left out of a request's fingerprint, so that a retry differing only in them replays; repeatable",
		func(v string) error {
			for _, name := range strings.Split(v, ",") {
				if name = strings.TrimSpace(name); name != "" {
					f.fingerprintExclude = append(f.fingerprintExclude, name)
				}
			}
			return nil
		})
	fs.Func("route-ttl", "how long the responses of one endpoint are replayed, as `'METHOD /route=DURATION'` (the endpoint as stored: the method and the -route pattern, or the path), instead of -ttl (at most it); repeatable",
		func(v string) error {
			endpoint, dur, ok := strings.Cut(v, "=")
			d, err := time.ParseDuration(strings.TrimSpace(dur))
			if !ok || err != nil || d <= 0 {
				return errors.New("want 'METHOD /route=DURATION', for example 'POST /v1/sessions=10m'")
			}
			if f.routeTTL == nil {
				f.routeTTL = map[string]time.Duration{}
			}
			f.routeTTL[strings.TrimSpace(endpoint)] = d
			return nil
		})
	fs.Int64Var(&f.maxBufferedBytes, "max-buffered-bytes", idemhttp.DefaultMaxBufferedBytes, "memory for request bodies held at once, in `bytes` (running, and waiting for a duplicate); a request whose body does not fit gets 503 idempotency_overloaded with Retry-After; -1: no limit")
	fs.IntVar(&f.maxWaiters, "max-waiters", idemhttp.DefaultMaxWaiters, "duplicates that may wait at once for running requests (`n`); one more gets 409 idempotency_request_in_progress with Retry-After; -1: no limit")
	fs.IntVar(&f.maxWaitersPerKey, "max-waiters-per-key", idemhttp.DefaultMaxWaitersPerKey, "duplicates that may wait at once for one key (`n`); -1: no limit")
	fs.IntVar(&f.maxHeaderBytes, "max-header-bytes", 64<<10, "largest request header block accepted, in `bytes`; larger requests get 431")
	fs.DurationVar(&f.readHeaderTimeout, "read-header-timeout", 10*time.Second, "how long a client may take to send a request's headers")
	fs.DurationVar(&f.readTimeout, "read-timeout", time.Minute, "how long a client may take to send a whole request, body included")
	fs.DurationVar(&f.writeTimeout, "write-timeout", 2*time.Minute, "how long a request may take from the end of its headers to the end of its response (the handler or upstream included; a retry replays a response recorded after it); 0: no limit")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 2*time.Minute, "how long an idle keep-alive connection is kept open")
	fs.Func("log-format", "`format` of the log on standard error: text or json (default text)", func(v string) error {
		if v != "text" && v != "json" {
			return fmt.Errorf("want text or json, got %q", v)
		}
		f.logFormat = v
		return nil
	})
	fs.TextVar(&f.logLevel, "log-level", slog.LevelInfo, "least `level` logged: debug, info, warn or error")
	fs.Func("stored-header", "response `header` recorded and replayed beside the default ones (Content-Type, Location, ETag, X-Request-Id...); comma-separated, repeatable", func(v string) error {
		for _, h := range strings.Split(v, ",") {
			if h = strings.TrimSpace(h); h != "" {
				f.storedHeaders = append(f.storedHeaders, h)
			}
		}
		return nil
	})
	fs.BoolVar(&f.canonicalJSON, "canonical-json", false, "fingerprint JSON bodies ignoring whitespace and the order of object keys")
	fs.IntVar(&f.conflictStatus, "conflict-status", 409, "`status` of the answer to a key reused with another request (409 or 422)")
	fs.Func("in-progress", "what a duplicate gets while the first request runs: `wait` for it and get its response (bounded by -wait-timeout), or reject (409 idempotency_request_in_progress with Retry-After at once) (default wait)", func(v string) error {
		switch v {
		case "wait":
			f.inProgress = idemhttp.WaitForOriginal
		case "reject":
			f.inProgress = idemhttp.RejectInProgress
		default:
			return fmt.Errorf("want wait or reject, got %q", v)
		}
		return nil
	})
	fs.DurationVar(&f.waitTimeout, "wait-timeout", idemhttp.DefaultWaitTimeout, "how long a duplicate waits for the running request before it gets 409 in progress")
	fs.StringVar(&f.redisFile, "redis-file", "", "read the -redis URL (which may hold a password) from `file`, so that it is not on the command line")
	fs.StringVar(&f.postgresURL, "postgres", "", "keep records in PostgreSQL at `URL` (postgres://user:password@host:port/db) instead of the data directory, for many replicas: the table idemkv_records, created on first use (see idemkv migrate)")
	fs.StringVar(&f.postgresFile, "postgres-file", "", "read the -postgres URL (which may hold a password) from `file`, so that it is not on the command line")
	fs.BoolVar(&f.postgresNoMigrate, "postgres-no-migrate", false, "do not create or upgrade the -postgres schema (the role may lack the right): check it, and refuse to start if idemkv migrate has not been run")
	fs.StringVar(&f.adminToken, "admin-token", "", "bearer `token` that every admin path but /healthz and /readyz requires (the admin API under /admin/, /metrics); required when -admin listens beyond loopback; better from the environment or -admin-token-file")
	fs.StringVar(&f.adminTokenFile, "admin-token-file", "", "read -admin-token from `file`")
	fs.BoolVar(&f.accessLog, "access-log", false, "log one line per request the middleware handles (outcome, endpoint, key, request ids, status, recorded, attempt, duration), at level info")
}

// newLogger returns the server's logger, as -log-format and -log-level
// say.
func (f *serverFlags) newLogger() *slog.Logger {
	o := &slog.HandlerOptions{Level: f.logLevel}
	if f.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, o))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, o))
}

// accessLog returns the OnOutcome hook that writes the access log.
func accessLog(logger *slog.Logger) func(context.Context, idemhttp.Event) {
	return func(ctx context.Context, e idemhttp.Event) {
		attrs := []slog.Attr{
			slog.String("outcome", string(e.Outcome)), slog.String("endpoint", e.Endpoint),
			slog.Int("status", e.Status), slog.Float64("duration_ms", float64(e.Duration.Microseconds())/1000),
		}
		if e.Key != "" {
			attrs = append(attrs, slog.String("key", e.Key))
		}
		if e.RequestID != "" {
			attrs = append(attrs, slog.String("request_id", e.RequestID))
		}
		if e.OriginalRequestID != "" {
			attrs = append(attrs, slog.String("original_request_id", e.OriginalRequestID))
		}
		if e.Outcome == idemhttp.OutcomeProceed {
			attrs = append(attrs, slog.Bool("recorded", e.Recorded), slog.Int("attempt", int(e.Attempt)))
			if e.Recovered {
				attrs = append(attrs, slog.Bool("recovered", true))
			}
		}
		if e.Err != nil {
			attrs = append(attrs, slog.String("err", e.Err.Error()))
		}
		logger.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
	}
}

// server is a running serve or proxy command.
type server struct {
	flags  *serverFlags
	logger *slog.Logger
	store  store
	idem   *idemhttp.Middleware
	where  string // where the records are: the data directory, or Redis
}

// store is what the commands need of a store: the embedded engine, or the
// Redis store with -redis.
type store = engine.Store

// openStore opens the store the flags name.
func openStore(f *serverFlags, logger *slog.Logger) (store, string, error) {
	if err := urlFromFile("redis", &f.redisURL, f.redisFile); err != nil {
		return nil, "", err
	}
	if err := urlFromFile("postgres", &f.postgresURL, f.postgresFile); err != nil {
		return nil, "", err
	}
	if f.redisURL != "" && f.postgresURL != "" {
		return nil, "", errors.New("give -redis or -postgres, not both")
	}
	secret, err := readSecret(f.scopeSecretFile, scopeSecretEnv)
	if err != nil {
		return nil, "", err
	}
	previous, err := readSecret(f.previousScopeSecretFile, previousScopeSecretEnv)
	if err != nil {
		return nil, "", err
	}
	var previousList [][]byte
	if previous != nil {
		previousList = [][]byte{previous}
	}
	if (f.redisURL != "" || f.postgresURL != "") && secret == nil {
		flag := "-redis"
		if f.postgresURL != "" {
			flag = "-postgres"
		}
		return nil, "", fmt.Errorf("%s needs a scope secret, the same on every replica: set %s or give -scope-secret-file (what credentials are digested with; at least %d bytes)", flag, scopeSecretEnv, engine.MinScopeSecretLen)
	}
	if f.postgresURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := pgstore.Open(ctx, f.postgresURL, &pgstore.Options{TTL: f.ttl, Lease: f.lease, NoMigrate: f.postgresNoMigrate,
			ScopeSecret: secret, PreviousScopeSecrets: previousList})
		if err != nil {
			return nil, "", err
		}
		return st, redactURL(f.postgresURL), nil
	}
	if f.redisURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if secret == nil {
			return nil, "", fmt.Errorf("-redis needs a scope secret, the same on every replica: set %s or give -scope-secret-file (what credentials are digested with; at least %d bytes)", scopeSecretEnv, engine.MinScopeSecretLen)
		}
		st, err := redisstore.Open(ctx, f.redisURL, &redisstore.Options{TTL: f.ttl, Lease: f.lease, AllowNoPersistence: f.redisNoPersistence,
			ScopeSecret: secret, PreviousScopeSecrets: previousList, Layout: f.redisLayout})
		if errors.Is(err, redisstore.ErrNoPersistence) {
			return nil, "", fmt.Errorf("%w; turn on appendonly (or save points) on the server, or accept it with -redis-no-persistence", err)
		}
		if err != nil {
			return nil, "", err
		}
		if f.redisNoPersistence {
			if err := st.CheckPersistence(ctx); errors.Is(err, redisstore.ErrNoPersistence) {
				logger.Warn("Redis persists nothing (-redis-no-persistence): a restart of it forgets every record, and every retry then runs its handler again", "redis", redactURL(f.redisURL))
			}
		}
		return st, redactURL(f.redisURL), nil
	}
	if _, err := os.Stat(f.data); errors.Is(err, os.ErrNotExist) {
		// Not silent: after a lost or removed directory this is where the
		// operator learns that the records are gone.
		logger.Warn("the data directory does not exist: creating a new, empty one (if it held records before, they are not here)", "dir", f.data)
	}
	eng, err := engine.Open(f.data, &engine.Options{TTL: f.ttl, Lease: f.lease, Durability: f.durability, Logger: logger,
		ScopeSecret: secret, PreviousScopeSecrets: previousList})
	if err != nil {
		return nil, "", err
	}
	return eng, f.data, nil
}

// The environment variables that give the scope secrets (see
// -scope-secret-file).
const (
	scopeSecretEnv         = "IDEMKV_SCOPE_SECRET"
	previousScopeSecretEnv = "IDEMKV_PREVIOUS_SCOPE_SECRET"
)

// readSecret reads a scope secret from file, or else from the
// environment variable env; nil if neither is set. Blanks and newlines
// around it are trimmed; a secret is never logged.
func readSecret(file, env string) ([]byte, error) {
	v, fromEnv := os.LookupEnv(env)
	var b []byte
	switch {
	case file != "" && fromEnv && v != "":
		return nil, fmt.Errorf("both %s and a secret file are set: give one", env)
	case file != "":
		var err error
		if b, err = os.ReadFile(file); err != nil {
			return nil, fmt.Errorf("reading the scope secret: %w", err)
		}
	case v != "":
		b = []byte(v)
	default:
		return nil, nil
	}
	b = bytes.TrimSpace(b)
	if len(b) < engine.MinScopeSecretLen {
		return nil, fmt.Errorf("the scope secret has %d bytes; it needs at least %d (for example 32 random bytes in hex: openssl rand -hex 32)", len(b), engine.MinScopeSecretLen)
	}
	return b, nil
}

// urlFromFile reads the URL of -name from file, if given (a URL may hold
// a password, which a command line shows to every user of the machine).
func urlFromFile(name string, u *string, file string) error {
	if file == "" {
		return nil
	}
	if *u != "" {
		return fmt.Errorf("give -%s or -%s-file, not both", name, name)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("-%s-file: %w", name, err)
	}
	*u = strings.TrimSpace(string(b))
	return nil
}

// redactURL hides a password in a store's URL, for logs.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "the store's URL"
	}
	return p.Redacted()
}

// openServer opens the store and builds the middleware.
func openServer(f *serverFlags, o *idemhttp.Options) (*server, error) {
	logger := f.newLogger()
	eng, where, err := openStore(f, logger)
	if err != nil {
		return nil, err
	}
	logger = logger.With("store", where)
	if o == nil {
		o = &idemhttp.Options{}
	}
	o.ScopeHeader = f.scopeHeader
	o.ScopeCookie = f.scopeCookie
	o.Anonymous = f.anonymous
	o.MaxBufferedBytes, o.MaxWaiters, o.MaxWaitersPerKey = f.maxBufferedBytes, f.maxWaiters, f.maxWaitersPerKey
	o.FingerprintExclude = f.fingerprintExclude
	o.RouteTTL = f.routeTTL
	o.StoredHeaders = f.storedHeaders
	o.CanonicalJSON = f.canonicalJSON
	o.ConflictStatus = f.conflictStatus
	o.WhenInProgress = f.inProgress
	o.WaitTimeout = f.waitTimeout
	o.Logger = logger
	if f.accessLog {
		o.OnOutcome = accessLog(logger.WithGroup("access"))
	}
	m, err := idemhttp.New(eng, o)
	if err != nil {
		eng.Close()
		return nil, err
	}
	return &server{flags: f, logger: logger, store: eng, idem: m, where: where}, nil
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
		s.store.Close()
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.flags.readHeaderTimeout,
		ReadTimeout:       s.flags.readTimeout,
		WriteTimeout:      s.flags.writeTimeout,
		IdleTimeout:       s.flags.idleTimeout,
		MaxHeaderBytes:    s.flags.maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()

	var adminSrv *http.Server
	var stopping atomic.Bool
	if s.flags.admin != "" {
		token, err := s.flags.readAdminToken()
		if err != nil {
			srv.Close()
			s.store.Close()
			return err
		}
		aln, err := net.Listen("tcp", s.flags.admin)
		if err != nil {
			srv.Close()
			s.store.Close()
			return fmt.Errorf("admin listener: %w", err)
		}
		if token == "" && !loopbackOnly(aln.Addr()) {
			aln.Close()
			srv.Close()
			s.store.Close()
			return fmt.Errorf("-admin %s listens beyond loopback: give -admin-token (or %s, or -admin-token-file), which its paths but /healthz and /readyz then require", s.flags.admin, envName("admin-token"))
		}
		mux := http.NewServeMux()
		s.adminRoutes(mux, &stopping, token)
		status := idemadmin.NewStatus(s.store, s.idem, token)
		go status.Run(ctx)
		mux.Handle("GET /{$}", status)
		adminSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
		go func() { errc <- adminSrv.Serve(aln) }()
		fmt.Printf("admin on http://%s (the status page at /; /healthz, /readyz, /metrics, /admin/)\n", aln.Addr())
	}
	s.logger.Info("listening", "addr", ln.Addr().String())
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
	if err := s.store.Health(sctx); errors.Is(err, engine.ErrFailed) {
		// Exit with an error, so that a supervisor sees the failure.
		s.store.Close()
		return fmt.Errorf("the store had stopped: %w", err)
	}
	if err := s.store.Close(); err != nil {
		return fmt.Errorf("closing the engine: %w", err)
	}
	s.logger.Info("stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// adminRoutes serves the admin listener's health checks and metrics:
//
//	/healthz  liveness: 503 while shutting down, or once the store has
//	          failed for good (the embedded engine stopped after a storage
//	          failure: restart the process once the disk is fixed); a
//	          store that is only unreachable (Redis down) is not a reason
//	          to restart, and stays 200
//	/readyz   readiness: 503 while shutting down, or if the store does not
//	          answer within two seconds (Redis down or slow, the engine
//	          failed or closed)
//	/metrics  a Prometheus registry: the Go runtime's and the process's
//	          metrics, the middleware's and the store's (package idemprom)
func (s *server) adminRoutes(mux *http.ServeMux, stopping *atomic.Bool, token string) {
	health := func(w http.ResponseWriter, r *http.Request, fatalOnly bool) {
		if stopping.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		hctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		err := s.store.Health(hctx)
		if err != nil && (!fatalOnly || errors.Is(err, engine.ErrFailed) || errors.Is(err, engine.ErrClosed)) {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { health(w, r, true) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { health(w, r, false) })
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		idemprom.NewCollector(s.idem, s.store))
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	mux.Handle("GET /metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !idemadmin.Authorized(r, token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="idemkv admin"`)
			http.Error(w, "this path needs Authorization: Bearer <admin token>", http.StatusUnauthorized)
			return
		}
		metrics.ServeHTTP(w, r)
	}))
	mux.Handle("/admin/", http.StripPrefix("/admin", idemadmin.Handler(s.store, &idemadmin.Options{Token: token, Scope: s.idem.ScopeOf})))
}

// readAdminToken returns the admin token of -admin-token or
// -admin-token-file ("" if neither).
func (f *serverFlags) readAdminToken() (string, error) {
	if f.adminTokenFile == "" {
		return f.adminToken, nil
	}
	if f.adminToken != "" {
		return "", errors.New("give -admin-token or -admin-token-file, not both")
	}
	b, err := os.ReadFile(f.adminTokenFile)
	if err != nil {
		return "", fmt.Errorf("-admin-token-file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", errors.New("-admin-token-file: the file is empty")
	}
	return t, nil
}

// loopbackOnly reports whether a listener's address is reachable from
// this machine only.
func loopbackOnly(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
