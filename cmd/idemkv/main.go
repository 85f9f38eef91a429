// Command idemkv is the idemkv command-line tool.
//
//	idemkv bench [flags]   measure idemkv against in-process baselines
//	idemkv help            list the commands
package main

import (
	"fmt"
	"os"
	"sort"
)

// commands maps a subcommand to its implementation; each lives in its own
// file and keeps its logic in a library package.
var commands = map[string]struct {
	summary string
	run     func(args []string) error
}{
	"bench": {"measure idemkv against an in-memory map and raw Pebble in one run", runBench},
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "help" || os.Args[1] == "-h" || os.Args[1] == "--help" {
		usage()
		return
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "idemkv: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err := cmd.run(os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "idemkv:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: idemkv <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(os.Stderr, "\nrun 'idemkv <command> -h' for a command's flags")
}
