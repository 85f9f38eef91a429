package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnvClusterURL is the environment variable that names a running Redis
// Cluster to use, as a redis+cluster:// URL.
const EnvClusterURL = "IDEMKV_TEST_REDIS_CLUSTER_URL"

// StartCluster returns the URL of a Redis Cluster of three masters for t,
// in the form redisstore.Open reads:
// redis+cluster://127.0.0.1:P1?addr=127.0.0.1:P2&addr=127.0.0.1:P3. It
// uses the cluster named by IDEMKV_TEST_REDIS_CLUSTER_URL if set, or else
// launches three redis-server processes, splits the 16384 hash slots
// between them and waits until the cluster reports ok. Without
// redis-server it skips t, as Start does.
func StartCluster(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvClusterURL); u != "" {
		return u
	}
	bin := serverBinary(t)
	root := t.TempDir()
	var addrs []string
	for i := range 3 {
		dir := filepath.Join(root, fmt.Sprint("node", i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		addr, err := launch(t, bin, dir, []string{
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "2000",
		})
		if err != nil {
			t.Fatalf("redistest: cluster node %d: %v", i, err)
		}
		addrs = append(addrs, addr)
	}
	if err := formCluster(addrs); err != nil {
		t.Fatalf("redistest: forming the cluster: %v", err)
	}
	return "redis+cluster://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2]
}

// formCluster gives each node a third of the slots, introduces them to
// each other, and waits for cluster_state:ok on every node.
func formCluster(addrs []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const slots = 16384
	var clients []*redis.Client
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	for i, addr := range addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		clients = append(clients, c)
		lo, hi := i*slots/len(addrs), (i+1)*slots/len(addrs)-1
		if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			return fmt.Errorf("%s: ADDSLOTSRANGE %d %d: %w", addr, lo, hi, err)
		}
	}
	for _, addr := range addrs[1:] {
		host, port, _ := strings.Cut(addr, ":")
		if err := clients[0].Do(ctx, "CLUSTER", "MEET", host, port).Err(); err != nil {
			return fmt.Errorf("MEET %s: %w", addr, err)
		}
	}
	for {
		ok := true
		for _, c := range clients {
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
				ok = false
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ok after 30s: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
