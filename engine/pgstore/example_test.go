package pgstore_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/pgstore"
	"github.com/idemkv/idemkv/record"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A handler inserts its business row in a transaction and hands the
// transaction to the middleware, which stores the response inside it and
// commits: the row and the record exist together or not at all. (Not run:
// it needs a PostgreSQL server.)
func Example() {
	ctx := context.Background()
	url := os.Getenv("IDEMKV_POSTGRES")
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	store, err := pgstore.Open(ctx, url, &pgstore.Options{ScopeSecret: []byte(os.Getenv("IDEMKV_SCOPE_SECRET"))})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	idem, err := idemhttp.New(store, nil)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/payments", idem.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, err := pool.Begin(r.Context())
		if err != nil {
			http.Error(w, "database unavailable", http.StatusServiceUnavailable)
			return
		}
		var id int64
		err = tx.QueryRow(r.Context(), `INSERT INTO payments (amount) VALUES (1200) RETURNING id`).Scan(&id)
		if err == nil {
			err = idemhttp.HandOver(r.Context(), store.Transaction(tx))
		}
		if err != nil {
			_ = tx.Rollback(r.Context())
			http.Error(w, "database unavailable", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated) // stored inside tx, committed, then sent
		fmt.Fprintf(w, `{"payment":%d}`, id)
	})))
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", mux))
}

// Without the middleware (a queue consumer, a job): Begin, the work in a
// transaction, CompleteTx. (Not run: it needs a PostgreSQL server.)
func ExampleStore_CompleteTx() {
	ctx := context.Background()
	url := os.Getenv("IDEMKV_POSTGRES")
	pool, _ := pgxpool.New(ctx, url)
	store, err := pgstore.Open(ctx, url, &pgstore.Options{ScopeSecret: []byte(os.Getenv("IDEMKV_SCOPE_SECRET"))})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	body := []byte(`{"order":"o-17"}`)
	res, err := store.Begin(ctx, engine.Request{
		Key:         record.Key{Scope: store.Scoper().Scope("queue:orders"), Endpoint: "ship", Key: "msg-8841"},
		Fingerprint: record.Sum(body),
	})
	if err != nil {
		log.Fatal(err)
	}
	if res.Outcome != engine.Proceed {
		return // done before (Replay), or running elsewhere
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		_ = res.Claim.Release(ctx)
		log.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO shipments (order_id) VALUES ('o-17')`); err != nil {
		_ = tx.Rollback(ctx)
		_ = res.Claim.Release(ctx)
		log.Fatal(err)
	}
	// Commits the shipment and the record together; on failure both are
	// undone and the claim released, for the redelivery to run.
	if err := store.CompleteTx(ctx, tx, res.Claim, engine.Response{Status: 200}); err != nil {
		log.Fatal(err)
	}
}
