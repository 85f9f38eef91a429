package bench_test

import (
	"context"
	"fmt"
	"log"

	"github.com/idemkv/idemkv/bench"
	"github.com/idemkv/idemkv/engine"
)

// Run measures one workload on idemkv and both baselines. A report is
// usually printed with WriteTable (or WriteCSV, WriteJSON); its figures
// vary from run to run, so this example prints what does not.
func ExampleRun() {
	rep, err := bench.Run(context.Background(), bench.Config{
		Workload:    bench.Replay,
		Durability:  engine.Relaxed,
		Concurrency: 4,
		BodySize:    512,
		Ops:         100,
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range rep.Results {
		fmt.Println(r.System, r.Ops, "replays:", r.Outcomes.Replay)
	}
	// Output:
	// idemkv 100 replays: 100
	// map 100 replays: 0
	// pebble 100 replays: 0
}

// RunSweep measures at several concurrencies in one run; WriteChart
// would draw the sweep as an SVG image.
func ExampleRunSweep() {
	s, err := bench.RunSweep(context.Background(), bench.Config{
		Workload:    bench.Mixed,
		ReplayRatio: 0.8,
		Durability:  engine.Relaxed,
		BodySize:    512,
		Ops:         100,
		NoBaselines: true,
	}, []int{1, 4})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range s {
		res := r.Results[0]
		fmt.Println("concurrency", r.Config.Concurrency, res.System, "answers:", res.Outcomes.Total())
	}
	// Output:
	// concurrency 1 idemkv answers: 100
	// concurrency 4 idemkv answers: 100
}
