package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/redisstore"
	"github.com/idemkv/idemkv/engine/redistest"
	"github.com/idemkv/idemkv/record"
	"github.com/redis/go-redis/v9"
)

// dropProxy forwards TCP to a Redis server; when armed, it swallows the
// next reply and cuts the connection, as a network fault after the server
// ran the command would. go-redis then sends the command again.
type dropProxy struct {
	armed atomic.Bool
	skip  atomic.Int32 // replies to pass once armed, before the one dropped
	drops atomic.Int32
}

// proxied starts a server and a dropProxy in front of it, and returns the
// proxy and its URL.
func proxied(t *testing.T) (*dropProxy, string) {
	t.Helper()
	target := strings.TrimSuffix(strings.TrimPrefix(redistest.Start(t, nil), "redis://"), "/0")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	p := &dropProxy{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			go func() { _, _ = io.Copy(s, c); _ = s.Close() }()
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 {
						if p.armed.Load() && p.skip.Add(-1) < 0 && p.armed.CompareAndSwap(true, false) {
							p.drops.Add(1)
							_ = s.Close()
							return
						}
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return p, "redis://" + l.Addr().String() + "/0"
}

// warm runs each script once, so that the calls under test are one
// EVALSHA each.
func warm(t *testing.T, s *redisstore.Store) {
	t.Helper()
	ctx := context.Background()
	for _, k := range []string{"warm-1", "warm-2"} {
		res, err := s.Begin(ctx, request(k))
		if err != nil || res.Outcome != engine.Proceed {
			t.Fatalf("warm-up: %v %v", res.Outcome, err)
		}
		if k == "warm-1" {
			err = res.Claim.Complete(ctx, engine.Response{Status: 200})
		} else {
			err = res.Claim.Release(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestLostReplies: every script answers a repeat of its own call (a
// client resending a command whose reply was lost) as it answered the
// call, so a lost reply changes nothing the caller sees.
func TestLostReplies(t *testing.T) {
	p, url := proxied(t)
	for _, layout := range []int{1, 2} {
		t.Run(fmt.Sprintf("layout%d", layout), func(t *testing.T) { lostReplies(t, p, url, layout) })
	}
}

func lostReplies(t *testing.T, p *dropProxy, url string, layout int) {
	prefix := fmt.Sprintf("lost%d:", prefixes.Add(1))
	s := openStore(t, url, redisstore.Options{Prefix: prefix, Lease: 2 * time.Second, Layout: layout})
	warm(t, s)
	ctx := context.Background()
	lose := func(what string, skip int32, f func() error) {
		t.Helper()
		p.skip.Store(skip)
		p.armed.Store(true)
		before := p.drops.Load()
		if err := f(); err != nil {
			t.Fatalf("%s after a lost reply: %v", what, err)
		}
		if p.drops.Load() != before+1 {
			t.Fatalf("%s: no reply was lost", what)
		}
	}

	for _, wait := range []engine.WaitPolicy{engine.NoWait, engine.Wait} {
		r := request("begin-" + map[engine.WaitPolicy]string{engine.NoWait: "nowait", engine.Wait: "wait"}[wait])
		r.WhenInProgress = wait
		var res engine.Result
		start := time.Now()
		lose("Begin", 0, func() (err error) { res, err = s.Begin(ctx, r); return err })
		if res.Outcome != engine.Proceed || res.Recovered || res.Claim.Attempt() != 1 || time.Since(start) > time.Second {
			t.Fatalf("Begin (%v) whose reply was lost: %v, recovered %v, attempt after %v",
				wait, res.Outcome, res.Recovered, time.Since(start))
		}
		lose("Checkpoint", 0, func() error { return res.Claim.Checkpoint(ctx, "p", []byte("d")) })
		lose("Complete", 0, func() error { return res.Claim.Complete(ctx, engine.Response{Status: 201, Body: []byte("A")}) })
		got, err := s.Begin(ctx, r)
		if err != nil || got.Outcome != engine.Replay || string(got.Record.Body) != "A" {
			t.Fatalf("after a Complete whose reply was lost: %v %v", got.Outcome, err)
		}
	}

	res := proceed(t, s, "release")
	lose("Release", 0, func() error { return res.Claim.Release(ctx) })
	if got, err := s.Begin(ctx, request("release")); err != nil || got.Outcome != engine.Proceed || got.Recovered {
		t.Fatalf("after a Release whose reply was lost: %v %v", got.Outcome, err)
	}

	// A takeover of a crashed claim whose reply was lost: the repeat
	// finds its own claim and answers it, recovered, attempt 2. (The
	// first takeover loads the scripts, so that the second sends one
	// command each: in layout 2, SET NX GET and lookScript before the
	// takeover, whose reply is the third.)
	crashed := openStore(t, url, redisstore.Options{Prefix: prefix, Lease: 300 * time.Millisecond, RenewEvery: -1, Layout: layout})
	proceed(t, crashed, "takeover-warm")
	proceed(t, crashed, "takeover")
	time.Sleep(400 * time.Millisecond)
	if err := proceed(t, s, "takeover-warm").Claim.Release(ctx); err != nil {
		t.Fatal(err)
	}
	skip := int32(2)
	if layout == 1 {
		skip = 0
	}
	lose("a takeover's Begin", skip, func() (err error) { res, err = s.Begin(ctx, request("takeover")); return err })
	if res.Outcome != engine.Proceed || !res.Recovered || res.Claim.Attempt() != 2 {
		t.Fatalf("a takeover whose reply was lost: %v, recovered %v", res.Outcome, res.Recovered)
	}
	if err := res.Claim.Complete(ctx, engine.Response{Status: 201}); err != nil {
		t.Fatal(err)
	}
}

// TestCompleteFailures: ctx does not interrupt Complete (as with the
// embedded engine), and a Complete that Redis refuses gives the claim
// back, so that a retry runs at once instead of after the lease.
func TestCompleteFailures(t *testing.T) {
	url := redistest.Start(t, &redistest.Options{Config: []string{"--proto-max-bulk-len", "1mb"}})
	s := openStore(t, url, redisstore.Options{Prefix: "fail:"})
	ctx := context.Background()

	res := proceed(t, s, "cancelled")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := res.Claim.Checkpoint(cctx, "charged", []byte("ch_1")); err != nil {
		t.Fatalf("Checkpoint with a cancelled ctx: %v", err)
	}
	if err := res.Claim.Complete(cctx, engine.Response{Status: 200, Body: []byte("A")}); err != nil {
		t.Fatalf("Complete with a cancelled ctx: %v", err)
	}
	if got, err := s.Begin(ctx, request("cancelled")); err != nil || got.Outcome != engine.Replay {
		t.Fatalf("after it: %v %v", got.Outcome, err)
	}

	res = proceed(t, s, "refused")
	body := make([]byte, 3<<20) // over the server's 1 MB bulk limit, even compressed
	x := uint32(1)
	for i := range body {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		body[i] = byte(x)
	}
	if err := res.Claim.Complete(ctx, engine.Response{Status: 200, Body: body}); !errors.Is(err, engine.ErrStorage) {
		t.Fatalf("Complete that Redis refuses: %v; want ErrStorage", err)
	}
	got, err := s.Begin(ctx, request("refused"))
	if err != nil || got.Outcome != engine.Proceed || got.Recovered {
		t.Fatalf("a retry after the refused Complete: %v (recovered %v) %v; want a fresh Proceed", got.Outcome, got.Recovered, err)
	}
	_ = got.Claim.Release(ctx)
}

// TestDamagedRecordIsRefusedAndDeletable: a record damaged on the server
// — a hash (layout 1) that lost its key field; a string (layout 2) with a
// byte flipped in its key, its fields or its stored response, or cut
// short — is reported as ErrCorrupt by Begin and Get, never answered
// from, and Delete removes it.
func TestDamagedRecordIsRefusedAndDeletable(t *testing.T) {
	url := redistest.Start(t, nil)
	rc := rawClient(t, url)
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		layout int
		damage func(rk string) error
	}{
		{"hash without its key", 1, func(rk string) error { return rc.HDel(ctx, rk, "k").Err() }},
		{"string, a byte of the key", 2, func(rk string) error { return flip(ctx, rc, rk, 70) }},
		{"string, a byte of the fields", 2, func(rk string) error { return flip(ctx, rc, rk, 110) }},
		{"string, a byte of the response", 2, func(rk string) error { return flip(ctx, rc, rk, -10) }},
		{"string, the header", 2, func(rk string) error { return rc.SetRange(ctx, rk, 0, "9").Err() }},
		{"string, cut short", 2, func(rk string) error {
			v, err := rc.Get(ctx, rk).Result()
			if err != nil {
				return err
			}
			return rc.Set(ctx, rk, v[:len(v)-5], time.Hour).Err()
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			prefix := fmt.Sprintf("dmg%d:", prefixes.Add(1))
			s := openStore(t, url, redisstore.Options{Prefix: prefix, Layout: c.layout})
			res := proceed(t, s, "k")
			if err := res.Claim.Complete(ctx, engine.Response{Status: 200, Body: []byte(`{"id":"the original response"}`)}); err != nil {
				t.Fatal(err)
			}
			keys, err := rc.Keys(ctx, prefix+"{*").Result()
			if err != nil || len(keys) != 1 {
				t.Fatalf("keys %v %v", keys, err)
			}
			if err := c.damage(keys[0]); err != nil {
				t.Fatal(err)
			}
			key := record.Key{Scope: "t", Endpoint: "POST /x", Key: "k"}
			if _, err := s.Get(ctx, key); !errors.Is(err, engine.ErrCorrupt) {
				t.Fatalf("Get: %v; want ErrCorrupt", err)
			}
			if got, err := s.Begin(ctx, request("k")); !errors.Is(err, engine.ErrCorrupt) {
				t.Fatalf("Begin: %v %v; want ErrCorrupt", got.Outcome, err)
			}
			if err := s.Delete(ctx, key); err != nil {
				t.Fatalf("Delete of the damaged record: %v", err)
			}
			if got, err := s.Begin(ctx, request("k")); err != nil || got.Outcome != engine.Proceed {
				t.Fatalf("after Delete: %v %v", got.Outcome, err)
			}
		})
	}
}

// flip inverts the byte at off of the string at rk (from the end if off
// is negative).
func flip(ctx context.Context, rc *redis.Client, rk string, off int64) error {
	n, err := rc.StrLen(ctx, rk).Result()
	if err != nil {
		return err
	}
	if off < 0 {
		off += n
	}
	b, err := rc.GetRange(ctx, rk, off, off).Result()
	if err != nil || len(b) != 1 {
		return fmt.Errorf("byte %d of %d: %q %v", off, n, b, err)
	}
	return rc.SetRange(ctx, rk, off, string([]byte{b[0] ^ 0x5a})).Err()
}

// TestOptions: settings that cannot work are refused.
func TestOptions(t *testing.T) {
	for _, o := range []redisstore.Options{
		{Lease: time.Second, RenewEvery: 600 * time.Millisecond, ScopeSecret: testSecret}, // a late renewal would lose the key
		{Lease: time.Millisecond, ScopeSecret: testSecret},
		{MaxHold: -time.Second, ScopeSecret: testSecret},
		{PollInterval: time.Second, MaxPollInterval: time.Millisecond, ScopeSecret: testSecret},
		{Prefix: "a{b}", ScopeSecret: testSecret},
		{MaxBodySize: -1, ScopeSecret: testSecret},
		{},                             // no scope secret: replicas could not agree on scopes
		{ScopeSecret: []byte("short")}, // too short to key anything
		{ScopeSecret: testSecret, PreviousScopeSecrets: [][]byte{[]byte("short")}},
	} {
		if _, err := redisstore.New(nil, &o); !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("New(%+v): %v; want ErrInvalid", o, err)
		}
	}
}
