// Package pgstore keeps idemkv's contract in PostgreSQL, for services
// that run as many replicas and keep their data there: a retry that lands
// on another replica is answered as if it had come back to the first, and
// a handler's own transaction can carry its completion (CompleteTx), so
// that its business rows and its stored response commit together or not
// at all.
//
// A Store is an engine.Store: the middleware (package idemhttp) and the
// proxy use it in place of the embedded engine and give the same four
// answers — Proceed, Replay, Conflict, InProgress.
//
// # How it works
//
// Each record is one row of a table (layout in schema.go), keyed by the
// encoded key. A new key's claim, a completed record's replay and a
// claim's own completion are one plain statement each; every other
// decision is a PL/pgSQL function, atomic under the row's lock (a second
// round trip, for a request in flight or an expired lease):
//
//   - Begin claims a new key with a lease (lease time from the server's
//     clock, so replicas with skewed clocks agree); answers Replay or
//     Conflict from a completed record; answers InProgress for a live
//     lease; and takes an expired lease over, as Proceed with Recovered.
//   - While the handler runs, the claim renews its lease every Lease/3 (up
//     to MaxHold), so a long handler keeps its claim and a crashed
//     replica's claim is recovered about one Lease after its last renewal.
//   - Complete, Release and Checkpoint act only if the caller's claim id
//     (random, never reused) is still the one in the row: a replica whose
//     lease was taken over gets engine.ErrLeaseLost and cannot overwrite
//     the new holder's record.
//   - Completed responses are stored in package record's format (the
//     embedded store's, compressed the same way, with the same
//     fingerprints).
//   - Expiry costs the request path nothing: readers treat a row past its
//     expiry as absent, and a sweeper deletes expired rows in batches in
//     the background (see sweep.go for why batches and not partitions).
//
// # Transactions
//
// CompleteTx stores a claim's response inside the handler's own pgx.Tx
// and commits it: the response becomes visible (to retries and waiting
// duplicates) exactly when the handler's writes do. If the transaction
// rolls back, or the commit fails, the claim is released and a retry runs
// cleanly; if the process dies before the commit, neither the business
// rows nor the record exist, and the claim's lease runs out. Package
// idemhttp's HandOver lets a handler give its transaction to the
// middleware, which then commits it with the response.
//
// # Durability
//
// A completed record is as durable as a commit of the server: with
// PostgreSQL's defaults (fsync on, synchronous_commit on) it is on disk
// before Complete returns.
package pgstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemkv/idemkv/codec"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/internal/sharedstore"
	"github.com/idemkv/idemkv/record"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Options configure a Store. The zero value, and a nil *Options, give the
// documented defaults.
type Options struct {
	// TTL is how long a completed record is replayed, from its
	// completion. Default 24h.
	TTL time.Duration
	// Lease is how long a claim stays held without a renewal; the claim
	// renews it every RenewEvery while the handler runs. A replica that
	// crashes leaves a claim that the next retry recovers about one Lease
	// later. Default 30s.
	Lease time.Duration
	// RenewEvery is how often a claim renews its lease while the handler
	// runs: at most Lease/2. Default Lease/3; negative never renews, so a
	// claim must end within Lease (or lose the key to a retry).
	RenewEvery time.Duration
	// MaxHold is how long a claim keeps renewing its lease: a claim that
	// is neither completed nor released loses the key about one Lease
	// after MaxHold, as a crashed replica's would. Default 5m.
	MaxHold time.Duration
	// WhenInProgress is what Begin does when a request with the same
	// fingerprint holds the key: engine.Wait (the default) or
	// engine.NoWait.
	WhenInProgress engine.WaitPolicy
	// MaxPollInterval is the longest a waiting Begin goes without asking
	// the server whether the request it waits for has ended: it is told
	// by a notification (LISTEN/NOTIFY, see waiting.go), and asks itself
	// only as a fallback, and when the holder's lease runs out. Without a
	// notification connection, a waiting Begin polls instead, its first
	// pause PollInterval doubling up to MaxPollInterval. Defaults 2ms and
	// 1s.
	PollInterval, MaxPollInterval time.Duration
	// MaxBodySize is the largest response body Complete accepts. Default
	// 16 MiB.
	MaxBodySize int
	// Compression is how response bodies are stored. Default codec.Auto.
	Compression codec.Method
	// Table names the records table; the Store's other objects are named
	// after it (see schema.go). A lower-case SQL identifier of at most 41
	// characters, in the connection's search_path. Default
	// "idemkv_records".
	Table string
	// NoMigrate makes Open check the schema's version instead of creating
	// or upgrading it (for a role that may not create tables: run
	// `idemkv migrate` as one that may). Default false.
	NoMigrate bool
	// SweepEvery is how often the Store deletes expired rows, in batches
	// of SweepBatch. Default 1m; negative never (another replica or a
	// job sweeps: every Store that sweeps takes its own rows, SKIP
	// LOCKED, so several may).
	SweepEvery time.Duration
	// SweepBatch is how many expired rows one sweep statement deletes.
	// Default 1000.
	SweepBatch int
	// ScopeSecret keys the digests that credentials are stored as (see
	// engine.Scoper). Required, at least engine.MinScopeSecretLen bytes,
	// and the same on every replica that shares the table. Open refuses
	// a secret that differs from the one the table's records are stored
	// under (ErrScopeSecret).
	ScopeSecret []byte
	// PreviousScopeSecrets are earlier secrets whose records are still
	// found, for a rotation: keep the old secret here for one TTL (and
	// MaxHold) after every replica took the new one.
	PreviousScopeSecrets [][]byte
}

