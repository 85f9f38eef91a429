package bench

import (
	"context"
	"testing"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/redistest"
	"github.com/redis/go-redis/v9"
)

// TestRedisBaseline measures the fresh and replay workloads with the Redis
// baseline on a real redis-server, and checks its answers, the reported
// persistence settings and that the run deletes its keys.
func TestRedisBaseline(t *testing.T) {
	url := redistest.Start(t, &redistest.Options{Config: []string{"--appendonly", "yes", "--appendfsync", "everysec"}})
	const ops = 200
	for _, wl := range []Workload{Fresh, Replay} {
		rep, err := Run(context.Background(), Config{
			Workload: wl, Durability: engine.Relaxed, BodySize: 300, Ops: ops, Concurrency: 8,
			Dir: t.TempDir(), Redis: url,
		})
		if err != nil {
			t.Fatalf("%v: %v", wl, err)
		}
		r, ok := rep.Result("redis")
		if !ok {
			t.Fatalf("%v: no redis result in %+v", wl, rep.Results)
		}
		// The baselines check their answers as they go (a fresh key that
		// exists, a retried key that is missing, fail the run).
		if r.Ops != ops || r.OpsPerSec <= 0 {
			t.Errorf("%v: redis did %d operations at %v ops/s; want %d", wl, r.Ops, r.OpsPerSec, ops)
		}
		if want := `appendonly="yes" appendfsync="everysec" save=""`; rep.RedisPersistence != want {
			t.Errorf("persistence %q; want %q", rep.RedisPersistence, want)
		}
	}
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(o)
	defer rdb.Close()
	if n, err := rdb.DBSize(context.Background()).Result(); err != nil || n != 0 {
		t.Errorf("after the runs the server holds %d keys (%v); want none", n, err)
	}
}
