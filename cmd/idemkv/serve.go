package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/idemkv/idemkv/cmd/idemkv/internal/demo"
)

// runServe is 'idemkv serve': the demo API on the embedded engine.
func runServe(args []string) error {
	fs := newFlagSet("idemkv serve", "Usage: idemkv serve [flags]\n\n"+
		"Runs a small demo API with idempotency keys on the embedded engine: bearer-token\n"+
		"auth (any token; it names the tenant), POST /v1/calls, /v1/agents, /v1/batch-calls\n"+
		"and /v1/tools answering 201 {\"data\": {...}}, a GET for each, and POST /v1/webhooks,\n"+
		"which takes no keys. It prints curl commands to try on start-up.\n\n")
	var f serverFlags
	f.register(fs, "127.0.0.1:8080")
	if err := parseServerFlags(fs, args); err != nil {
		return err
	}
	s, err := openServer(&f, nil)
	if err != nil {
		return err
	}
	return s.run(demo.New(s.idem), func(addr string) {
		fmt.Fprintf(os.Stdout, "idemkv demo API on http://%s (records in %s)\n\n%s\n", addr, s.where, demo.Tour("http://"+addr))
	})
}

// parseFlags parses args, which must hold flags only.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s takes no arguments\n", fs.Name())
		fs.Usage()
		return errUsage
	}
	return nil
}
