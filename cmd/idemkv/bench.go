package main

import (
	"context"
	"flag"
	"os"
	"os/signal"

	"github.com/idemkv/idemkv/bench"
	"github.com/idemkv/idemkv/engine"
)

func runBench(args []string) error {
	fs := flag.NewFlagSet("idemkv bench", flag.ExitOnError)
	workload := fs.String("workload", "fresh", "fresh, replay, replay-cold or conflict")
	c := fs.Int("c", 64, "concurrent goroutines")
	size := fs.Int("size", 2048, "response body size in bytes (realistic JSON)")
	durability := fs.String("durability", "synced", "synced or relaxed (raw Pebble uses Sync or NoSync to match)")
	ops := fs.Int("ops", 20000, "measured operations per system")
	dir := fs.String("dir", "", "directory for the data directories (default: a temporary one, removed after)")
	noBaselines := fs.Bool("no-baselines", false, "measure idemkv only")
	asCSV := fs.Bool("csv", false, "print CSV")
	asJSON := fs.Bool("json", false, "print JSON")
	_ = fs.Parse(args)

	w, err := bench.ParseWorkload(*workload)
	if err != nil {
		return err
	}
	d, err := engine.ParseDurability(*durability)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := bench.Run(ctx, bench.Config{
		Workload: w, Concurrency: *c, BodySize: *size, Durability: d, Ops: *ops,
		Dir: *dir, NoBaselines: *noBaselines,
	})
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
