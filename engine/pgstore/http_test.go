package pgstore_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/pgstore"
)

var _ idemhttp.Transaction = pgstore.Transaction{}

// handoverServer serves POST /pay on f's store: the handler inserts a
// ledger row in a transaction and hands it over; ?status=N answers N,
// ?dup=1 makes the commit fail (a deferred unique constraint), ?panic=1
// panics after the handover.
func handoverServer(t *testing.T, f *txFixture, runs *atomic.Int64) *httptest.Server {
	t.Helper()
	m, err := idemhttp.New(f.store, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := runs.Add(1)
		tx, err := f.pool.Begin(r.Context())
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		ref := r.Header.Get("Idempotency-Key")
		if _, err := tx.Exec(r.Context(), `INSERT INTO ledger (ref) VALUES ($1)`, ref); err != nil {
			_ = tx.Rollback(r.Context())
			http.Error(w, err.Error(), 500)
			return
		}
		if r.URL.Query().Get("dup") == "1" {
			_, _ = tx.Exec(r.Context(), `INSERT INTO ledger (ref) VALUES ($1)`, ref)
		}
		if err := idemhttp.HandOver(r.Context(), f.store.Transaction(tx)); err != nil {
			_ = tx.Rollback(r.Context())
			http.Error(w, err.Error(), 500)
			return
		}
		if r.URL.Query().Get("panic") == "1" {
			panic(http.ErrAbortHandler)
		}
		status := 201
		fmt.Sscan(r.URL.Query().Get("status"), &status)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"ref":%q,"run":%d}`, ref, n)
	})
	srv := httptest.NewServer(m.Handler(h))
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, srv *httptest.Server, query, key string) (int, string, http.Header) {
	t.Helper()
	rq, _ := http.NewRequest("POST", srv.URL+"/pay"+query, strings.NewReader(`{"amount":100}`))
	rq.Header.Set("Idempotency-Key", key)
	rq.Header.Set("Authorization", "Bearer sk_test")
	resp, err := srv.Client().Do(rq)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestHandOverCommitsTheResponseWithTheHandlersWrites: over HTTP, a
// handler that hands its transaction over gets its row and its response
// committed together; the retry replays without running it, and
// concurrent duplicates run it once.
func TestHandOverCommitsTheResponseWithTheHandlersWrites(t *testing.T) {
	f := newTxFixture(t, pgstore.Options{})
	var runs atomic.Int64
	srv := handoverServer(t, f, &runs)
	const keys, copies = 10, 6
	var wg sync.WaitGroup
	bodies := make([][]string, keys)
	var mu sync.Mutex
	for k := range keys {
		bodies[k] = make([]string, copies)
		for c := range copies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status, body, _ := post(t, srv, "", fmt.Sprint("pay-", k))
				if status != 201 {
					t.Errorf("key %d copy %d: %d %s", k, c, status, body)
				}
				mu.Lock()
				bodies[k][c] = body
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	if runs.Load() != keys {
		t.Fatalf("the handler ran %d times for %d keys", runs.Load(), keys)
	}
	for k := range keys {
		for c := range copies {
			if bodies[k][c] != bodies[k][0] {
				t.Fatalf("key %d: copy %d got %q, copy 0 %q", k, c, bodies[k][c], bodies[k][0])
			}
		}
	}
	if got := f.ledger(t); len(got) != keys {
		t.Fatalf("%d ledger rows for %d keys", len(got), keys)
	}
	status, body, h := post(t, srv, "", "pay-0")
	if status != 201 || body != bodies[0][0] || h.Get("Idempotency-Replay") != "true" {
		t.Fatalf("retry: %d %q replay=%q", status, body, h.Get("Idempotency-Replay"))
	}
}

// TestHandOverUndoesWhatIsNotStored: a response the middleware does not
// store (a 500), a handler that panics, and a commit that fails leave no
// ledger row, and the retry runs the handler again. A failed commit
// answers 503 with Retry-After instead of the handler's response, which
// would claim writes that were undone.
func TestHandOverUndoesWhatIsNotStored(t *testing.T) {
	f := newTxFixture(t, pgstore.Options{})
	var runs atomic.Int64
	srv := handoverServer(t, f, &runs)

	if status, body, _ := post(t, srv, "?status=500", "k500"); status != 500 {
		t.Fatalf("status 500: got %d %s", status, body)
	}
	if status, _, _ := post(t, srv, "?panic=1", "kpanic"); status != 0 {
		t.Fatalf("a panicking handler answered %d", status)
	}
	status, body, h := post(t, srv, "?dup=1", "kdup")
	var p struct{ Code string }
	_ = json.Unmarshal([]byte(body), &p)
	if status != 503 || p.Code != idemhttp.CodeUnavailable || h.Get("Retry-After") == "" || strings.Contains(body, `"ref"`) {
		t.Fatalf("a failed commit answered %d %s (Retry-After %q); want 503 %s without the handler's body", status, body, h.Get("Retry-After"), idemhttp.CodeUnavailable)
	}
	if n := f.pool.Stat().AcquiredConns(); n != 0 {
		t.Fatalf("%d connections still held: a handed-over transaction was not ended", n)
	}
	if got := f.ledger(t); len(got) != 0 {
		t.Fatalf("ledger %v: writes of unstored responses were kept", got)
	}
	before := runs.Load()
	for _, k := range []string{"k500", "kpanic", "kdup"} {
		if status, body, _ := post(t, srv, "", k); status != 201 {
			t.Fatalf("retry of %s: %d %s", k, status, body)
		}
	}
	if runs.Load() != before+3 {
		t.Fatalf("the retries ran the handler %d times, want 3", runs.Load()-before)
	}
	if got := f.ledger(t); len(got) != 3 {
		t.Fatalf("ledger %v after the retries, want 3 rows", got)
	}
}
