package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// Every flag of serve and proxy can also come from the environment, as
// IDEMKV_ and its name in upper case with dashes as underscores
// (-max-waiters is IDEMKV_MAX_WAITERS): for containers and process
// managers, and so that secrets (a Redis URL with its password) never
// need the command line, which other users of the machine can read. A
// flag given on the command line wins over its variable. A repeatable
// flag takes one value per line of its variable.

// envName is the variable of a flag.
func envName(flagName string) string {
	return "IDEMKV_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// withEnvUsage appends each flag's variable to its help text, so that -h
// lists them.
func withEnvUsage(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage += " (env " + envName(f.Name) + ")"
	})
}

// parseServerFlags parses args, then sets every flag not given on the
// command line from its variable, if set.
func parseServerFlags(fs *flag.FlagSet, args []string) error {
	withEnvUsage(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok || given[f.Name] || err != nil {
			return
		}
		values := []string{v}
		if strings.Contains(f.Usage, "repeatable") {
			values = strings.FieldsFunc(v, func(r rune) bool { return r == '\n' })
		}
		for _, v := range values {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %v", envName(f.Name), e)
				return
			}
		}
	})
	if err != nil {
		fmt.Fprintf(fs.Output(), "%s: %v\n", fs.Name(), err)
		return errUsage
	}
	return nil
}
