package engine

import (
	"math"
	"testing"
)

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
