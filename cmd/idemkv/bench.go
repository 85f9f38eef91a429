package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/idemkv/idemkv/bench"
	"github.com/idemkv/idemkv/engine"
)

// runBench is 'idemkv bench': it measures one workload with bench.Run
// (bench.RunSweep for a list of concurrencies, bench.RunHTTP with -http,
// bench.RunChurn with -churn) and prints the report.
func runBench(args []string) error {
	fs := flag.NewFlagSet("idemkv bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: idemkv bench [flags]\n\n"+
			"Measures one workload on idemkv and, in the same process and run, on an\n"+
			"in-memory sharded map and on naive raw Pebble, and prints ops/s, latency\n"+
			"percentiles, allocations, bytes written and disk bytes per record (see\n"+
			"package bench). A list of concurrencies (-c 1,16,64,256) measures each in\n"+
			"turn, and -chart draws them. -http measures the net/http middleware\n"+
			"against the bare handler instead; -churn checks the disk space of\n"+
			"short-lived records against their live set.\n\n")
		fs.PrintDefaults()
	}
	var cfg bench.Config
	fs.TextVar(&cfg.Workload, "workload", bench.Fresh, "`name` of the workload: fresh, replay, replay-cold, conflict or mixed")
	fs.Float64Var(&cfg.ReplayRatio, "replay-ratio", 0, "with -workload mixed, the `fraction` of operations that retry a request completed earlier")
	fs.Float64Var(&cfg.ConflictRatio, "conflict-ratio", 0, "with -workload mixed, the `fraction` of operations that reuse a completed request's key with another body")
	conc := []int{bench.DefaultConcurrency}
	fs.Func("c", "concurrent goroutines, or a comma-separated `list` to measure each in turn (default 64)", func(s string) (err error) {
		conc, err = parseInts(s)
		return err
	})
	fs.Float64Var(&cfg.Rate, "rate", 0, "offer the operations open loop at `n` per second, -c goroutines taking them as they are free (an operation that finds none free counts its latency from its due time); default closed loop")
	fs.IntVar(&cfg.BodySize, "size", bench.DefaultBodySize, "response body size in `bytes` (realistic JSON)")
	fs.Func("durability", "idemkv's `mode`: synced or relaxed; raw Pebble commits with Sync or NoSync to match (default synced)",
		func(s string) (err error) {
			cfg.Durability, err = engine.ParseDurability(s)
			return err
		})
	fs.IntVar(&cfg.Ops, "ops", bench.DefaultOps, "measured operations per system and concurrency (with -churn: inserts)")
	fs.IntVar(&cfg.Keys, "keys", 0, "with a retry workload (replay, replay-cold, conflict), the number `n` of stored keys the operations cycle through (default: -ops, one key each)")
	fs.IntVar(&cfg.Warmup, "warmup", bench.DefaultWarmup, "fresh requests `n` each system serves, unmeasured, before it is measured, so that the figures are a running store's, not its first seconds' (0: measure a cold start)")
	fs.IntVar(&cfg.Records, "records", 0, "number `n` of completed records every system holds before it is measured (stored unmeasured)")
	fs.StringVar(&cfg.Dir, "dir", "", "`directory` in which to create the temporary data directories (default the system's temporary directory)")
	baselines := fs.Bool("baselines", true, "also measure the map and raw Pebble baselines")
	fs.StringVar(&cfg.Redis, "redis", "", "also measure the claim/complete pattern by hand on the Redis server at `URL` (redis://127.0.0.1:6379/0); its persistence settings apply and are reported")
	fs.StringVar(&cfg.Postgres, "postgres", "", "also measure the claim/complete pattern by hand (INSERT … ON CONFLICT DO NOTHING, then UPDATE) in the PostgreSQL database at `URL`, in a table of the run's own; its fsync and synchronous_commit apply and are reported")
	fs.StringVar(&cfg.Backend, "backend", "", "`store`: redis (or postgres) also measures idemkv on its Redis backend (engine/redisstore) on the -redis server (its PostgreSQL backend, engine/pgstore, in the -postgres database), beside the embedded engine")
	asCSV := fs.Bool("csv", false, "print CSV instead of a table")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	chart := fs.String("chart", "", "also draw throughput and p99 latency against concurrency, as SVG, into `file`")
	quiet := fs.Bool("quiet", false, "print no progress lines (by default every 2s of a long phase, on standard error)")
	overHTTP := fs.Bool("http", false, "measure the idemhttp middleware over a trivial handler against the bare handler, through loopback HTTP (fresh or replay)")
	churn := fs.Bool("churn", false, "insert short-lived records into idemkv and compare its disk space with the live set")
	ttl := fs.Duration("ttl", 2*time.Second, "with -churn, the records' time to live")
	width := fs.Duration("width", 0, "with -churn, the generation width (default an eighth of -ttl, at least 1s)")
	duration := fs.Duration("duration", 0, "with -churn, how long to insert (default ten TTLs, unless -ops is given)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to `file` (for go tool pprof; add -baselines=false to profile idemkv alone)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var problem string
	switch {
	case fs.NArg() > 0:
		problem = "idemkv bench takes no arguments"
	case *asCSV && *asJSON:
		problem = "at most one of -csv and -json"
	case *overHTTP && *churn:
		problem = "at most one of -http and -churn"
	case (*overHTTP || *churn) && (len(conc) != 1 || *chart != ""):
		problem = "-http and -churn measure one concurrency, and draw no chart"
	case (*overHTTP || *churn) && cfg.Rate != 0:
		problem = "-rate goes with neither -http nor -churn"
	case *churn && set["warmup"]:
		problem = "-warmup does not go with -churn (it measures from an empty store)"
	case !*churn && (set["ttl"] || set["width"] || set["duration"]):
		problem = "-ttl, -width and -duration go with -churn"
	case (*overHTTP || *churn) && (cfg.Redis != "" || cfg.Postgres != ""):
		problem = "-redis and -postgres are baselines: not with -http or -churn"
	case cfg.Backend == "redis" && cfg.Redis == "":
		problem = "-backend redis needs -redis URL"
	case cfg.Backend == "postgres" && cfg.Postgres == "":
		problem = "-backend postgres needs -postgres URL"
	}
	if problem != "" {
		fmt.Fprintln(fs.Output(), problem)
		fs.Usage()
		return errUsage
	}
	cfg.NoBaselines = !*baselines
	if !*quiet {
		cfg.Progress = os.Stderr
	}

	if *cpuProfile != "" {
		stopProfile, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	type writer interface {
		WriteTable(io.Writer) error
		WriteCSV(io.Writer) error
		WriteJSON(io.Writer) error
	}
	var rep writer
	switch {
	case *churn:
		cc := bench.ChurnConfig{
			TTL: *ttl, GenerationWidth: *width, Concurrency: conc[0], BodySize: cfg.BodySize,
			Durability: cfg.Durability, Duration: *duration, Dir: cfg.Dir, Progress: cfg.Progress,
		}
		if set["ops"] {
			cc.Ops = cfg.Ops
		}
		r, err := bench.RunChurn(ctx, cc)
		if err != nil {
			return err
		}
		rep = r
	case *overHTTP:
		cfg.Concurrency = conc[0]
		r, err := bench.RunHTTP(ctx, cfg)
		if err != nil {
			return err
		}
		rep = r
	default:
		s, err := bench.RunSweep(ctx, cfg, conc)
		if err != nil {
			return err
		}
		if *chart != "" {
			if err := writeChart(*chart, s); err != nil {
				return err
			}
		}
		rep = s
		if len(s) == 1 {
			rep = s[0]
		}
	}
	switch {
	case *asJSON:
		return rep.WriteJSON(os.Stdout)
	case *asCSV:
		return rep.WriteCSV(os.Stdout)
	}
	return rep.WriteTable(os.Stdout)
}

// parseInts parses a comma-separated list of positive integers.
func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// startCPUProfile starts a CPU profile into the file name; the function it
// returns stops it and closes the file.
func startCPUProfile(name string) (func(), error) {
	f, err := os.Create(name)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "idemkv bench:", err)
		}
	}, nil
}

// writeChart writes s's chart into the file name.
func writeChart(name string, s bench.Sweep) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := s.WriteChart(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
