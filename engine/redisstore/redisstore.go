// Package redisstore keeps idemkv's contract on Redis or Valkey,
// standalone or Cluster, for services that run as many replicas: a retry
// that lands on another replica is answered as if it had come back to the
// first.
//
// A Store is an engine.Store: the middleware (package idemhttp) and the
// proxy use it in place of the embedded engine and give the same four
// answers — Proceed, Replay, Conflict, InProgress.
//
// # How it works
//
// Each record is one Redis string (layout 2, drawn in layout.go), named by
// a digest of the key inside a hash tag, so a record never spans hash
// slots. Every decision is atomic on the server, and the common ones cost
// what the claim/complete pattern written by hand costs, two commands:
//
//   - Begin claims a new key with one native SET … NX GET PX, which sets
//     the claim (a lease of Lease, and a claim id) if the key is free and
//     otherwise returns the record there: a completed one answers Replay or
//     Conflict at once. A claim found in flight costs one script more (its
//     lease is read on the server's clock, so replicas with skewed clocks
//     agree): InProgress while its lease runs, or, once it has run out, a
//     takeover — a compare-and-set of the claim id — answered Proceed with
//     Recovered, the attempt and fencing token incremented.
//   - While the handler runs, the claim renews its lease every Lease/3 (up
//     to MaxHold), so a long handler keeps its claim and a crashed
//     replica's claim is recovered about one Lease after its last renewal.
//   - Complete, Release and Checkpoint are one short script each, which
//     acts only if the caller's claim id (random, never reused) is still
//     the one in the record: a replica whose lease expired and was taken
//     over — even by a claim made after the record was released or deleted
//     — gets engine.ErrLeaseLost and cannot overwrite the new holder's
//     record.
//   - Completed responses are stored in package record's format (the
//     embedded store's, compressed the same way, with the same
//     fingerprints) and expire TTL after completion (PX).
//
// Every command may run twice for one call (go-redis resends a command
// whose connection broke before its reply came); each answers a repeat
// of its own call as it answered the call (see scripts.go), so a lost
// reply never turns into a second run or a lost response.
//
// Records of versions before layout 2 (one hash each, scripts.go) are read,
// waited for, taken over and fenced as before; Options.Layout says how to
// upgrade replicas without a request failing.
//
// # Waiting for a request in flight
//
// A waiting duplicate marks the record; the Complete or Release of a
// marked claim publishes its key, and every Store that has waited keeps
// one subscription that wakes its waiters (waiting.go). It also asks
// Redis itself at most every MaxPollInterval, and when the holder's lease
// runs out, so a lost notification delays a waiter but never strands it;
// on a server that refuses SUBSCRIBE, waiters poll.
//
// # Durability
//
// What a completed record survives is what the Redis deployment survives:
// with appendonly yes and appendfsync everysec a crash of the Redis host
// loses at most about a second of completions, after which a retry runs
// its handler again. Choose accordingly; the embedded engine fsyncs
// before it answers.
package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemkv/idemkv/codec"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/internal/sharedstore"
	"github.com/idemkv/idemkv/record"
	"github.com/redis/go-redis/v9"
)

