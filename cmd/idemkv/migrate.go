package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/idemkv/idemkv/engine/pgstore"
	"github.com/jackc/pgx/v5/pgxpool"
)

const migrateUsage = `Usage: idemkv migrate -postgres URL [-table NAME]

Creates the schema of the PostgreSQL store (the records table, its meta
table, index and functions) where it is missing, or brings it to this
version. proxy and serve with -postgres do it at start; run migrate as a
role that may create tables when theirs may not (-postgres-no-migrate).
It is idempotent, and safe while replicas run.

`

func runMigrate(args []string) error {
	fs := newFlagSet("migrate", migrateUsage)
	var u, file, table string
	fs.StringVar(&u, "postgres", "", "the database's `URL` (postgres://user:password@host:port/db)")
	fs.StringVar(&file, "postgres-file", "", "read the -postgres URL from `file`")
	fs.StringVar(&table, "table", "idemkv_records", "the records table's `name`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := urlFromFile("postgres", &u, file); err != nil {
		return err
	}
	if u == "" {
		fmt.Fprintln(os.Stderr, "idemkv migrate: -postgres URL is required")
		return errUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := pgstore.Migrate(ctx, pool, table); err != nil {
		return err
	}
	fmt.Printf("the schema of %s is current in %s\n", table, redactURL(u))
	return nil
}
