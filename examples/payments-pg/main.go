// Command payments-pg is a create-payment endpoint whose ledger row and
// idempotency record commit in one PostgreSQL transaction: a crash leaves
// both or neither, so a retry either replays the payment or makes it
// cleanly, never twice.
//
//	go run ./examples/payments-pg -postgres postgres://USER@HOST/DB [-listen 127.0.0.1:8094] [-lease 30s]
//
// (or the URL in IDEMKV_POSTGRES). The handler inserts the payment into
// the table payments in a transaction and hands the transaction to the
// middleware (idemhttp.HandOver), which stores the response in it and
// commits it before the client sees the response:
//
//	curl -i localhost:8094/v1/payments -H 'Authorization: Bearer sk_test_1' -H 'Idempotency-Key: p1' -d '{"amount":1200}'
//	curl -i localhost:8094/v1/payments -H 'Authorization: Bearer sk_test_1' -H 'Idempotency-Key: p1' -d '{"amount":1200}'   # replayed
//	psql "$IDEMKV_POSTGRES" -c 'SELECT * FROM payments'                                                                     # one row
//
// The scope secret (see engine.Scoper) comes from -scope-secret or
// IDEMKV_SCOPE_SECRET; this example has a fixed one for a first try.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/pgstore"
	"github.com/jackc/pgx/v5/pgxpool"
)

// demoSecret is for trying the example only: a deployment's secret is
// random and kept out of the code.
const demoSecret = "payments-pg example secret: replace me in production"

// schema is the example's business table.
const schema = `CREATE TABLE IF NOT EXISTS payments (
	id         bigserial PRIMARY KEY,
	tenant     text NOT NULL,
	idem_key   text NOT NULL,
	amount     bigint NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
)`

func main() {
	listen := flag.String("listen", "127.0.0.1:8094", "address to serve on")
	url := flag.String("postgres", os.Getenv("IDEMKV_POSTGRES"), "PostgreSQL URL (default $IDEMKV_POSTGRES)")
	secret := flag.String("scope-secret", envOr("IDEMKV_SCOPE_SECRET", demoSecret), "scope secret (default $IDEMKV_SCOPE_SECRET, or the example's)")
	lease := flag.Duration("lease", 30*time.Second, "how long a crashed request's claim is held before a retry may run it")
	flag.Parse()
	if *url == "" {
		log.Fatal("payments-pg: give a PostgreSQL URL with -postgres or IDEMKV_POSTGRES")
	}
	ctx := context.Background()
	// One pool for the handler's transactions and the store: a
	// transaction must be on the store's database, not necessarily on
	// its pool.
	pool, err := pgxpool.New(ctx, *url)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, schema); err != nil {
		log.Fatal(err)
	}
	store, err := pgstore.Open(ctx, *url, &pgstore.Options{ScopeSecret: []byte(*secret), Lease: *lease})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	idem, err := idemhttp.New(store, &idemhttp.Options{RequireKey: true})
	if err != nil {
		log.Fatal(err)
	}
	p := &payments{pool: pool, store: store}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/payments", idem.Handler(http.HandlerFunc(p.create)))
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("payments on http://%s\n", ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

type payments struct {
	pool  *pgxpool.Pool
	store *pgstore.Store
}

// create inserts the payment in a transaction that it hands over: the
// middleware commits it together with the stored response.
func (p *payments) create(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	call, _ := idemhttp.FromContext(ctx)
	var req struct {
		Amount int64 `json:"amount"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.Amount <= 0 {
		http.Error(w, `{"error":"amount must be a positive integer"}`, http.StatusUnprocessableEntity)
		return
	}
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		http.Error(w, `{"error":"database unavailable"}`, http.StatusServiceUnavailable)
		return
	}
	var id int64
	// The tenant is the scope's digest (hex); the key as the client sent it.
	err = tx.QueryRow(ctx, `INSERT INTO payments (tenant, idem_key, amount) VALUES ($1, $2, $3) RETURNING id`,
		fmt.Sprintf("%x", call.Key.Scope), call.Key.Key, req.Amount).Scan(&id)
	if err == nil {
		err = idemhttp.HandOver(ctx, p.store.Transaction(tx))
	}
	if err != nil {
		_ = tx.Rollback(ctx)
		http.Error(w, `{"error":"database unavailable"}`, http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", fmt.Sprintf("/v1/payments/%d", id))
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"payment":%d,"amount":%d,"status":"paid"}`, id, req.Amount)
}