// Options configure a Store. The zero value, and a nil *Options, give the
// documented defaults.
type Options struct {
	// TTL is how long a completed record is replayed, from its
	// completion. Default 24h.
	TTL time.Duration
	// Lease is how long a claim stays held without a renewal; the claim
	// renews it every Lease/3 while the handler runs. A replica that
	// crashes leaves a claim that the next retry recovers about one Lease
	// later. Default 30s.
	Lease time.Duration
	// RenewEvery is how often a claim renews its lease while the handler
	// runs: at most Lease/2, so that one late renewal does not lose the
	// key. Default Lease/3; negative never renews, so a claim must end
	// within Lease (or lose the key to a retry).
	RenewEvery time.Duration
	// MaxHold is how long a claim keeps renewing its lease: a claim that
	// is neither completed nor released (a handler stuck, or a caller
	// that forgot it) loses the key about one Lease after MaxHold, as a
	// crashed replica's would. Default 5m, the embedded engine's Lease.
	MaxHold time.Duration
	// WhenInProgress is what Begin does when a request with the same
	// fingerprint holds the key: engine.Wait (the default) or
	// engine.NoWait.
	WhenInProgress engine.WaitPolicy
	// MaxPollInterval is the longest a waiting Begin goes without asking
	// Redis whether the request it waits for has ended: it is told by a
	// notification (see waiting.go), and asks itself only as a fallback
	// (of the waiters of one key in one Store, one asks per interval), and
	// when the holder's lease runs out. Without a subscription (a server
	// that refuses SUBSCRIBE), a waiting Begin polls instead, its first
	// pause PollInterval doubling up to MaxPollInterval. Defaults 2ms and
	// 1s.
	PollInterval, MaxPollInterval time.Duration
	// MaxBodySize is the largest response body Complete accepts. Default
	// 16 MiB.
	MaxBodySize int
	// Compression is how response bodies are stored. Default codec.Auto.
	Compression codec.Method
	// Prefix starts every Redis key. Default "idemkv:".
	Prefix string
	// AllowNoPersistence makes Open accept a server that persists nothing
	// (see ErrNoPersistence). Default false: Open refuses it.
	AllowNoPersistence bool
	// ScopeSecret keys the digests that credentials are stored as (see
	// engine.Scoper). Required, at least engine.MinScopeSecretLen bytes,
	// and the same on every replica that shares the server: a replica
	// with another secret would not find the others' records. Open
	// refuses a secret that differs from the one the server's records
	// are stored under (ErrScopeSecret).
	ScopeSecret []byte
	// PreviousScopeSecrets are earlier secrets whose records are still
	// found, for a rotation: keep the old secret here for one TTL (and
	// MaxHold) after every replica took the new one.
	PreviousScopeSecrets [][]byte
	// Layout is the layout a Store writes new records in: 2 (the
	// default), a Redis string, whose new keys are claimed by one native
	// SET … NX GET; or 1, a Redis hash, that of versions before it. A
	// Store reads and answers from both. Versions before layout 2 read
	// only hashes, and answer a request whose key holds a string with an
	// error (503 from the middleware; never a second run); so, for a
	// rolling upgrade from them with no such errors, deploy first with
	// Layout 1, then, once no replica of an older version is left,
	// without it.
	Layout int
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
	if c.Prefix == "" {
		c.Prefix = "idemkv:"
	}
	if c.Layout == 0 {
		c.Layout = 2
	}
	switch {
	case c.Layout != 1 && c.Layout != 2:
		return c, fmt.Errorf("%w: Layout %d (1 or 2)", engine.ErrInvalid, c.Layout)
	case strings.ContainsAny(c.Prefix, "{}"):
		return c, fmt.Errorf("%w: Prefix %q must not contain braces (they are the hash tag)", engine.ErrInvalid, c.Prefix)
	}
	return c, nil
}

// Store is an idempotency store on Redis. It is safe for concurrent use.
type Store struct {
	c    redis.UniversalClient
	own  bool // Close closes c
	opts Options
	id   string        // random, 128 bits (32 hex digits): starts the ids of this Store's claims
	seq  atomic.Uint64 // numbers this Store's claims

	noNXGet atomic.Bool // the server refuses SET NX GET (before Redis 7.0)

	// ctx ends at Close; it stops renewals and waiting Begins.
	ctx    context.Context
	cancel context.CancelFunc

	st sharedstore.Counters // reported by Stats

	// scoper digests credentials; Open (CheckScopeSecret) replaces it by
	// one that knows the server's upgrade window.
	scoper atomic.Pointer[engine.Scoper]

	// waiter runs waiting Begins; sub is its subscription (see
	// waiting.go) to channel (Prefix + "done"), on which Complete and
	// Release publish waited-for keys.
	waiter  sharedstore.Waiter
	sub     subscription
	channel string

	mu     sync.RWMutex // orders work.Add (read) against Close (write)
	closed atomic.Bool
	work   sync.WaitGroup // Begin calls and renewal goroutines
	once   sync.Once
}

var _ engine.Store = (*Store)(nil)

