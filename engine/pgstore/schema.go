package pgstore

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/idemkv/idemkv/engine"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The schema. Options.Table (default idemkv_records) names the records
// table; every other object is named after it ({T} below).
//
// The records table holds one row per key:
//
//	k     the encoded record.Key (the primary key: no digest, no
//	      collision)
//	st    'f' while a request holds or held the claim, 'c' once completed
//	fpv   the request fingerprint's version, fps its sum (the uint64's
//	      bits)
//	rid   the request id (of the claim, then of the stored response)
//	cid   the claim id: the holding Store's random 128-bit id and a
//	      sequence number, unique across Stores and time; Complete,
//	      Release, renewals and checkpoints act only if it is theirs
//	tok   the attempt's token: 1 for the first claim, +1 at every takeover
//	att   the attempt number
//	ca    when the first attempt began (Unix nanoseconds, opaque to the
//	      server)
//	lu    lease until, by the server's clock ('f' only)
//	prid  the request id of the attempt this claim took over ('f' only)
//	cpp   the last recovery point's phase, cpd its data ('f' only)
//	w     set while a Begin waits for the claim: its Complete or Release
//	      notifies (see waiting.go); a completed row keeps it, unused
//	rec   the completed record, in package record's format ('c' only;
//	      stored out of line without PostgreSQL's compression, as the
//	      record compresses its body itself)
//	exp   when the row is gone: readers treat a row past it as absent,
//	      and the sweeper (sweep.go) deletes it. A claim's row lasts
//	      Lease+TTL past its last renewal, so that an interrupted claim
//	      and its recovery point stay for a retry as long as a completed
//	      record would; a completed record's TTL past its completion.
//
// As in the Redis store, the fence is cid and not tok: tok starts again
// at 1 when a row is deleted and made again, so a stale holder could
// match a later claim's token; a claim id is never reused. Times come
// from the server's clock (clock_timestamp()), so replicas with skewed
// clocks agree on when a lease ends.
//
// The table {T}_meta holds what replicas must agree on, by name:
//
//	schema       the schema's version (schemaVersion)
//	scope.check  the engine.Scoper check value of the secret the records
//	             are stored under, in hex
//	scope.since  when the first replica with keyed digests started (Unix
//	             seconds)
//
// Every decision is one function of the server (the Redis store's Lua
// scripts, in PL/pgSQL), so Begin, Complete and Release are one round
// trip each, and atomic under the row's lock.
const schemaVersion = 1