func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	err := sharedstore.Common{TTL: &c.TTL, Lease: &c.Lease, RenewEvery: &c.RenewEvery, MaxHold: &c.MaxHold,
		WhenInProgress: &c.WhenInProgress, PollInterval: &c.PollInterval, MaxPollInterval: &c.MaxPollInterval,
		MaxBodySize: &c.MaxBodySize, ScopeSecret: c.ScopeSecret}.Defaults()
	if err != nil {
		return c, err
	}
	if c.Table == "" {
		c.Table = defaultTable
	}
	if c.SweepEvery == 0 {
		c.SweepEvery = time.Minute
	}
	if c.SweepBatch == 0 {
		c.SweepBatch = 1000
	}
	switch {
	case !tableName.MatchString(c.Table):
		return c, fmt.Errorf("%w: Table %q must be a lower-case SQL identifier of at most 41 characters", engine.ErrInvalid, c.Table)
	case c.SweepBatch < 1:
		return c, fmt.Errorf("%w: SweepBatch %d", engine.ErrInvalid, c.SweepBatch)
	}
	return c, nil
}

// Store is an idempotency store in PostgreSQL. It is safe for concurrent
// use.
type Store struct {
	pool *pgxpool.Pool
	own  bool // Close closes pool
	opts Options
	sql  statements
	id   string        // random, 128 bits: starts the ids of this Store's claims
	seq  atomic.Uint64 // numbers this Store's claims

	// ctx ends at Close; it stops renewals, the sweeper, the listener
	// and waiting Begins.
	ctx    context.Context
	cancel context.CancelFunc

	st     sharedstore.Counters // reported by Stats
	scoper *engine.Scoper

	// asks bounds the Begin statements in flight to one connection fewer
	// than the pool has, so that a claim's renewals and its Complete
	// always find a connection: in a flood of duplicates they would
	// otherwise queue behind the duplicates' statements past the lease,
	// and another duplicate would take the claim over and run its handler
	// a second time.
	asks chan struct{}

	// waiter runs waiting Begins; listener is its notifications (see
	// waiting.go).
	waiter   sharedstore.Waiter
	listener listener

	mu     sync.RWMutex // orders work.Add (read) against Close (write)
	closed atomic.Bool
	work   sync.WaitGroup // calls, renewals and background goroutines
	once   sync.Once
}

// statements are the Store's SQL, with its table's name filled in.
type statements struct {
	claim, store, notify, begin, complete, release, del, renew, checkpoint, get, list, sweep string
}

var _ engine.Store = (*Store)(nil)