// New returns a Store on client, which may be a *redis.Client, a
// *redis.ClusterClient or any redis.UniversalClient. Close does not close
// client. A nil o means the documented defaults.
func New(client redis.UniversalClient, o *Options) (*Store, error) {
	opts, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	scoper, err := engine.NewScoper(engine.ScopeKeys{Secret: opts.ScopeSecret, Previous: opts.PreviousScopeSecrets})
	if err != nil {
		return nil, err
	}
	s := &Store{c: client, opts: opts, id: hex.EncodeToString(b[:]), channel: opts.Prefix + "done"}
	s.scoper.Store(scoper)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.waiter = sharedstore.Waiter{
		Subscribed: s.subscribed, Closed: s.closed.Load, Done: s.ctx.Done(),
		PollInterval: opts.PollInterval, MaxPollInterval: opts.MaxPollInterval, Waits: &s.st.Waits,
	}
	return s, nil
}

// Open connects to the server at url and returns a Store that owns the
// connection. A redis:// or rediss:// URL names a standalone server; a
// redis+cluster:// URL (hosts in addr= parameters, as
// redis.ParseClusterURL reads them) a Cluster, for example
// redis+cluster://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002.
// It checks the connection with a PING, and the server's persistence with
// CheckPersistence unless Options.AllowNoPersistence. The client honours
// contexts' deadlines (ContextTimeoutEnabled), so a renewal gives up in
// time.
func Open(ctx context.Context, url string, o *Options) (*Store, error) {
	var client redis.UniversalClient
	if rest, ok := strings.CutPrefix(url, "redis+cluster://"); ok {
		co, err := redis.ParseClusterURL("redis://" + rest)
		if err != nil {
			return nil, fmt.Errorf("redisstore: %w: %w", engine.ErrInvalid, err)
		}
		co.ContextTimeoutEnabled = true
		client = redis.NewClusterClient(co)
	} else {
		so, err := redis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("redisstore: %w: %w", engine.ErrInvalid, err)
		}
		so.ContextTimeoutEnabled = true
		client = redis.NewClient(so)
	}
	s, err := New(client, o)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	s.own = true
	client.AddHook(roundTrips{&s.st})
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, storageErr("ping", err)
	}
	if !s.opts.AllowNoPersistence {
		if err := CheckPersistence(ctx, client); err != nil {
			_ = client.Close()
			return nil, err
		}
	}
	if err := s.CheckScopeSecret(ctx); err != nil {
		_ = client.Close()
		return nil, err
	}
	return s, nil
}

// CheckPersistence returns an error matching ErrNoPersistence if the
// server behind client (every master of a Cluster) persists nothing:
// neither appendonly yes nor a save point. A server that refuses CONFIG
// (some managed services disable it, and keep their own persistence) is
// taken to persist. New does not call it; Open does.
func CheckPersistence(ctx context.Context, client redis.UniversalClient) error {
	switch c := client.(type) {
	case *redis.Client:
		return checkPersistence(ctx, c)
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, checkPersistence)
	}
	return nil
}

// CheckPersistence is CheckPersistence on the Store's client.
func (s *Store) CheckPersistence(ctx context.Context) error { return CheckPersistence(ctx, s.c) }

func checkPersistence(ctx context.Context, c *redis.Client) error {
	aof, err := c.ConfigGet(ctx, "appendonly").Result()
	var save map[string]string
	if err == nil {
		save, err = c.ConfigGet(ctx, "save").Result()
	}
	var refused redis.Error
	switch {
	case errors.As(err, &refused):
		return nil // CONFIG is disabled: a managed service, trusted
	case err != nil:
		return storageErr("read the server's persistence settings", err)
	case aof["appendonly"] == "yes" || strings.TrimSpace(save["save"]) != "":
		return nil
	}
	return fmt.Errorf("%w (server %s)", ErrNoPersistence, c.Options().Addr)
}

// Close stops the renewals of the claims this Store holds (their leases
// then expire and the next retry recovers them) and, if Open made the
// connection, closes it. It is idempotent; every method returns
// engine.ErrClosed after it.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		s.mu.Lock()
		s.closed.Store(true)
		s.mu.Unlock()
		s.cancel()
		s.work.Wait()
		if s.own {
			err = s.c.Close()
		}
	})
	return err
}