// schemaSQL creates the schema's objects where they are missing and
// replaces its functions. It is idempotent.
const schemaSQL = `
CREATE TABLE IF NOT EXISTS {T} (
	k    bytea PRIMARY KEY,
	st   "char" NOT NULL CHECK (st IN ('f', 'c')),
	fpv  smallint NOT NULL,
	fps  bigint NOT NULL,
	rid  text NOT NULL,
	cid  text NOT NULL,
	tok  bigint NOT NULL,
	att  integer NOT NULL,
	ca   bigint NOT NULL,
	lu   timestamptz,
	prid text,
	cpp  text,
	cpd  bytea,
	w    boolean NOT NULL DEFAULT false,
	rec  bytea,
	exp  timestamptz NOT NULL
);
ALTER TABLE {T} ALTER COLUMN rec SET STORAGE EXTERNAL;
CREATE INDEX IF NOT EXISTS {T}_exp ON {T} (exp);
CREATE TABLE IF NOT EXISTS {T}_meta (name text PRIMARY KEY, value text NOT NULL);

-- Begin. It returns o_kind and, by kind:
--   p   a claim: o_tok, o_att, o_ca; for a takeover of an expired lease
--       also o_prid (the request it took over), o_cpp, o_cpd
--   r   replay: o_rec
--   x   conflict: o_rid, and o_rec for a completed record
--   xi  conflict with an interrupted claim: o_rid, o_att, o_ca, o_cpp,
--       o_cpd, o_fpv, o_fps
--   w   in flight: o_rid, o_left (ms until the lease ends)
CREATE OR REPLACE FUNCTION {T}_begin(p_k bytea, p_fpv smallint, p_fps bigint, p_rid text, p_cid text,
	p_lease bigint, p_ttl bigint, p_ca bigint, p_wait boolean,
	OUT o_kind text, OUT o_rid text, OUT o_tok bigint, OUT o_att integer, OUT o_ca bigint,
	OUT o_prid text, OUT o_cpp text, OUT o_cpd bytea, OUT o_rec bytea,
	OUT o_fpv smallint, OUT o_fps bigint, OUT o_left bigint)
LANGUAGE plpgsql AS $$
DECLARE
	r {T}%ROWTYPE;
	now_ timestamptz := clock_timestamp();
	lease interval := p_lease * interval '1 millisecond';
	ttl interval := p_ttl * interval '1 millisecond';
BEGIN
	-- A new key first: most requests are first requests, and the insert
	-- is the one probe of the index they need.
	LOOP
		INSERT INTO {T} (k, st, fpv, fps, rid, cid, tok, att, ca, lu, exp)
		VALUES (p_k, 'f', p_fpv, p_fps, p_rid, p_cid, 1, 1, p_ca, now_ + lease, now_ + lease + ttl)
		ON CONFLICT (k) DO NOTHING;
		IF FOUND THEN
			o_kind := 'p'; o_tok := 1; o_att := 1; o_ca := p_ca;
			RETURN;
		END IF;
		SELECT * INTO r FROM {T} t WHERE t.k = p_k FOR UPDATE;
		EXIT WHEN FOUND;
		-- The row was deleted meanwhile: insert again.
	END LOOP;
	IF r.exp <= now_ THEN
		-- Expired: as if there were no row.
		UPDATE {T} t SET st = 'f', fpv = p_fpv, fps = p_fps, rid = p_rid, cid = p_cid, tok = 1, att = 1,
			ca = p_ca, lu = now_ + lease, prid = NULL, cpp = NULL, cpd = NULL, w = false, rec = NULL,
			exp = now_ + lease + ttl
		WHERE t.k = p_k;
		o_kind := 'p'; o_tok := 1; o_att := 1; o_ca := p_ca;
		RETURN;
	END IF;
	IF r.st = 'f' AND r.cid = p_cid THEN
		-- A repeat of this very call: answer with the claim it made.
		o_kind := 'p'; o_tok := r.tok; o_att := r.att; o_ca := r.ca;
		o_prid := r.prid; o_cpp := r.cpp; o_cpd := r.cpd;
		RETURN;
	END IF;
	IF r.st = 'c' THEN
		IF r.fpv = p_fpv AND r.fps = p_fps THEN
			o_kind := 'r'; o_rec := r.rec;
		ELSE
			o_kind := 'x'; o_rid := r.rid; o_rec := r.rec;
		END IF;
		RETURN;
	END IF;
	IF r.lu > now_ THEN
		IF r.fpv <> p_fpv OR r.fps <> p_fps THEN
			o_kind := 'x'; o_rid := r.rid;
			RETURN;
		END IF;
		IF p_wait AND NOT r.w THEN
			UPDATE {T} t SET w = true WHERE t.k = p_k;
		END IF;
		o_kind := 'w'; o_rid := r.rid;
		o_left := greatest(1, ceil(extract(epoch FROM r.lu - now_) * 1000))::bigint;
		RETURN;
	END IF;
	IF r.fpv <> p_fpv OR r.fps <> p_fps THEN
		o_kind := 'xi'; o_rid := r.rid; o_att := r.att; o_ca := r.ca; o_cpp := r.cpp; o_cpd := r.cpd;
		o_fpv := r.fpv; o_fps := r.fps;
		RETURN;
	END IF;
	-- The lease ran out: take the claim over.
	UPDATE {T} t SET rid = p_rid, tok = r.tok + 1, att = r.att + 1, cid = p_cid, prid = r.rid,
		lu = now_ + lease, exp = now_ + lease + ttl
	WHERE t.k = p_k;
	o_kind := 'p'; o_tok := r.tok + 1; o_att := r.att + 1; o_ca := r.ca;
	o_prid := r.rid; o_cpp := r.cpp; o_cpd := r.cpd;
END $$;

-- Complete: stores the record if the caller's claim id is current (1),
-- else 0. The claim id stays in the completed row, so a repeat of the
-- call is answered 1. A marked row (w) notifies the key's digest.
CREATE OR REPLACE FUNCTION {T}_complete(p_k bytea, p_cid text, p_rec bytea, p_ttl bigint, p_rid text, p_channel text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
	waited boolean;
BEGIN
	-- One statement in the common case: the claim is ours and open. (w
	-- is left as it was, so that RETURNING tells whether a Begin waits.)
	UPDATE {T} t SET st = 'c', rec = p_rec, rid = p_rid, lu = NULL, cpp = NULL, cpd = NULL, prid = NULL,
		exp = clock_timestamp() + p_ttl * interval '1 millisecond'
	WHERE t.k = p_k AND t.cid = p_cid AND t.st = 'f'
	RETURNING t.w INTO waited;
	IF FOUND THEN
		IF waited THEN
			PERFORM pg_notify(p_channel, encode(sha256(p_k), 'hex'));
		END IF;
		RETURN 1;
	END IF;
	-- A repeat of this call finds the record completed with its claim id.
	PERFORM 1 FROM {T} t WHERE t.k = p_k AND t.cid = p_cid AND t.st = 'c';
	IF FOUND THEN
		RETURN 1;
	END IF;
	RETURN 0;
END $$;

-- Release: deletes the claim if the caller still holds it (1); a row
-- that is gone counts as released (1); else 0.
CREATE OR REPLACE FUNCTION {T}_release(p_k bytea, p_cid text, p_channel text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	SELECT t.st, t.cid, t.w INTO r FROM {T} t WHERE t.k = p_k FOR UPDATE;
	IF NOT FOUND THEN
		RETURN 1;
	END IF;
	IF r.st <> 'f' OR r.cid <> p_cid THEN
		RETURN 0;
	END IF;
	DELETE FROM {T} t WHERE t.k = p_k;
	IF r.w THEN
		PERFORM pg_notify(p_channel, encode(sha256(p_k), 'hex'));
	END IF;
	RETURN 1;
END $$;

-- Delete: removes a record unless a live lease holds it: 1 deleted, 0
-- none (or expired), -1 in flight.
CREATE OR REPLACE FUNCTION {T}_delete(p_k bytea)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
	r record;
	now_ timestamptz := clock_timestamp();
BEGIN
	SELECT t.st, t.lu, t.exp INTO r FROM {T} t WHERE t.k = p_k FOR UPDATE;
	IF NOT FOUND THEN
		RETURN 0;
	END IF;
	IF r.st = 'f' AND r.lu > now_ THEN
		RETURN -1;
	END IF;
	DELETE FROM {T} t WHERE t.k = p_k;
	IF r.exp <= now_ THEN
		RETURN 0;
	END IF;
	RETURN 1;
END $$;
`

