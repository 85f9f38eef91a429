package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// errLost is repair's result when it salvaged the directory but could not
// carry everything over: the exit status says so to scripts.
var errLost = errors.New("the repaired directory lacks records the damaged one held (see above)")

// runRepair is 'idemkv repair': it salvages a damaged data directory
// into a new one (engine.Repair).
func runRepair(args []string) (err error) {
	fs := newFlagSet("idemkv repair", "Usage: idemkv repair -data DIR [-out NEWDIR]\n\n"+
		"Salvages a data directory that the server refuses to open (damaged data) into a\n"+
		"new directory: every intact, unexpired record is copied, and what could not be\n"+
		"is reported (counts, and keys where they can be read). The damaged directory is\n"+
		"never changed; no server may have it open. Nothing repairs implicitly: a server\n"+
		"never runs this by itself.\n\n"+
		"Then keep the damaged directory and put the new one in its place:\n"+
		"  mv DIR DIR.damaged && mv NEWDIR DIR\n\n"+
		"Exit status: 0 if nothing was lost, 3 if the new directory lacks records the\n"+
		"damaged one held, 1 if the repair failed.\n\n")
	var df dataFlags
	df.register(fs)
	out := fs.String("out", "", "the new `directory` to write (default DIR.repaired); it must not exist or be empty")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkDataDir(df.dir); err != nil {
		return err
	}
	if *out == "" {
		*out = df.dir + ".repaired"
	}
	rep, err := engine.Repair(df.dir, *out, &engine.Options{TTL: df.ttl, SweepInterval: noSweep})
	if err != nil {
		return err
	}
	printRepair(os.Stdout, df.dir, *out, rep)
	if !rep.Clean() {
		return errLost
	}
	return nil
}

// maxListed bounds the keys repair lists of each kind.
const maxListed = 50

func printRepair(w io.Writer, dir, out string, rep *engine.RepairReport) {
	if rep.Verdict != nil {
		fmt.Fprintf(w, "damaged directory %s: %v\n", dir, rep.Verdict)
	}
	fmt.Fprintf(w, "wrote %s: %d completed records, %d interrupted claims; left behind %d expired\n",
		out, rep.Completed, rep.Claimed, rep.Expired)
	for _, d := range rep.Mended {
		fmt.Fprintf(w, "mended: %s\n", d)
	}
	for _, d := range rep.Damage {
		fmt.Fprintf(w, "damage: %s\n", d)
	}
	fmt.Fprintf(w, "lost: %d records named below, %d whose key could not be read\n", len(rep.Lost), rep.LostUnknown)
	listKeys(w, "lost ", rep.Lost)
	if len(rep.Damage) > 0 && len(rep.Interrupted) > 0 {
		fmt.Fprintf(w, "interrupted claims (a retry recovers them; the completion of any of these may have been in the damaged bytes):\n")
		listKeys(w, "", rep.Interrupted)
	}
	if rep.Clean() {
		fmt.Fprintln(w, "nothing was lost")
	}
}

// listKeys prints keys, one a line after prefix, at most maxListed.
func listKeys(w io.Writer, prefix string, keys []record.Key) {
	for i, k := range keys {
		if i == maxListed {
			fmt.Fprintf(w, "  ... and %d more\n", len(keys)-maxListed)
			return
		}
		fmt.Fprintf(w, "  %s%s\n", prefix, k)
	}
}
