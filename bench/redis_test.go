package bench

import (
	"context"
	"testing"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/redistest"
	"github.com/redis/go-redis/v9"
)

// TestRedisBaseline measures the fresh, replay and conflict workloads with
// the Redis baseline and idemkv's Redis backend on a real redis-server, and
// checks their answers, the reported persistence settings and that the run
// deletes its keys.
func TestRedisBaseline(t *testing.T) {
	url := redistest.Start(t, &redistest.Options{Config: []string{"--appendonly", "yes", "--appendfsync", "everysec"}})
	const ops = 200
	for _, wl := range []Workload{Fresh, Replay, Conflict} {
		rep, err := Run(context.Background(), Config{
			Workload: wl, Durability: engine.Relaxed, BodySize: 300, Ops: ops, Concurrency: 8,
			Dir: t.TempDir(), Redis: url, Backend: "redis",
		})
		if err != nil {
			t.Fatalf("%v: %v", wl, err)
		}
		// The systems check their answers as they go (a fresh key that
		// exists, a retried key that is missing, a wrong outcome or
		// replayed body, fail the run).
		for _, sys := range []string{"redis", "idemkv-redis"} {
			r, ok := rep.Result(sys)
			if !ok {
				t.Fatalf("%v: no %s result in %+v", wl, sys, rep.Results)
			}
			if r.Ops != ops || r.OpsPerSec <= 0 {
				t.Errorf("%v: %s did %d operations at %v ops/s; want %d", wl, sys, r.Ops, r.OpsPerSec, ops)
			}
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