// New returns a Store on pool. It does no I/O: call Migrate (or
// CheckSchema) and CheckScopeSecret before use, as Open does. Close does
// not close pool. A nil o means the documented defaults.
//
// Begin uses at most one connection fewer than the pool has, so that the
// lease renewals and the Complete of claims in flight are never queued
// behind a flood of duplicates; give the pool at least two connections
// (pgxpool's default is four, or one per CPU).
func New(pool *pgxpool.Pool, o *Options) (*Store, error) {
	opts, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	scoper, err := engine.NewScoper(engine.ScopeKeys{Secret: opts.ScopeSecret, Previous: opts.PreviousScopeSecrets})
	if err != nil {
		return nil, err
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	t := opts.Table
	s := &Store{pool: pool, opts: opts, id: hex.EncodeToString(b[:]), scoper: scoper, sql: statements{
		claim: sqlFor(t, claimSQL), store: sqlFor(t, storeSQL), notify: notifySQL,
		begin: sqlFor(t, beginSQL), complete: sqlFor(t, completeSQL), release: sqlFor(t, releaseSQL),
		del: sqlFor(t, deleteSQL), renew: sqlFor(t, renewSQL), checkpoint: sqlFor(t, checkpointSQL),
		get: sqlFor(t, getSQL), list: sqlFor(t, listSQL), sweep: sqlFor(t, sweepSQL),
	}}
	s.asks = make(chan struct{}, max(1, int(pool.Config().MaxConns)-1))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.waiter = sharedstore.Waiter{
		Subscribed: s.subscribed, Closed: s.closed.Load, Done: s.ctx.Done(),
		PollInterval: opts.PollInterval, MaxPollInterval: opts.MaxPollInterval, Waits: &s.st.Waits,
	}
	if opts.SweepEvery > 0 {
		s.work.Add(1)
		go s.sweepLoop()
	}
	return s, nil
}

// Open connects to the database at url (a postgres:// URL or key=value
// connection string, as pgxpool.ParseConfig reads it) and returns a Store
// that owns the connections. It checks the connection, creates or
// upgrades the schema (Migrate; with Options.NoMigrate it only checks
// it), and checks the scope secret (CheckScopeSecret).
func Open(ctx context.Context, url string, o *Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w: %w", engine.ErrInvalid, err)
	}
	var st *sharedstore.Counters
	cfg.ConnConfig.Tracer = roundTrips{&st}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, storageErr("connect", err)
	}
	s, err := New(pool, o)
	if err != nil {
		pool.Close()
		return nil, err
	}
	st = &s.st
	s.own = true
	fail := func(err error) (*Store, error) {
		_ = s.Close()
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		return fail(storageErr("connect", err))
	}
	if s.opts.NoMigrate {
		err = s.CheckSchema(ctx)
	} else {
		err = s.Migrate(ctx)
	}
	if err != nil {
		return fail(err)
	}
	if err := s.CheckScopeSecret(ctx); err != nil {
		return fail(err)
	}
	return s, nil
}

// Close stops the renewals of the claims this Store holds (their leases
// then expire and the next retry recovers them), its sweeper and its
// listener, and, if Open made the pool, closes it. It is idempotent;
// every method returns engine.ErrClosed after it.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed.Store(true)
		s.mu.Unlock()
		s.cancel()
		s.work.Wait()
		if s.own {
			s.pool.Close()
		}
	})
	return nil
}

// enter registers a call that Close must wait for (the caller then calls
// s.work.Done), or reports false once the Store is closed.
func (s *Store) enter() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return false
	}
	s.work.Add(1)
	return true
}

// Scoper returns the Store's Scoper (see Options.ScopeSecret).
func (s *Store) Scoper() *engine.Scoper { return s.scoper }

// notifyKey is what notifications name a record by: the hex SHA-256 of
// its encoded key (as the functions in schema.go compute it).
func notifyKey(ek []byte) string {
	sum := sha256.Sum256(ek)
	return hex.EncodeToString(sum[:])
}

