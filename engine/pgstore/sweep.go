package pgstore

import (
	"context"
	"time"
)

// Expiry.
//
// A row past its expiry is absent to every reader (each statement filters
// on exp), so expiry costs the request path nothing. Expired rows are
// deleted by a sweeper: every SweepEvery, each Store deletes them in
// batches of SweepBatch (found by the index on exp, locked SKIP LOCKED so
// that the sweepers of several replicas share the work instead of
// waiting on each other), until a batch comes back short.
//
// Time-partitioned tables (one per hour or day, dropped whole) would make
// deletion free, but PostgreSQL requires a partitioned table's primary key
// to include the partition key, so the key alone could no longer be
// unique: two rows of one key could live in two partitions, and the
// atomic claim (one row, one lock) would need a lock of its own. Batched
// deletes keep the one-row design; their cost is measured in
// bench/README.md.

// sweepLoop sweeps every SweepEvery until Close.
func (s *Store) sweepLoop() {
	defer s.work.Done()
	t := time.NewTicker(s.opts.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			_, _ = s.Sweep(s.ctx)
		}
	}
}

// Sweep deletes the expired rows now, in batches of SweepBatch, and
// returns how many it deleted. The Store calls it every SweepEvery.
func (s *Store) Sweep(ctx context.Context) (int64, error) {
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, s.sql.sweep, s.opts.SweepBatch)
		if err != nil {
			return total, s.queryErr("sweep", ctx, err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(s.opts.SweepBatch) {
			return total, nil
		}
	}
}
