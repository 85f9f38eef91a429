// Command idemkv is the idemkv command-line tool.
//
// Usage:
//
//	idemkv <command> [flags]
//
// The commands are:
//
//	bench    measure idemkv against an in-memory map and raw Pebble in one run
//	serve    run a demo API with idempotency keys on the embedded engine
//	proxy    add idempotency keys in front of any HTTP API (reverse proxy)
//	inspect  list the records of a data directory, by scope and endpoint
//	get      show one record of a data directory, decoded
//	stats    print counts and sizes of a data directory
//	sweep    drop the expired generations of a data directory now
//	repair   salvage a damaged data directory into a new one
//	admin    look up, delete or list the keys of a running proxy or serve
//	migrate  create or upgrade the PostgreSQL store's schema
//	help     print this text, or a command's flags (idemkv help bench)
//
// Each command lives in its own file (bench.go) and has an entry in
// commands; it parses its flags and calls into a library package, where
// the logic and its tests live.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
)

// A command is one subcommand of idemkv.
type command struct {
	summary string
	// run parses args (the arguments after the command's name) and runs
	// the command. It returns flag.ErrHelp when help was asked for.
	run func(args []string) error
}

// commands maps each subcommand's name to its implementation.
var commands = map[string]command{
	"bench": {"measure idemkv against an in-memory map and raw Pebble in one run", runBench},
	"serve": {"run a demo API with idempotency keys on the embedded engine", runServe},
	"proxy": {"add idempotency keys in front of any HTTP API (reverse proxy)", runProxy},

	"inspect": {"list the records of a data directory, by scope and endpoint", runInspect},
	"get":     {"show one record of a data directory, decoded", runGet},
	"stats":   {"print counts and sizes of a data directory", runStats},
	"sweep":   {"drop the expired generations of a data directory now", runSweep},
	"repair":  {"salvage a damaged data directory into a new one", runRepair},

	"admin": {"look up, delete or list the keys of a running proxy or serve (its admin API)", runAdmin},

	"migrate": {"create or upgrade the PostgreSQL store's schema (proxy and serve -postgres do it at start)", runMigrate},
}

func main() {
	os.Exit(run(os.Args[1:]))
}

// run dispatches args to a command and returns the exit code: 0, 1 when
// the command failed, 2 for a usage error, 3 when repair lost records.
func run(args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return 2
	}
	name, args := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 0 {
			if _, ok := commands[args[0]]; ok {
				return run([]string{args[0], "-h"})
			}
		}
		usage(os.Stdout)
		return 0
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "idemkv: unknown command %q\n\n", name)
		usage(os.Stderr)
		return 2
	}
	switch err := cmd.run(args); {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errLost):
		fmt.Fprintf(os.Stderr, "idemkv: %v\n", err)
		return 3
	default:
		fmt.Fprintf(os.Stderr, "idemkv: %v\n", err)
		return 1
	}
}

// newFlagSet returns the flag set of a command, whose -h prints usage
// and then the flags.
func newFlagSet(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	return fs
}

// errUsage is returned by a command whose flags were wrong; the flag
// package has already said why.
var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprint(w, "idemkv is a tool for the idemkv idempotency-key engine.\n\n"+
		"Usage:\n\n\tidemkv <command> [flags]\n\nThe commands are:\n\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(w, "\t%-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, "\nRun 'idemkv help <command>' for a command's flags.\n")
}
