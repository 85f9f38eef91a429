package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgSystem is the claim/complete pattern that people write by hand on
// PostgreSQL, through pgx over loopback: a first request claims its key
// with INSERT … ON CONFLICT DO NOTHING (one row inserted: claimed), then
// stores the response with an UPDATE of the row and its expiry; a retry
// is a SELECT of a row not yet expired. Each run has a table of its own,
// dropped by close.
type pgSystem struct {
	d     *dataset
	pool  *pgxpool.Pool
	table string
}

// dialPostgres connects to the database at url with a pool of at least
// conns connections, and checks it.
func dialPostgres(url string, conns int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("%w: postgres URL: %w", ErrInvalid, err)
	}
	cfg.MaxConns = max(cfg.MaxConns, int32(min(conns, 200)))
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err == nil {
		err = pool.Ping(context.Background())
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return pool, nil
}

// pgTableName returns a table name of one run: base and a random tag.
func pgTableName(base string) string {
	return strings.ReplaceAll(strings.TrimSuffix(runPrefix(base), ":"), ":", "_")
}

func openPGSystem(url string, conns int, d *dataset) (*pgSystem, error) {
	pool, err := dialPostgres(url, conns)
	if err != nil {
		return nil, err
	}
	s := &pgSystem{d: d, pool: pool, table: pgTableName("idemkv_bench_")}
	// The row of the pattern: the key, a state, the response, an expiry
	// (with its index, for a sweeper: the pattern's cost includes it).
	_, err = pool.Exec(context.Background(), `CREATE TABLE `+s.table+` (
		k bytea PRIMARY KEY, state "char" NOT NULL, body bytea, expires timestamptz NOT NULL);
		CREATE INDEX ON `+s.table+` (expires)`)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return s, nil
}

func (s *pgSystem) first(w *worker, i int) error {
	ctx := context.Background()
	k := s.d.appendKey(nil, i)
	tag, err := s.pool.Exec(ctx, `INSERT INTO `+s.table+` (k, state, expires) VALUES ($1, 'f', now() + interval '5 minutes') ON CONFLICT DO NOTHING`, k)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("%w: postgres: fresh key %s exists", ErrUnexpectedOutcome, s.d.id(i))
	}
	_, err = s.pool.Exec(ctx, `UPDATE `+s.table+` SET state = 'c', body = $2, expires = now() + interval '24 hours' WHERE k = $1`, k, s.d.body(i))
	return err
}

func (s *pgSystem) retry(w *worker, i int, _ bool) error {
	var v []byte
	err := s.pool.QueryRow(context.Background(), `SELECT body FROM `+s.table+` WHERE k = $1 AND expires > now()`, s.d.appendKey(nil, i)).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: postgres: key %s missing", ErrUnexpectedOutcome, s.d.id(i))
	}
	if err != nil {
		return err
	}
	w.dst = append(w.dst[:0], v...)
	return nil
}

// load stores records with COPY, in chunks of about a megabyte.
func (s *pgSystem) load(ctx context.Context, lo, hi int, pr io.Writer) error {
	d := s.d
	chunk := max(1, min(4096, (1<<20)/max(1, d.bodyLen())))
	return loadChunks(ctx, lo, hi, 4, chunk, pr, "prefill postgres", func(lo, hi int) error {
		rows := make([][]any, 0, hi-lo)
		expires := time.Now().Add(redisTTL)
		for x := lo; x < hi; x++ {
			rows = append(rows, []any{d.keyAt(x).Append(nil), "c", d.bodyAt(x), expires})
		}
		_, err := s.pool.CopyFrom(ctx, pgx.Identifier{s.table}, []string{"k", "state", "body", "expires"}, pgx.CopyFromRows(rows))
		return err
	})
}

func (s *pgSystem) reopen() error           { return nil }
func (s *pgSystem) written() (uint64, bool) { return 0, false }
func (s *pgSystem) diskBytes() uint64       { return 0 }

func (s *pgSystem) close() error {
	_, err := s.pool.Exec(context.Background(), `DROP TABLE IF EXISTS `+s.table)
	s.pool.Close()
	return err
}

// pgStoreSystem is idemkv on its PostgreSQL backend (package
// engine/pgstore): the same Begin and Complete as the embedded engine,
// each a PL/pgSQL function on the server.
type pgStoreSystem struct {
	storeOps
	pool  *pgxpool.Pool
	store *pgstore.Store
	table string
}

func openPGStoreSystem(url string, conns int, d *dataset) (*pgStoreSystem, error) {
	pool, err := dialPostgres(url, conns)
	if err != nil {
		return nil, err
	}
	table := pgTableName("idemkv_bench_store_")
	// Requests carry their scopes: no credential is digested.
	st, err := pgstore.New(pool, &pgstore.Options{TTL: redisTTL, Table: table, SweepEvery: -1, ScopeSecret: engine.NewScopeSecret()})
	if err == nil {
		err = st.Migrate(context.Background())
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &pgStoreSystem{storeOps: storeOps{d: d, st: st, label: "idemkv-postgres"}, pool: pool, store: st, table: table}, nil
}

func (s *pgStoreSystem) reopen() error           { return nil }
func (s *pgStoreSystem) written() (uint64, bool) { return 0, false }
func (s *pgStoreSystem) diskBytes() uint64       { return 0 }

// close drops the run's table and the objects named after it.
func (s *pgStoreSystem) close() error {
	t := s.table
	_, err := s.pool.Exec(context.Background(), `DROP TABLE IF EXISTS `+t+`, `+t+`_meta;
		DROP FUNCTION IF EXISTS `+t+`_begin, `+t+`_complete, `+t+`_release, `+t+`_delete`)
	return errors.Join(s.store.Close(), err, func() error { s.pool.Close(); return nil }())
}

// PostgresSettings describes the durability settings of the PostgreSQL
// server at url, for a report: "fsync=on synchronous_commit=on".
func PostgresSettings(ctx context.Context, url string) (string, error) {
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", fmt.Errorf("postgres: %w", err)
	}
	defer c.Close(ctx)
	var parts []string
	for _, name := range []string{"fsync", "synchronous_commit", "server_version"} {
		var v string
		if err := c.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			return "", fmt.Errorf("postgres: SHOW %s: %w", name, err)
		}
		parts = append(parts, name+"="+v)
	}
	return strings.Join(parts, " "), nil
}