// Begin asks whether the request may run; see engine.Engine.Begin for the
// outcomes, which are the same. Errors from PostgreSQL match
// engine.ErrStorage.
//
// If ctx ends while the claim is being made, Begin returns ctx's error but
// the server may have made the claim all the same; the key is then
// recovered one Lease later, as a crashed replica's would be.
func (s *Store) Begin(ctx context.Context, req engine.Request) (res engine.Result, err error) {
	if err := engine.ValidateRequest(req); err != nil {
		return engine.Result{}, err
	}
	s.st.Begins.Add(1)
	defer func() { s.st.Count(res, err) }()
	if !s.enter() {
		return engine.Result{}, engine.ErrClosed
	}
	defer s.work.Done()
	wait := req.WhenInProgress
	if wait == engine.DefaultWait {
		wait = s.opts.WhenInProgress
	}
	ek := req.Key.Append(nil)
	fresh := true
	ask := func() (engine.Result, time.Duration, error) {
		select {
		case s.asks <- struct{}{}:
			defer func() { <-s.asks }()
		case <-ctx.Done():
			return engine.Result{}, 0, s.queryErr("begin", ctx, ctx.Err())
		}
		cid := s.id + "." + strconv.FormatUint(s.seq.Add(1), 36)
		if fresh {
			// The fast path (see claimSQL): a new key's claim, or a
			// completed record, in one statement.
			fresh = false
			ca := time.Now().UnixNano()
			var (
				inserted bool
				st, rid  string
				fpv      int16
				fps      int64
				rec      []byte
			)
			err := s.pool.QueryRow(ctx, s.sql.claim, ek, int16(req.Fingerprint.Version), int64(req.Fingerprint.Sum),
				req.RequestID, cid, ca, s.opts.Lease.Milliseconds(), s.opts.TTL.Milliseconds()).
				Scan(&inserted, &st, &fpv, &fps, &rid, &rec)
			switch {
			case err == nil && inserted:
				one, att := int64(1), int32(1)
				return s.answer(ek, cid, req, &answer{kind: "p", tok: &one, att: &att, ca: &ca})
			case err == nil && st == "c" && fpv == int16(req.Fingerprint.Version) && fps == int64(req.Fingerprint.Sum):
				return s.answer(ek, cid, req, &answer{kind: "r", rec: rec})
			case err == nil && st == "c":
				return s.answer(ek, cid, req, &answer{kind: "x", rid: &rid, rec: rec})
			case err != nil && !errors.Is(err, pgx.ErrNoRows):
				return engine.Result{}, 0, s.queryErr("begin", ctx, err)
			}
			// A claim in flight, an expired row, or a row not yet in
			// this statement's snapshot: the function decides.
		}
		var a answer
		err := s.pool.QueryRow(ctx, s.sql.begin, ek, int16(req.Fingerprint.Version), int64(req.Fingerprint.Sum),
			req.RequestID, cid, s.opts.Lease.Milliseconds(), s.opts.TTL.Milliseconds(), time.Now().UnixNano(),
			wait == engine.Wait).Scan(&a.kind, &a.rid, &a.tok, &a.att, &a.ca, &a.prid, &a.cpp, &a.cpd, &a.rec,
			&a.fpv, &a.fps, &a.left)
		if err != nil {
			return engine.Result{}, 0, s.queryErr("begin", ctx, err)
		}
		return s.answer(ek, cid, req, &a)
	}
	return s.waiter.Begin(ctx, notifyKey(ek), req, wait, ask)
}