// The statements of the Store, on the objects above. Begin and Complete
// have a fast path of one plain statement each for the common cases,
// which says whether it applied; the functions run only when it did not.
// Begin's (claimSQL) inserts a new key's claim, and otherwise reads the
// row without locking it: a completed record (immutable until it expires
// or is deleted) answers a replay or a conflict at once, and only a claim
// in flight or an expired row goes to the begin function. (A row that
// another Begin inserted and committed after this statement's snapshot
// is neither inserted nor seen: the function answers that rare case.)
// Complete's (storeSQL) is the fenced update. Measured with idemkv bench
// -backend postgres: with every decision a function, the server spent
// about 1.4 times the CPU of the hand-written pattern per first request
// (see bench/README.md).
const (
	claimSQL = `WITH ins AS (
			INSERT INTO {T} (k, st, fpv, fps, rid, cid, tok, att, ca, lu, exp)
			VALUES ($1, 'f', $2, $3, $4, $5, 1, 1, $6, clock_timestamp() + $7 * interval '1 millisecond',
				clock_timestamp() + ($7 + $8) * interval '1 millisecond')
			ON CONFLICT (k) DO NOTHING
			RETURNING 1)
		SELECT true, ''::text, 0::smallint, 0::bigint, ''::text, NULL::bytea FROM ins
		UNION ALL
		SELECT false, t.st::text, t.fpv, t.fps, t.rid, t.rec FROM {T} t
		WHERE t.k = $1 AND t.exp > clock_timestamp() AND NOT EXISTS (SELECT 1 FROM ins)`
	storeSQL = `UPDATE {T} SET st = 'c', rec = $3, rid = $4, lu = NULL, cpp = NULL, cpd = NULL, prid = NULL,
			exp = clock_timestamp() + $5 * interval '1 millisecond'
		WHERE k = $1 AND cid = $2 AND st = 'f'
		RETURNING w`
	notifySQL     = `SELECT pg_notify($1, $2)`
	beginSQL      = `SELECT * FROM {T}_begin($1, $2, $3, $4, $5, $6, $7, $8, $9)`
	completeSQL   = `SELECT {T}_complete($1, $2, $3, $4, $5, $6)`
	releaseSQL    = `SELECT {T}_release($1, $2, $3)`
	deleteSQL     = `SELECT {T}_delete($1)`
	renewSQL      = `UPDATE {T} SET lu = clock_timestamp() + $3 * interval '1 millisecond', exp = clock_timestamp() + ($3 + $4) * interval '1 millisecond' WHERE k = $1 AND st = 'f' AND cid = $2`
	checkpointSQL = `UPDATE {T} SET cpp = $3, cpd = $4, lu = clock_timestamp() + $5 * interval '1 millisecond', exp = clock_timestamp() + ($5 + $6) * interval '1 millisecond' WHERE k = $1 AND st = 'f' AND cid = $2 AND lu > clock_timestamp()`
	getSQL        = `SELECT st, fpv, fps, rid, tok, att, ca, lu, cpp, cpd, rec FROM {T} WHERE k = $1 AND exp > clock_timestamp()`
	listSQL       = `SELECT k FROM {T} WHERE k >= $1 AND exp > clock_timestamp() ORDER BY k`
	sweepSQL      = `DELETE FROM {T} WHERE k IN (SELECT k FROM {T} WHERE exp < clock_timestamp() ORDER BY exp LIMIT $1 FOR UPDATE SKIP LOCKED)`
)