// keyOf returns the Redis key of a record: Prefix, then the first 16
// bytes of the SHA-256 of the encoded key, in hex, as the hash tag.
func (s *Store) keyOf(ek []byte) string {
	sum := sha256.Sum256(ek)
	var b strings.Builder
	b.Grow(len(s.opts.Prefix) + 34)
	b.WriteString(s.opts.Prefix)
	b.WriteByte('{')
	b.WriteString(hex.EncodeToString(sum[:16]))
	b.WriteByte('}')
	return b.String()
}

func fpString(fp record.Fingerprint) string {
	return strconv.Itoa(int(fp.Version)) + ":" + strconv.FormatUint(fp.Sum, 10)
}

// parseFP reads what fpString wrote; it returns the zero Fingerprint for
// anything else (the field is informational where it is parsed).
func parseFP(s string) record.Fingerprint {
	v, sum, ok := strings.Cut(s, ":")
	if !ok {
		return record.Fingerprint{}
	}
	ver, err1 := strconv.ParseUint(v, 10, 8)
	n, err2 := strconv.ParseUint(sum, 10, 64)
	if err1 != nil || err2 != nil {
		return record.Fingerprint{}
	}
	return record.Fingerprint{Version: uint8(ver), Sum: n}
}

// Begin asks whether the request may run; see engine.Engine.Begin for the
// outcomes, which are the same. Errors from Redis match engine.ErrStorage.
//
// If ctx ends while the claim script runs, Begin returns ctx's error but
// Redis may have made the claim all the same; the key is then recovered
// one Lease later, as a crashed replica's would be.
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
	rk := s.keyOf(ek)
	ask := func() (engine.Result, time.Duration, error) { return s.ask(ctx, rk, ek, req, wait == engine.Wait) }
	return s.waiter.Begin(ctx, rk, req, wait, ask)
}

// maxRaces bounds how often one ask reads a record again because it
// changed between two reads (a claim that ended, a takeover by another
// replica): each time, another request made progress.
const maxRaces = 16

// ask makes one decision for Begin: claim, replay, conflict, or in flight
// (then left is how long the holder's lease still runs). In layout 2 a
// new key costs one native SET … NX GET, which also answers a replay; a
// claim found in flight or expired costs a lookScript more, and a
// takeover a takeoverScript. A hash found under the key (layout 1) is
// decided by beginScript, which in turn sends a string (layout 2) back
// here; a Store that writes layout 1 starts there.
func (s *Store) ask(ctx context.Context, rk string, ek []byte, req engine.Request, wait bool) (engine.Result, time.Duration, error) {
	ca := time.Now().UnixNano()
	for range maxRaces {
		cid := s.newCID()
		var v string
		var left int64
		var looked bool
		err := errWrongType
		if s.opts.Layout == 2 {
			nv := &value{state: 'f', cid: cid, ttl: s.opts.TTL.Milliseconds(), k: string(ek), fp: req.Fingerprint,
				tok: 1, att: 1, ca: ca, rid: req.RequestID}
			buf := appendValue(getBuf(valueMinLen+len(ek)+64+len(req.RequestID)), nv)
			v, err = s.setNXGet(ctx, rk, buf)
			putBuf(buf) // written when setNXGet returns
			if errors.Is(err, redis.Nil) {
				return s.proceed(rk, cid, req, nv)
			}
		}
		if isWrongType(err) {
			res, inFlight, err1 := s.begin1(ctx, rk, ek, cid, req, wait)
			if !isWrongType(err1) {
				return res, inFlight, err1
			}
			v, left, err = s.look(ctx, rk, wait)
			looked = true
		}
		if err != nil {
			return engine.Result{}, 0, s.scriptErr("begin", ctx, err)
		}
		if v == "" {
			continue // gone, or a hash again: ask again
		}
		res, inFlight, again, err := s.decide(ctx, rk, ek, cid, req, wait, v, left, looked)
		if !again {
			return res, inFlight, err
		}
	}
	return engine.Result{}, 0, storageErr("begin", fmt.Errorf("record %s changed under %d reads in a row", rk, maxRaces))
}

// newCID returns a new claim id (cidLen characters), never used before by
// any Store.
func (s *Store) newCID() string {
	b := make([]byte, 0, cidLen)
	b = append(b, s.id...)
	return string(appendHex(b, s.seq.Add(1), 16))
}

