package redisstore_test

import (
	"context"
	"testing"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/redisstore"
	"github.com/idemkv/idemkv/engine/redistest"
)

// Stats counts the Store's round trips to Redis, and those that failed
// while the server was down: what an operator watches on a dashboard.
func TestStatsCountRoundTripsAndTheirFailures(t *testing.T) {
	rs := redistest.Launch(t, nil)
	s := openStore(t, rs.URL(), redisstore.Options{})
	ctx := context.Background()
	res, err := s.Begin(ctx, request("k"))
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Claim.Complete(ctx, engine.Response{Status: 201}); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.RoundTrips < 2 || st.RoundTripErrors != 0 {
		t.Fatalf("after a Begin and a Complete: %d round trips, %d failed", st.RoundTrips, st.RoundTripErrors)
	}
	rs.Stop()
	if _, err := s.Begin(ctx, request("k2")); err == nil {
		t.Fatal("a Begin succeeded with Redis down")
	}
	if st2 := s.Stats(); st2.RoundTripErrors == 0 || st2.RoundTrips <= st.RoundTrips {
		t.Errorf("with Redis down: %d round trips (%d before), %d failed", st2.RoundTrips, st.RoundTrips, st2.RoundTripErrors)
	}
}
