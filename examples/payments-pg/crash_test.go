package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine/pgstore"
	"github.com/idemkv/idemkv/engine/pgtest"
	"github.com/idemkv/idemkv/examples/internal/killtest"
	"github.com/idemkv/idemkv/record"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestPaymentsSurviveKillsWithLedgerAndRecordsInStep runs payments for
// many keys from concurrent clients while the server is killed with
// SIGKILL at random moments (50 times by default) and restarted on the
// same database; clients retry each key until it is paid. Then:
//
//   - every key has exactly one payment row: no payment was made twice;
//   - every payment row has its completed idempotency record, naming it,
//     and every record has its payment row: a crash left both or neither;
//   - every acknowledged payment replays, byte for byte, without a new
//     payment.
//
// IDEMKV_PAYMENTS_PG_KILLS sets the number of kills.
func TestPaymentsSurviveKillsWithLedgerAndRecordsInStep(t *testing.T) {
	kills := 50
	if s := os.Getenv("IDEMKV_PAYMENTS_PG_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		kills = n
	}
	url := pgtest.Start(t)
	bin := killtest.Build(t)
	// A short lease, so that a retry of a request the kill interrupted
	// runs again soon (after 300 ms instead of 30 s).
	start := func() *killtest.Server {
		return killtest.Start(t, bin, "-listen", "127.0.0.1:0", "-postgres", url, "-lease", "300ms")
	}
	const clients = 8
	keysPerClient := max(12, 2*kills) // enough work to outlast the kills
	answers := make(map[string]string)
	var mu sync.Mutex
	srv := start()
	var addr sync.Map
	addr.Store("", srv.Addr)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keysPerClient {
				key := fmt.Sprintf("c%d-k%d", c, k)
				for {
					a, _ := addr.Load("")
					status, body, _, err := killtest.Post(a.(string), "/v1/payments", key, `{"amount":1200}`)
					if err == nil && status == http.StatusCreated {
						mu.Lock()
						answers[key] = body
						mu.Unlock()
						break
					}
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	rng := rand.New(rand.NewPCG(3, 4))
	killed := 0
	for killed < kills {
		select {
		case <-done:
			t.Fatalf("the clients finished after %d of %d kills: give them more work", killed, kills)
		case <-time.After(time.Duration(20+rng.IntN(150)) * time.Millisecond):
		}
		srv.Kill()
		srv.Wait(t)
		killed++
		srv = start()
		addr.Store("", srv.Addr)
	}
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		close(stop)
		t.Fatal("the clients did not finish")
	}

	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rows, err := pool.Query(ctx, `SELECT id, idem_key FROM payments ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	type payment struct {
		ID  int64
		Key string
	}
	paid, err := pgx.CollectRows(rows, pgx.RowToStructByPos[payment])
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string][]int64{}
	for _, p := range paid {
		byKey[p.Key] = append(byKey[p.Key], p.ID)
	}

	store, err := pgstore.Open(ctx, url, &pgstore.Options{ScopeSecret: []byte(demoSecret), SweepEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	records := map[string]*record.Record{}
	err = store.List(ctx, record.Prefix{}, func(k record.Key, _ *record.Record) error {
		r, err := store.Get(ctx, k)
		if err != nil {
			return err
		}
		records[k.Key] = r
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	for key, ids := range byKey {
		if len(ids) != 1 {
			t.Errorf("%s: %d payments %v; want exactly one", key, len(ids), ids)
			continue
		}
		r := records[key]
		if r == nil || r.State != record.Completed {
			t.Errorf("%s: payment %d has no completed idempotency record", key, ids[0])
			continue
		}
		if want := fmt.Sprintf(`"payment":%d,`, ids[0]); !strings.Contains(string(r.Body), want) {
			t.Errorf("%s: the record %s does not name payment %d", key, r.Body, ids[0])
		}
	}
	for key, r := range records {
		if r.State == record.Completed && len(byKey[key]) == 0 {
			t.Errorf("%s: a completed record %s without its payment", key, r.Body)
		}
	}
	if len(answers) != clients*keysPerClient {
		t.Fatalf("%d keys paid; want %d", len(answers), clients*keysPerClient)
	}
	for key, body := range answers {
		status, again, h, err := killtest.Post(srv.Addr, "/v1/payments", key, `{"amount":1200}`)
		if err != nil || status != http.StatusCreated || again != body || h.Get("Idempotency-Replay") != "true" {
			t.Errorf("%s: replay %d %q (replay %q) %v; want %q", key, status, again, h.Get("Idempotency-Replay"), err, body)
		}
	}
	var after int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM payments`).Scan(&after); err != nil || after != len(paid) {
		t.Fatalf("the replays made payments: %d rows, were %d (%v)", after, len(paid), err)
	}
	t.Logf("%d kills, %d payments acknowledged, %d rows, %d records: one payment per key, each with its record",
		killed, len(answers), len(paid), len(records))
}