// errWrongType stands for Redis's WRONGTYPE: a key of the other layout.
var errWrongType = errors.New("WRONGTYPE")

func isWrongType(err error) bool { return err != nil && strings.Contains(err.Error(), "WRONGTYPE") }

// setNXGet is SET rk val NX GET PX Lease+TTL: redis.Nil if it claimed the
// key, else the record there. Servers before Redis 7.0 refuse NX with GET;
// for them it runs claimScript, which does the same.
func (s *Store) setNXGet(ctx context.Context, rk string, val []byte) (string, error) {
	px := s.opts.Lease + s.opts.TTL
	if !s.noNXGet.Load() {
		v, err := s.c.SetArgs(ctx, rk, val, redis.SetArgs{Mode: "NX", Get: true, TTL: px}).Result()
		if err == nil || errors.Is(err, redis.Nil) || !strings.Contains(err.Error(), "syntax error") {
			return v, err
		}
		s.noNXGet.Store(true)
	}
	return claimScript.Run(ctx, s.c, []string{rk}, val, px.Milliseconds()).Text()
}

// look runs lookScript: the record in layout 2 and, for a claim, how long
// its lease still runs; "" if there is none or it is a hash.
func (s *Store) look(ctx context.Context, rk string, wait bool) (string, int64, error) {
	v, left, _, err := s.lookHash(ctx, rk, wait)
	return v, left, err
}

// lookHash is look that also tells a hash (layout 1) from no record.
func (s *Store) lookHash(ctx context.Context, rk string, wait bool) (v string, left int64, hash bool, err error) {
	flag := "0"
	if wait {
		flag = "1"
	}
	r, err := lookScript.Run(ctx, s.c, []string{rk}, flag).Slice()
	if err != nil || len(r) == 0 {
		return "", 0, false, err
	}
	v, _ = r[0].(string)
	if len(r) < 2 {
		return "", 0, v == "h", nil
	}
	left, _ = r[1].(int64)
	return v, left, false, nil
}

// decide answers Begin from the record v (layout 2) found under rk, with
// the claim's lease left (ms) if looked. again reports that the record
// changed meanwhile: the caller asks again.
func (s *Store) decide(ctx context.Context, rk string, ek []byte, cid string, req engine.Request, wait bool, v string, left int64, looked bool) (res engine.Result, leftD time.Duration, again bool, err error) {
	d, err := parseValue(v)
	switch {
	case err != nil:
		return res, 0, false, fmt.Errorf("redisstore: record %s: %w", rk, err)
	case d.k != string(ek):
		return res, 0, false, fmt.Errorf("%w: %w", ErrCollision, engine.ErrStorage)
	case d.state == 'f' && d.cid == cid:
		// A repeat of this very call (its reply was lost and the
		// client sent it again): the claim is ours.
		res, _, err = s.proceed(rk, cid, req, d)
		return res, 0, false, err
	case d.state == 'c':
		if d.fp == req.Fingerprint {
			r, err := record.Decode([]byte(d.rec))
			if err != nil {
				return res, 0, false, fmt.Errorf("redisstore: record %s: %w", rk, err)
			}
			return engine.Result{Outcome: engine.Replay, Record: r}, 0, false, nil
		}
		res = engine.Result{Outcome: engine.Conflict, OriginalRequestID: d.rid}
		if r, err := record.Decode([]byte(d.rec)); err == nil {
			res.Record = r.WithoutBody()
		}
		return res, 0, false, nil
	case !looked:
		// A claim: how long its lease runs is on the server's clock.
		v, left, err := s.look(ctx, rk, wait)
		if err != nil {
			return res, 0, false, s.scriptErr("begin", ctx, err)
		}
		if v == "" {
			return res, 0, true, nil
		}
		return s.decide(ctx, rk, ek, cid, req, wait, v, left, true)
	case left > 0 && d.fp != req.Fingerprint:
		return engine.Result{Outcome: engine.Conflict, OriginalRequestID: d.rid}, 0, false, nil
	case left > 0:
		return engine.Result{Outcome: engine.InProgress, OriginalRequestID: d.rid}, time.Duration(left) * time.Millisecond, false, nil
	case d.fp != req.Fingerprint:
		// An interrupted claim of another request.
		return engine.Result{Outcome: engine.Conflict, OriginalRequestID: d.rid, Record: &record.Record{
			State: record.Claimed, RequestID: d.rid, Fingerprint: d.fp, Attempt: d.att,
			CreatedAt: time.Unix(0, d.ca), Checkpoint: d.cp,
		}}, 0, false, nil
	}
	// The lease ran out: take the claim over, with its recovery point.
	nv := &value{state: 'f', cid: cid, ttl: s.opts.TTL.Milliseconds(), k: d.k, fp: d.fp,
		tok: d.tok + 1, att: d.att + 1, ca: d.ca, rid: req.RequestID, prid: d.rid, cp: d.cp}
	n, err := takeoverScript.Run(ctx, s.c, []string{rk}, d.cid, appendValue(nil, nv),
		(s.opts.Lease + s.opts.TTL).Milliseconds(), cid).Int64()
	switch {
	case err != nil:
		return res, 0, false, s.scriptErr("begin", ctx, err)
	case n == 0:
		return res, 0, true, nil
	}
	res, _, err = s.proceed(rk, cid, req, nv)
	return res, 0, false, err
}

