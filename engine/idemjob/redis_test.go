package idemjob_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/idemkv/idemkv/engine/idemjob"
	"github.com/idemkv/idemkv/engine/redisstore"
	"github.com/idemkv/idemkv/engine/redistest"
)

// TestDoOnRedisReplicas: consumers on two replicas sharing Redis, each
// given deliveries of one message at once: the job runs once and every
// delivery gets its result.
func TestDoOnRedisReplicas(t *testing.T) {
	url := redistest.Start(t, nil)
	var replicas []*redisstore.Store
	for range 2 {
		s, err := redisstore.Open(context.Background(), url, &redisstore.Options{Prefix: "jobs:", ScopeSecret: []byte("the secret of the job replicas")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		replicas = append(replicas, s)
	}
	var runs atomic.Int64
	job := func(ctx context.Context, run *idemjob.Run) (receipt, error) {
		return receipt{Invoice: "inv", Run: runs.Add(1)}, nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			res, err := idemjob.Do(ctx, replicas[i%2], idemjob.Call{Name: "charge", Key: "order-1", Input: "x"}, job, nil)
			if err == nil && res.Value.Run != 1 {
				t.Errorf("delivery %d got run %d", i, res.Value.Run)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if runs.Load() != 1 {
		t.Fatalf("ran %d times across replicas; want 1", runs.Load())
	}
}