// defaultTable is Options.Table's default.
const defaultTable = "idemkv_records"

// tableName is what Options.Table may be: a plain lower-case SQL
// identifier, short enough for the names made from it.
var tableName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,40}$`)

// sqlFor fills in the table's name.
func sqlFor(table, q string) string { return strings.ReplaceAll(q, "{T}", table) }

// Migrate creates the Store's schema where it is missing, or brings it to
// this version (see the package function Migrate). Open calls it unless
// Options.NoMigrate.
func (s *Store) Migrate(ctx context.Context) error {
	if s.closed.Load() {
		return engine.ErrClosed
	}
	return Migrate(ctx, s.pool, s.opts.Table)
}

// Migrate creates the schema of the records table named table (""
// means the default, idemkv_records) where it is missing, or brings it to
// this version, under an advisory lock so that replicas starting at once
// do not race. It is idempotent. A schema of a later version (written by
// a newer idemkv) is refused with an error matching ErrSchema. It is what
// `idemkv migrate` runs, for deployments whose services' role may not
// create tables (Options.NoMigrate).
func Migrate(ctx context.Context, pool *pgxpool.Pool, table string) error {
	if table == "" {
		table = defaultTable
	}
	if !tableName.MatchString(table) {
		return fmt.Errorf("%w: Table %q must be a lower-case SQL identifier of at most 41 characters", engine.ErrInvalid, table)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return storageErr("migrate", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "idemkv schema "+table); err != nil {
		return storageErr("migrate", err)
	}
	if v, err := readVersion(ctx, tx, table); err != nil {
		return err
	} else if v > schemaVersion {
		return fmt.Errorf("%w: table %s has schema version %d, this idemkv knows %d", ErrSchema, table, v, schemaVersion)
	}
	if _, err := tx.Exec(ctx, sqlFor(table, schemaSQL)); err != nil {
		return storageErr("migrate", err)
	}
	if _, err := tx.Exec(ctx, sqlFor(table, `INSERT INTO {T}_meta (name, value) VALUES ('schema', $1)
		ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value`), strconv.Itoa(schemaVersion)); err != nil {
		return storageErr("migrate", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return storageErr("migrate", err)
	}
	return nil
}

// CheckSchema returns nil if the Store's schema is this version's, and
// otherwise an error matching ErrSchema that says what to do. Open calls
// it with Options.NoMigrate.
func (s *Store) CheckSchema(ctx context.Context) error {
	v, err := readVersion(ctx, s.pool, s.opts.Table)
	switch {
	case err != nil:
		return err
	case v == 0:
		return fmt.Errorf("%w: table %s has no idemkv schema (run idemkv migrate, or open without NoMigrate)", ErrSchema, s.opts.Table)
	case v != schemaVersion:
		return fmt.Errorf("%w: table %s has schema version %d, this idemkv needs %d (run idemkv migrate)", ErrSchema, s.opts.Table, v, schemaVersion)
	}
	return nil
}

// querier is a pool, a connection or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readVersion returns the schema version recorded in table's meta table,
// 0 if there is none.
func readVersion(ctx context.Context, q querier, table string) (int, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table+"_meta").Scan(&exists); err != nil {
		return 0, storageErr("read the schema version", err)
	}
	if !exists {
		return 0, nil
	}
	var v string
	err := q.QueryRow(ctx, sqlFor(table, `SELECT value FROM {T}_meta WHERE name = 'schema'`)).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, storageErr("read the schema version", err)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%w: table %s_meta: schema version %q", engine.ErrCorrupt, table, v)
	}
	return n, nil
}
