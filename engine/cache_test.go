package engine

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/idemkv/idemkv/bench/payload"
	"github.com/idemkv/idemkv/record"
)

// TestBlockCacheHoldsBlocks checks that Pebble's block cache, with the
// default proportions, keeps the blocks that reads from storage load.
// Pebble charges its memtables to the same cache; sized at BlockCacheSize
// alone, memtables as large as it took all of it and every read missed. The
// memtable size counted is Pebble's own, also when ConfigurePebble sets it.
func TestBlockCacheHoldsBlocks(t *testing.T) {
	for _, name := range []string{"options", "ConfigurePebble"} {
		t.Run(name, func(t *testing.T) {
			// Small sizes, in the defaults' proportions (as large a memtable
			// as block cache), so that memtables reach full size quickly.
			o := &Options{FS: vfs.NewMem(), CacheSize: -1, Durability: Relaxed, MemTableSize: 1 << 20, BlockCacheSize: 1 << 20}
			if name == "ConfigurePebble" {
				o.MemTableSize = 256 << 10
				o.ConfigurePebble = func(po *pebble.Options) { po.MemTableSize = 1 << 20 }
			}
			e, err := Open("data", o)
			if err != nil {
				t.Fatal(err)
			}
			testBlockCache(t, e)
		})
	}
}

func testBlockCache(t *testing.T, e *Engine) {
	defer e.Close()
	ctx := context.Background()
	key := func(i int) record.Key {
		return record.Key{Scope: "tenant", Endpoint: "POST /orders", Key: fmt.Sprint("k", i)}
	}
	const n = 3000 // 6 MB: Pebble's memtables start at 256 KiB and double up to MemTableSize
	body := payload.JSON(nil, 2048, 1)
	for i := range n {
		res, err := e.Begin(ctx, Request{Key: key(i), Fingerprint: record.Fingerprint{Version: 1, Sum: 1}})
		if err != nil {
			t.Fatal(err)
		}
		if err := res.Claim.Complete(ctx, Response{Status: 201, Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	// Memtables of full size exist from here on, reserved in the cache.
	if err := e.db.Flush(); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		for i := range n {
			res, err := e.Begin(ctx, Request{Key: key(i), Fingerprint: record.Fingerprint{Version: 1, Sum: 1}})
			if err != nil || res.Outcome != Replay {
				t.Fatalf("round %d, key %d: %v %v", round, i, res.Outcome, err)
			}
		}
	}
	m := e.db.Metrics().BlockCache
	t.Logf("block cache: %d blocks, %d bytes, %d hits, %d misses", m.Count, m.Size, m.Hits, m.Misses)
	if m.Count == 0 || m.Hits < m.Misses {
		t.Fatalf("block cache holds %d blocks, %d hits against %d misses over two passes; want the second pass answered from it", m.Count, m.Hits, m.Misses)
	}
}
