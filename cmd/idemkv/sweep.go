package main

import (
	"context"
	"fmt"
	"os"
)

// runSweep is 'idemkv sweep': it drops the expired generations of a data
// directory now.
func runSweep(args []string) (err error) {
	fs := newFlagSet("idemkv sweep", "Usage: idemkv sweep [flags]\n\n"+
		"Drops every generation of a data directory (one that no server is using) whose\n"+
		"records have all expired, as the server does by itself in the background, and\n"+
		"prints how many it dropped and the disk bytes before and after. Pebble frees\n"+
		"the space of dropped generations with compactions, which may finish later.\n\n")
	var df dataFlags
	df.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	eng, err := openDataDir(&df, true)
	if err != nil {
		return err
	}
	defer closeEngine(eng, &err)
	before := eng.Stats()
	n, err := eng.Sweep(context.Background())
	if err != nil {
		return err
	}
	after := eng.Stats()
	if n == 0 {
		fmt.Fprintf(os.Stdout, "nothing to drop: generation %d, the lowest, still holds live records or ends in the future\n", after.LowGeneration)
	} else {
		fmt.Fprintf(os.Stdout, "dropped %d generations (%d to %d)\n", n, before.LowGeneration, after.LowGeneration-1)
	}
	fmt.Fprintf(os.Stdout, "disk bytes: %d before, %d after\n", before.DiskBytes, after.DiskBytes)
	return nil
}
