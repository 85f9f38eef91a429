package pgstore_test

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/pgstore"
)

// TestSweepDeletesExpiredRowsOnly: Sweep deletes every expired row, in
// batches, and no live one (a completed record, a claim). It logs the
// rate; IDEMKV_SWEEP_ROWS sets the number of expired rows (default
// 20,000; bench/README.md quotes 1,000,000).
func TestSweepDeletesExpiredRowsOnly(t *testing.T) {
	rows := 20000
	if v := os.Getenv("IDEMKV_SWEEP_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		rows = n
	}
	f := newTxFixture(t, pgstore.Options{SweepEvery: -1, SweepBatch: 1000})
	live := beginAs(t, f.store, txReq("live", "a"), engine.Proceed)
	if err := live.Claim.Complete(ctx, engine.Response{Status: 201, Body: []byte("kept")}); err != nil {
		t.Fatal(err)
	}
	beginAs(t, f.store, txReq("claimed", "a"), engine.Proceed)
	// Expired rows, written by the server itself (as many replicas' rows
	// would be after a day).
	start := time.Now()
	_, err := f.pool.Exec(ctx, `INSERT INTO `+f.o.Table+` (k, st, fpv, fps, rid, cid, tok, att, ca, rec, exp)
		SELECT decode(lpad(to_hex(i), 16, '0'), 'hex'), 'c', 1, i, 'req', 'cid', 1, 1, 0, repeat('x', 1500)::bytea,
			now() - interval '1 hour'
		FROM generate_series(1, $1) AS i`, rows)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(ctx, `VACUUM ANALYZE `+f.o.Table); err != nil {
		t.Fatal(err)
	}
	loaded := time.Since(start)
	start = time.Now()
	n, err := f.store.Sweep(ctx)
	took := time.Since(start)
	if err != nil || n != int64(rows) {
		t.Fatalf("Sweep deleted %d rows (%v); want %d", n, err, rows)
	}
	var left int
	if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM `+f.o.Table).Scan(&left); err != nil || left != 2 {
		t.Fatalf("%d rows left (%v); want the 2 live ones", left, err)
	}
	rep := beginAs(t, f.store, txReq("live", "a"), engine.Replay)
	if string(rep.Record.Body) != "kept" {
		t.Fatalf("the live record: %q", rep.Record.Body)
	}
	t.Logf("swept %d expired rows of 1.5 KB in %v (%.0f rows/s, %d statements of 1,000); loading them took %v",
		rows, took.Round(time.Millisecond), float64(rows)/took.Seconds(), (rows+999)/1000+1, loaded.Round(time.Millisecond))
}