// answer is a row of the begin function (see schema.go).
type answer struct {
	kind         string
	rid, prid    *string
	cpp          *string
	tok, ca, fps *int64
	left         *int64
	att          *int32
	fpv          *int16
	cpd, rec     []byte
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func num[T int16 | int32 | int64](p *T) int64 {
	if p == nil {
		return 0
	}
	return int64(*p)
}

// checkpoint returns the answer's recovery point, nil if it has none.
func (a *answer) checkpoint() *record.Checkpoint {
	if a.cpp == nil && a.cpd == nil {
		return nil
	}
	return &record.Checkpoint{Phase: str(a.cpp), Data: a.cpd}
}

// answer turns the begin function's row into a Result; for InProgress,
// left is how long the holder's lease still runs.
func (s *Store) answer(ek []byte, cid string, req engine.Request, a *answer) (res engine.Result, left time.Duration, err error) {
	switch a.kind {
	case "p":
		info := engine.ClaimInfo{
			Key: req.Key, Fingerprint: req.Fingerprint, RequestID: req.RequestID,
			Token: uint64(num(a.tok)), Attempt: uint32(num(a.att)), CreatedAt: time.Unix(0, num(a.ca)),
		}
		if a.prid != nil {
			info.Checkpoint = a.checkpoint()
			res.Recovered = true
			res.Record = &record.Record{
				State: record.Claimed, RequestID: *a.prid, Fingerprint: req.Fingerprint,
				Attempt: info.Attempt - 1, CreatedAt: info.CreatedAt, Checkpoint: info.Checkpoint,
			}
		}
		c := s.newClaim(ek, cid, info)
		if c == nil {
			// Closed while the function ran: give the claim back (best
			// effort; its lease runs out otherwise).
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, _ = s.pool.Exec(ctx, s.sql.release, ek, cid, s.channel())
			cancel()
			return engine.Result{}, 0, engine.ErrClosed
		}
		res.Outcome = engine.Proceed
		res.Claim = engine.NewClaim(c, info)
		return res, 0, nil
	case "r":
		r, err := record.Decode(a.rec)
		if err != nil {
			return res, 0, fmt.Errorf("pgstore: record %x: %w", ek, err)
		}
		return engine.Result{Outcome: engine.Replay, Record: r}, 0, nil
	case "x":
		res = engine.Result{Outcome: engine.Conflict, OriginalRequestID: str(a.rid)}
		if a.rec != nil {
			if r, err := record.Decode(a.rec); err == nil {
				res.Record = r.WithoutBody()
			}
		}
		return res, 0, nil
	case "xi":
		return engine.Result{Outcome: engine.Conflict, OriginalRequestID: str(a.rid), Record: &record.Record{
			State: record.Claimed, RequestID: str(a.rid), Attempt: uint32(num(a.att)),
			Fingerprint: record.Fingerprint{Version: uint8(num(a.fpv)), Sum: uint64(num(a.fps))},
			CreatedAt:   time.Unix(0, num(a.ca)), Checkpoint: a.checkpoint(),
		}}, 0, nil
	case "w":
		return engine.Result{Outcome: engine.InProgress, OriginalRequestID: str(a.rid)}, time.Duration(num(a.left)) * time.Millisecond, nil
	}
	return res, 0, fmt.Errorf("pgstore: begin: %w: unexpected answer %q", engine.ErrCorrupt, a.kind)
}

// queryErr turns an error of a statement into the store's error.
func (s *Store) queryErr(op string, ctx context.Context, err error) error {
	var pe *pgconn.PgError
	switch {
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return ctx.Err()
	case s.closed.Load():
		return engine.ErrClosed // the call raced Close, which closed the pool under it
	case errors.As(err, &pe) && (pe.Code == "42883" || pe.Code == "42P01"): // undefined function, table
		return fmt.Errorf("%w: %s: %s (run idemkv migrate): %w", ErrSchema, op, pe.Message, engine.ErrStorage)
	}
	return storageErr(op, err)
}

// Get returns the current record of key: a completed record, or the lease
// of a claim. It returns engine.ErrNotFound if there is none.
func (s *Store) Get(ctx context.Context, key record.Key) (*record.Record, error) {
	if err := key.Validate(); err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, engine.ErrClosed
	}
	ek := key.Append(nil)
	var (
		st           string
		fpv          int16
		fps, tok, ca int64
		att          int32
		rid          string
		lu           *time.Time
		cpp          *string
		cpd, rec     []byte
	)
	err := s.pool.QueryRow(ctx, s.sql.get, ek).Scan(&st, &fpv, &fps, &rid, &tok, &att, &ca, &lu, &cpp, &cpd, &rec)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, engine.ErrNotFound
	}
	if err != nil {
		return nil, s.queryErr("get", ctx, err)
	}
	switch st {
	case "c":
		r, err := record.Decode(rec)
		if err != nil {
			return nil, fmt.Errorf("pgstore: record %x: %w", ek, err)
		}
		return r, nil
	case "f":
		r := &record.Record{
			State: record.Claimed, RequestID: rid, Attempt: uint32(att),
			Fingerprint: record.Fingerprint{Version: uint8(fpv), Sum: uint64(fps)},
			CreatedAt:   time.Unix(0, ca), Lease: record.Lease{Token: uint64(tok)},
		}
		if lu != nil {
			r.Lease.ExpiresAt = *lu
		}
		if cpp != nil || cpd != nil {
			r.Checkpoint = &record.Checkpoint{Phase: str(cpp), Data: cpd}
		}
		return r, nil
	}
	return nil, fmt.Errorf("pgstore: record %x: %w: state %q", ek, engine.ErrCorrupt, st)
}

