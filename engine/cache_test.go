package engine

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/idemkv/idemkv/bench/payload"
	"github.com/idemkv/idemkv/record"
)

// TestBlockCacheHoldsBlocks checks that Pebble's block cache, with the
// default proportions, keeps the blocks that reads from storage load.
// Pebble charges its memtables to the same cache; sized at BlockCacheSize
// alone, memtables as large as it took all of it and every read missed.
func TestBlockCacheHoldsBlocks(t *testing.T) {
	// Small sizes, in the defaults' proportions (as large a memtable as
	// block cache), so that memtables reach full size quickly: 3,000
	// records of 2 KB (Pebble's memtables start at 256 KiB and double up
	// to MemTableSize).
	o := &Options{InMemory: true, CacheSize: -1, Durability: Relaxed, MemTableSize: 1 << 20, BlockCacheSize: 1 << 20}
	m := blockCacheCount(t, o, 3000, 2048)
	t.Logf("block cache: %d blocks, %d bytes, %d hits, %d misses", m.Count, m.Size, m.Hits, m.Misses)
	if m.Count == 0 || m.Hits < m.Misses {
		t.Fatalf("block cache holds %d blocks, %d hits against %d misses over two passes; want the second pass answered from it", m.Count, m.Hits, m.Misses)
	}
}

// TestBlockCacheSize checks the cache size arithmetic, which saturates.
func TestBlockCacheSize(t *testing.T) {
	for _, tc := range []struct {
		blocks     int64
		memtable   uint64
		stopWrites int
		want       int64
	}{
		{64 << 20, 64 << 20, 0, 64<<20 + 3*64<<20}, // the defaults
		{64 << 20, 64 << 20, 4, 64<<20 + 5*64<<20},
		{0, 1 << 20, 2, 3 << 20},
		{-1, 1 << 20, 2, 3 << 20}, // a negative size is no room for blocks
		{math.MaxInt64, 64 << 20, 2, math.MaxInt64},
		{math.MaxInt64 - 1, 1, 2, math.MaxInt64},
		{64 << 20, math.MaxUint64, 2, math.MaxInt64},
		{64 << 20, 1 << 62, 2, math.MaxInt64},
	} {
		if got := blockCacheSize(tc.blocks, tc.memtable, tc.stopWrites); got != tc.want {
			t.Errorf("blockCacheSize(%d, %d, %d) = %d; want %d", tc.blocks, tc.memtable, tc.stopWrites, got, tc.want)
		}
	}
}

// blockCacheCount writes n records with bodies of bodySize bytes, flushes,
// replays them twice from storage and returns the block cache's metrics.
func blockCacheCount(t *testing.T, o *Options, n, bodySize int) pebble.CacheMetrics {
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
	body := payload.JSON(nil, bodySize, 1)
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
				InMemory: true, CacheSize: -1, Durability: Relaxed,
				MemTableSize: 1 << 20, BlockCacheSize: size,
			}, 300, 600)
			t.Logf("block cache: %d blocks, %d bytes, %d hits, %d misses", m.Count, m.Size, m.Hits, m.Misses)
			if m.Count == 0 || m.Hits < m.Misses {
				t.Fatalf("BlockCacheSize %d: the block cache holds %d blocks (%d hits, %d misses)", size, m.Count, m.Hits, m.Misses)
			}
		})
	}
}

// TestOpenUnusualSizes: unusual MemTableSize and BlockCacheSize
// values make Open fail with an error or
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
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.InMemory = true
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