// proceed answers Proceed with the claim d (layout 2) that this call made:
// a takeover (Recovered) if it is not the first attempt.
func (s *Store) proceed(rk, cid string, req engine.Request, d *value) (res engine.Result, _ time.Duration, _ error) {
	info := engine.ClaimInfo{
		Key: req.Key, Fingerprint: req.Fingerprint, RequestID: req.RequestID,
		Token: d.tok, Attempt: d.att, CreatedAt: time.Unix(0, d.ca), Checkpoint: d.cp,
	}
	if d.att > 1 {
		res.Recovered = true
		res.Record = &record.Record{
			State: record.Claimed, RequestID: d.prid, Fingerprint: req.Fingerprint,
			Attempt: d.att - 1, CreatedAt: info.CreatedAt, Checkpoint: d.cp,
		}
	}
	return s.claimed(rk, cid, info, d, res)
}

// claimed answers Proceed with a claim this call made (d is its value in
// layout 2; nil for a hash, layout 1).
func (s *Store) claimed(rk, cid string, info engine.ClaimInfo, d *value, res engine.Result) (engine.Result, time.Duration, error) {
	c := s.newClaim(rk, cid, info, d)
	if c == nil {
		// Closed while the claim was made: give it back (best effort;
		// its lease runs out otherwise).
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = s.release(ctx, rk, cid, d != nil)
		cancel()
		return engine.Result{}, 0, engine.ErrClosed
	}
	res.Outcome = engine.Proceed
	res.Claim = engine.NewClaim(c, info)
	return res, 0, nil
}

// begin1 runs beginScript (layout 1); an error matching isWrongType if
// the key holds a string (layout 2).
func (s *Store) begin1(ctx context.Context, rk string, ek []byte, cid string, req engine.Request, wait bool) (engine.Result, time.Duration, error) {
	waitFlag := "0"
	if wait {
		waitFlag = "1"
	}
	v, err := beginScript.Run(ctx, s.c, []string{rk},
		fpString(req.Fingerprint), req.RequestID, s.opts.Lease.Milliseconds(), s.opts.TTL.Milliseconds(),
		strconv.FormatInt(time.Now().UnixNano(), 10), ek, cid, waitFlag).Slice()
	if isWrongType(err) {
		return engine.Result{}, 0, err
	}
	if err != nil {
		return engine.Result{}, 0, s.scriptErr("begin", ctx, err)
	}
	return s.answer(rk, cid, req, v)
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

// scriptErr turns an error of a script run into the store's error.
func (s *Store) scriptErr(op string, ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return ctx.Err()
	case s.closed.Load():
		return engine.ErrClosed // the call raced Close, which closed the client under it
	case strings.Contains(err.Error(), "IDEMKV_COLLISION"):
		return fmt.Errorf("%w: %w", ErrCollision, engine.ErrStorage)
	case strings.Contains(err.Error(), "IDEMKV_DAMAGED"):
		return fmt.Errorf("redisstore: %s: %w: %w", op, engine.ErrCorrupt, err)
	}
	return storageErr(op, err)
}