// Delete removes key's record so that the next request with it runs as
// new. It refuses with engine.ErrInProgress while a live lease holds the
// key, and returns engine.ErrNotFound if there was no record.
func (s *Store) Delete(ctx context.Context, key record.Key) error {
	if err := key.Validate(); err != nil {
		return err
	}
	if s.closed.Load() {
		return engine.ErrClosed
	}
	var n int32
	err := s.pool.QueryRow(ctx, s.sql.del, key.Append(nil)).Scan(&n)
	switch {
	case err != nil:
		err = s.queryErr("delete", ctx, err)
		s.st.CountErr(err)
		return err
	case n < 0:
		return engine.ErrInProgress
	case n == 0:
		return engine.ErrNotFound
	}
	s.st.Deletes.Add(1)
	return nil
}

// List calls fn for every record under prefix (see engine.Lister), in key
// order: an operator's tool, not for request paths.
func (s *Store) List(ctx context.Context, prefix record.Prefix, fn func(record.Key, *record.Record) error) error {
	if s.closed.Load() {
		return engine.ErrClosed
	}
	want := prefix.Append([]byte{}) // not nil: pgx sends nil as NULL
	rows, err := s.pool.Query(ctx, s.sql.list, want)
	if err != nil {
		return s.queryErr("list", ctx, err)
	}
	var eks [][]byte
	for rows.Next() {
		var ek []byte
		if err := rows.Scan(&ek); err != nil {
			rows.Close()
			return s.queryErr("list", ctx, err)
		}
		if !bytes.HasPrefix(ek, want) {
			break // past the prefix, in key order
		}
		eks = append(eks, ek)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s.queryErr("list", ctx, err)
	}
	for _, ek := range eks {
		key, err := record.DecodeKey(ek)
		if err != nil {
			continue // damaged: Get on its key says so
		}
		rec, err := s.Get(ctx, key)
		if errors.Is(err, engine.ErrNotFound) || errors.Is(err, engine.ErrCorrupt) {
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(key, rec.WithoutBody()); err != nil {
			return err
		}
	}
	return nil
}

var _ engine.Lister = (*Store)(nil)

// Stats returns the Store's counters since New: the request counters of
// engine.Stats, as this Store (this replica) saw them. The fields about
// local storage stay zero: PostgreSQL keeps the records.
func (s *Store) Stats() engine.Stats { return s.st.Stats() }

// Health returns engine.ErrClosed after Close, and otherwise the error of
// a ping (matching engine.ErrStorage) if the server does not answer it
// before ctx ends.
func (s *Store) Health(ctx context.Context) error {
	if s.closed.Load() {
		return engine.ErrClosed
	}
	if err := s.pool.Ping(ctx); err != nil {
		return s.queryErr("ping", ctx, err)
	}
	return nil
}

// roundTrips is a pgx tracer that counts what the Store's own pool sends
// (see Open); a pool given to New is not traced.
type roundTrips struct{ c **sharedstore.Counters }

func (h roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

// TraceQueryEnd counts one round trip, and as failed one that got no
// answer (a connection refused or broken, a timeout): not a server's
// error reply.
func (h roundTrips) TraceQueryEnd(_ context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	c := *h.c
	if c == nil {
		return
	}
	c.RoundTrips.Add(1)
	var pe *pgconn.PgError
	if data.Err != nil && !errors.Is(data.Err, pgx.ErrNoRows) && !errors.As(data.Err, &pe) {
		c.RoundTripErrors.Add(1)
	}
}
