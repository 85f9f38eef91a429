package engine

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/idemkv/idemkv/record"
)

// blockCacheCount writes n records, flushes, replays them twice
// from storage and returns the block cache's metrics.
func blockCacheCount(t *testing.T, o *Options, n int) pebble.CacheMetrics {
	t.Helper()
	e, err := Open("data", o)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	key := func(i int) record.Key {
		return record.Key{Scope: "tenant", Endpoint: "POST /orders", Key: fmt.Sprint("k", i)}
	}
	body := make([]byte, 600)
	for i := range n {
		res, err := e.Begin(ctx, Request{Key: key(i), Fingerprint: record.Fingerprint{Version: 1, Sum: 1}})
		if err != nil {
			t.Fatal(err)
		}
		if err := res.Claim.Complete(ctx, Response{Status: 201, Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.db.Flush(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		for i := range n {
			res, err := e.Begin(ctx, Request{Key: key(i), Fingerprint: record.Fingerprint{Version: 1, Sum: 1}})
			if err != nil || res.Outcome != Replay {
				t.Fatalf("key %d: %v %v", i, res.Outcome, err)
			}
		}
	}
	return e.db.Metrics().BlockCache
}

// TestOpenHugeBlockCache: a BlockCacheSize meant as "as much as it takes"
// (math.MaxInt64, or anything within 3 × MemTableSize of it) must still
// cache blocks: Open adds the memtables' room to it, which must saturate
// rather than wrap to a negative size (a cache that holds nothing).
func TestOpenHugeBlockCache(t *testing.T) {
	for _, size := range []int64{1 << 40, math.MaxInt64 - 3<<20, math.MaxInt64} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			m := blockCacheCount(t, &Options{
				FS: vfs.NewMem(), CacheSize: -1, Durability: Relaxed,
				MemTableSize: 1 << 20, BlockCacheSize: size,
			}, 300)
			t.Logf("block cache: %d blocks, %d bytes, %d hits, %d misses", m.Count, m.Size, m.Hits, m.Misses)
			if m.Count == 0 || m.Hits < m.Misses {
				t.Fatalf("BlockCacheSize %d: the block cache holds %d blocks (%d hits, %d misses)", size, m.Count, m.Hits, m.Misses)
			}
		})
	}
}

// TestOpenUnusualSizes: unusual MemTableSize and BlockCacheSize
// values, and ConfigurePebble changes, make Open fail with an error or
// succeed; never panic.
func TestOpenUnusualSizes(t *testing.T) {
	cases := []struct {
		name string
		o    Options
	}{
		{"negative block cache", Options{BlockCacheSize: -1 << 40}},
		{"min int64 block cache", Options{BlockCacheSize: math.MinInt64}},
		{"tiny memtable", Options{MemTableSize: 1}},
		{"memtable at pebble's limit", Options{MemTableSize: 4 << 30}},
		{"memtable 1<<62", Options{MemTableSize: 1 << 62}},
		{"memtable max uint64", Options{MemTableSize: math.MaxUint64}},
		{"configure: nil cache", Options{ConfigurePebble: func(po *pebble.Options) { po.Cache = nil }}},
		{"configure: own cache", Options{ConfigurePebble: func(po *pebble.Options) { po.Cache = pebble.NewCache(1 << 20) }}},
		{"configure: memtable zero", Options{ConfigurePebble: func(po *pebble.Options) { po.MemTableSize = 0 }}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.FS = vfs.NewMem()
			o.CacheSize = -1
			var e *Engine
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("Open panicked: %v", p)
					}
				}()
				e, err = Open("data", &o)
			}()
			if err != nil {
				t.Logf("Open: %v", err)
				return
			}
			defer e.Close()
			res, err := e.Begin(context.Background(), Request{Key: record.Key{Key: "k"}, Fingerprint: record.Fingerprint{Version: 1, Sum: 1}})
			if err != nil {
				t.Fatal(err)
			}
			if err := res.Claim.Complete(context.Background(), Response{Status: 200, Body: make([]byte, 1000)}); err != nil {
				t.Fatal(err)
			}
			if err := e.db.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