// answer turns beginScript's reply into a Result; for InProgress, left is
// how long the holder's lease still runs.
func (s *Store) answer(rk, cid string, req engine.Request, v []any) (res engine.Result, left time.Duration, err error) {
	str := func(i int) string {
		if i < len(v) {
			if s, ok := v[i].(string); ok {
				return s
			}
		}
		return ""
	}
	num := func(i int) int64 {
		if i < len(v) {
			switch x := v[i].(type) {
			case int64:
				return x
			case string:
				n, _ := strconv.ParseInt(x, 10, 64)
				return n
			}
		}
		return 0
	}
	checkpoint := func(i int) *record.Checkpoint {
		if str(i) == "" && str(i+1) == "" {
			return nil
		}
		return &record.Checkpoint{Phase: str(i), Data: []byte(str(i + 1))}
	}
	switch str(0) {
	case "p":
		info := engine.ClaimInfo{
			Key: req.Key, Fingerprint: req.Fingerprint, RequestID: req.RequestID,
			Token: uint64(num(1)), Attempt: uint32(num(2)), CreatedAt: time.Unix(0, num(3)),
		}
		if len(v) > 4 {
			info.Checkpoint = checkpoint(5)
			res.Recovered = true
			res.Record = &record.Record{
				State: record.Claimed, RequestID: str(4), Fingerprint: req.Fingerprint,
				Attempt: info.Attempt - 1, CreatedAt: info.CreatedAt, Checkpoint: info.Checkpoint,
			}
		}
		return s.claimed(rk, cid, info, nil, res)
	case "r":
		r, err := record.Decode([]byte(str(1)))
		if err != nil {
			return res, 0, fmt.Errorf("redisstore: record %s: %w", rk, err)
		}
		return engine.Result{Outcome: engine.Replay, Record: r}, 0, nil
	case "x":
		res = engine.Result{Outcome: engine.Conflict, OriginalRequestID: str(1)}
		if b := str(2); b != "" {
			if r, err := record.Decode([]byte(b)); err == nil {
				res.Record = r.WithoutBody()
			}
		}
		return res, 0, nil
	case "xi":
		return engine.Result{Outcome: engine.Conflict, OriginalRequestID: str(1), Record: &record.Record{
			State: record.Claimed, RequestID: str(1), Fingerprint: parseFP(str(6)), Attempt: uint32(num(2)),
			CreatedAt: time.Unix(0, num(3)), Checkpoint: checkpoint(4),
		}}, 0, nil
	case "w":
		return engine.Result{Outcome: engine.InProgress, OriginalRequestID: str(1)}, time.Duration(num(2)) * time.Millisecond, nil
	}
	return res, 0, fmt.Errorf("redisstore: begin: %w: unexpected reply %v", engine.ErrCorrupt, v)
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
	rk := s.keyOf(ek)
	k, r, err := s.read(ctx, rk)
	switch {
	case err != nil:
		return nil, err
	case r == nil:
		return nil, engine.ErrNotFound
	case k != string(ek):
		return nil, fmt.Errorf("%w: %w", ErrCollision, engine.ErrStorage)
	}
	return r, nil
}

// read returns the record under rk, in either layout, and the encoded key
// it is stored for; a nil record if there is none.
func (s *Store) read(ctx context.Context, rk string) (string, *record.Record, error) {
	v, left, hash, err := s.lookHash(ctx, rk, false)
	switch {
	case err != nil:
		return "", nil, s.scriptErr("get", ctx, err)
	case hash:
		return s.readHash(ctx, rk)
	case v == "":
		return "", nil, nil
	}
	d, err := parseValue(v)
	if err != nil {
		return "", nil, fmt.Errorf("redisstore: record %s: %w", rk, err)
	}
	if d.state == 'c' {
		r, err := record.Decode([]byte(d.rec))
		if err != nil {
			return "", nil, fmt.Errorf("redisstore: record %s: %w", rk, err)
		}
		return d.k, r, nil
	}
	return d.k, &record.Record{
		State: record.Claimed, RequestID: d.rid, Fingerprint: d.fp, Attempt: d.att, CreatedAt: time.Unix(0, d.ca),
		Lease: record.Lease{Token: d.tok, ExpiresAt: time.Now().Add(time.Duration(left) * time.Millisecond)}, Checkpoint: d.cp,
	}, nil
}

