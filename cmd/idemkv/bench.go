package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/idemkv/idemkv/bench"
	"github.com/idemkv/idemkv/engine"
)

// runBench is 'idemkv bench': it measures one workload with bench.Run and
// prints the report.
func runBench(args []string) error {
	fs := flag.NewFlagSet("idemkv bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: idemkv bench [flags]\n\n"+
			"Measures one workload on idemkv and, in the same process and run, on an\n"+
			"in-memory sharded map and on naive raw Pebble, and prints ops/s, latency\n"+
			"percentiles, allocations and disk bytes per record (see package bench).\n\n")
		fs.PrintDefaults()
	}
	var cfg bench.Config
	fs.TextVar(&cfg.Workload, "workload", bench.Fresh, "`name` of the workload: fresh, replay, replay-cold or conflict")
	fs.IntVar(&cfg.Concurrency, "c", bench.DefaultConcurrency, "concurrent goroutines")
	fs.IntVar(&cfg.BodySize, "size", bench.DefaultBodySize, "response body size in `bytes` (realistic JSON)")
	fs.Func("durability", "idemkv's `mode`: synced or relaxed; raw Pebble commits with Sync or NoSync to match (default synced)",
		func(s string) (err error) {
			cfg.Durability, err = engine.ParseDurability(s)
			return err
		})
	fs.IntVar(&cfg.Ops, "ops", bench.DefaultOps, "measured operations per system")
	fs.StringVar(&cfg.Dir, "dir", "", "`directory` in which to create the temporary data directories (default the system's temporary directory)")
	baselines := fs.Bool("baselines", true, "also measure the map and raw Pebble baselines")
	asCSV := fs.Bool("csv", false, "print CSV instead of a table")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 || (*asCSV && *asJSON) {
		fmt.Fprintln(fs.Output(), "idemkv bench takes no arguments, and at most one of -csv and -json")
		fs.Usage()
		return errUsage
	}
	cfg.NoBaselines = !*baselines

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	switch {
	case *asJSON:
		return rep.WriteJSON(os.Stdout)
	case *asCSV:
		return rep.WriteCSV(os.Stdout)
	}
	return rep.WriteTable(os.Stdout)
}
