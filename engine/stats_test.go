package engine_test

import (
	"context"
	"testing"
)

// Stats counts the write-ahead log's fsyncs and the time spent in them,
// whose ratio is the mean fsync latency a dashboard shows.
func TestStatsCountFsyncsAndTheirTime(t *testing.T) {
	e, _ := newTestEngine(t, nil)
	res := begin(t, e, req("k", "body"))
	if err := res.Claim.Complete(context.Background(), response("done")); err != nil {
		t.Fatal(err)
	}
	if st := e.Stats(); st.Fsyncs == 0 || st.FsyncTime <= 0 {
		t.Errorf("after a synced Complete: %d fsyncs taking %v", st.Fsyncs, st.FsyncTime)
	}
}