// readHash is read for a record in layout 1.
func (s *Store) readHash(ctx context.Context, rk string) (string, *record.Record, error) {
	h, err := s.c.HGetAll(ctx, rk).Result()
	if err != nil {
		return "", nil, s.scriptErr("get", ctx, err)
	}
	if len(h) == 0 {
		return "", nil, nil
	}
	k, ok := h["k"]
	if !ok {
		return "", nil, fmt.Errorf("redisstore: record %s: %w: no key field", rk, engine.ErrCorrupt)
	}
	switch h["st"] {
	case "c":
		r, err := record.Decode([]byte(h["rec"]))
		if err != nil {
			return "", nil, fmt.Errorf("redisstore: record %s: %w", rk, err)
		}
		return k, r, nil
	case "f":
		att, _ := strconv.ParseUint(h["att"], 10, 32)
		tok, _ := strconv.ParseUint(h["tok"], 10, 64)
		ca, _ := strconv.ParseInt(h["ca"], 10, 64)
		lu, _ := strconv.ParseInt(h["lu"], 10, 64)
		r := &record.Record{
			State: record.Claimed, RequestID: h["rid"], Fingerprint: parseFP(h["fp"]), Attempt: uint32(att),
			CreatedAt: time.Unix(0, ca), Lease: record.Lease{Token: tok, ExpiresAt: time.UnixMilli(lu)},
		}
		if h["cpp"] != "" || h["cpd"] != "" {
			r.Checkpoint = &record.Checkpoint{Phase: h["cpp"], Data: []byte(h["cpd"])}
		}
		return k, r, nil
	}
	return "", nil, fmt.Errorf("redisstore: record %s: %w: state %q", rk, engine.ErrCorrupt, h["st"])
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
	ek := key.Append(nil)
	rk := s.keyOf(ek)
	n, err := deleteScript.Run(ctx, s.c, []string{rk}, ek).Int64()
	if err != nil && strings.Contains(err.Error(), "IDEMKV_COLLISION") {
		// Another key's record, or this one's with its key damaged
		// (which Lua cannot tell, without the checksum): delete it
		// only if it is damaged.
		if v, _, _ := s.look(ctx, rk, false); v != "" {
			if _, perr := parseValue(v); errors.Is(perr, engine.ErrCorrupt) {
				n, err = dropScript.Run(ctx, s.c, []string{rk}, v).Int64()
			}
		}
	}
	switch {
	case err != nil:
		err = s.scriptErr("delete", ctx, err)
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

// List calls fn for every record under prefix (see engine.Lister), in no
// particular order. Redis keys are digests of record keys, so it reads
// every record the Store's Prefix holds (SCAN, then one read
// each; on a Cluster, SCAN on every master): an operator's tool, not for
// request paths.
func (s *Store) List(ctx context.Context, prefix record.Prefix, fn func(record.Key, *record.Record) error) error {
	if s.closed.Load() {
		return engine.ErrClosed
	}
	var mu sync.Mutex
	var rks []string
	scan := func(ctx context.Context, c redis.Cmdable) error {
		it := c.Scan(ctx, 0, s.opts.Prefix+"{*}", 1000).Iterator()
		for it.Next(ctx) {
			mu.Lock()
			rks = append(rks, it.Val())
			mu.Unlock()
		}
		return it.Err()
	}
	var err error
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, s.c)
	}
	if err != nil {
		return s.scriptErr("list", ctx, err)
	}
	want := prefix.Append(nil)
	for _, rk := range rks {
		ek, rec, err := s.read(ctx, rk)
		switch {
		case errors.Is(err, engine.ErrCorrupt):
			continue // damaged: Get on its key says so
		case err != nil:
			return err
		case rec == nil || !strings.HasPrefix(ek, string(want)):
			continue // gone since the SCAN, or another prefix's
		}
		key, err := record.DecodeKey([]byte(ek))
		if err != nil {
			continue
		}
		if err := fn(key, rec.WithoutBody()); err != nil {
			return err
		}
	}
	return nil
}

var _ engine.Lister = (*Store)(nil)
