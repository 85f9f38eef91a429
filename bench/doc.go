// Package bench measures idemkv against baselines run in the same process:
// an in-memory sharded map (the upper bound: no persistence at all) and
// naive raw Pebble (Get, then Set, one commit per request, default
// options), so that every figure is a ratio measured in one run on one
// machine. The idemkv command's bench subcommand is a thin wrapper around
// Run; micro-benchmarks for `go test -bench` live in bench_test.go.
//
// Durability is matched across systems: the Synced mode is compared with
// raw Pebble committing with pebble.Sync, the Relaxed mode with
// pebble.NoSync. The map baseline never persists anything.
package bench
