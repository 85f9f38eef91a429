package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// runInspect is 'idemkv inspect': it lists the records of a data
// directory, damaged ones included.
func runInspect(args []string) (err error) {
	fs := newFlagSet("idemkv inspect", "Usage: idemkv inspect [flags]\n\n"+
		"Lists the records of a data directory (one that no server is using), in order\n"+
		"of expiry: state (completed, expired, interrupted or damaged), scope, endpoint,\n"+
		"key, status, request id, attempt, stored size, and the times it was created,\n"+
		"completed and expires (RFC 3339, UTC). Parts that are not printable ASCII, such\n"+
		"as the keyed digests that the HTTP middleware stores as scopes, are shown in 0x-prefixed hex.\n"+
		"Damaged records are listed with their error, and make the command exit 1.\n\n")
	var df dataFlags
	df.register(fs)
	var sf scopeFlags
	sf.register(fs)
	endpoint := fs.String("endpoint", "", "list only the records of this `endpoint` (for HTTP, method and route: \"POST /v1/calls\"); needs -scope or -scope-hex")
	withExpired := fs.Bool("expired", false, "also list expired records that are not swept yet")
	limit := fs.Int("limit", 0, "list at most `n` records; 0 lists all")
	asJSON := fs.Bool("json", false, "print one JSON object per record, one per line")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *limit < 0 {
		return usageError(fs, "-limit must not be negative")
	}
	if isSet(fs, "endpoint") && sf.from == "" {
		return usageError(fs, "-endpoint needs -scope or -scope-hex (which may be empty: -scope '')")
	}

	eng, err := openDataDir(&df, false)
	if err != nil {
		return err
	}
	defer closeEngine(eng, &err)
	if err := sf.resolve(eng); err != nil {
		return err
	}
	// Expired records are visited even without -expired, to count them.
	opts := engine.ScanOptions{Prefix: record.AllKeys(), IncludeExpired: true}
	switch {
	case isSet(fs, "endpoint"):
		opts.Prefix = record.EndpointPrefix(sf.scope, *endpoint)
	case sf.from != "":
		opts.Prefix = record.ScopePrefix(sf.scope)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	out := bufio.NewWriter(os.Stdout)
	l := newLister(out, *asJSON, eng.Stats(), time.Now())
	errLimit := errors.New("limit reached")
	hidden := 0 // expired records not listed
	err = eng.Scan(ctx, opts, func(ent engine.Entry) error {
		if !*withExpired && ent.Record != nil && ent.Record.State == record.Completed && ent.Record.Expired(l.now) {
			hidden++
			return nil
		}
		if *limit > 0 && l.records == *limit {
			return errLimit
		}
		return l.add(ent)
	})
	limited := errors.Is(err, errLimit)
	if err != nil && !limited {
		return err
	}
	if err := l.flush(); err != nil {
		return err
	}
	summary := os.Stdout
	if *asJSON {
		summary = os.Stderr
	}
	fmt.Fprintf(summary, "%s, %d stored bytes", plural(l.records, "record"), l.bytes)
	switch {
	case limited:
		fmt.Fprintf(summary, " (stopped at -limit %d)", *limit)
	case hidden > 0:
		fmt.Fprintf(summary, "; %s not shown (-expired lists them)", plural(hidden, "expired record"))
	}
	fmt.Fprintln(summary)
	return damaged(l.damaged)
}

// lister prints Scan's entries as a table or as JSON lines.
type lister struct {
	out *bufio.Writer
	tw  *tabwriter.Writer // nil for JSON
	enc *json.Encoder     // nil for a table
	st  engine.Stats
	now time.Time

	records, damaged int
	bytes            int64
	pending          int // table rows not flushed yet
}

func newLister(out *bufio.Writer, asJSON bool, st engine.Stats, now time.Time) *lister {
	l := &lister{out: out, st: st, now: now}
	if asJSON {
		l.enc = json.NewEncoder(out)
	} else {
		l.tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(l.tw, "STATE\tSCOPE\tENDPOINT\tKEY\tSTATUS\tREQUEST ID\tATTEMPT\tSIZE\tCREATED\tCOMPLETED\tEXPIRES\tERROR")
	}
	return l
}

// entryJSON is one record in inspect's JSON lines.
type entryJSON struct {
	State string `json:"state"`
	jsonKey
	Generation uint32     `json:"generation"`
	Status     int        `json:"status,omitempty"`
	RequestID  string     `json:"request_id,omitempty"`
	Attempt    uint32     `json:"attempt,omitempty"`
	Size       int        `json:"size"`
	Created    *time.Time `json:"created,omitempty"`
	Completed  *time.Time `json:"completed,omitempty"`
	Expires    *time.Time `json:"expires,omitempty"`
	Error      string     `json:"error,omitempty"`
}

func (l *lister) add(ent engine.Entry) error {
	l.records++
	l.bytes += int64(ent.Size)
	j := entryJSON{State: "damaged", Generation: ent.Generation, Size: ent.Size}
	keyKnown := ent.Key.Key != "" // a valid key is never empty
	if keyKnown {
		j.jsonKey = newJSONKey(ent.Key)
	}
	if ent.Err != nil {
		l.damaged++
		j.Error = ent.Err.Error()
	} else {
		r := ent.Record
		j.State = stateOf(r, l.st, l.now)
		j.Status, j.RequestID, j.Attempt = r.Status, r.RequestID, r.Attempt
		j.Created, j.Completed, j.Expires = jsonTime(r.CreatedAt), jsonTime(r.CompletedAt), jsonTime(r.ExpiresAt)
	}
	if l.enc != nil {
		return l.enc.Encode(j)
	}

	scope, endpoint, key := "?", "?", "?"
	if keyKnown {
		scope, endpoint, key = showPart(ent.Key.Scope), showPart(ent.Key.Endpoint), showPart(ent.Key.Key)
	}
	status, reqID, attempt := "-", "-", "-"
	created, completed, expires := "-", "-", "-"
	if r := ent.Record; r != nil {
		if r.Status != 0 {
			status = strconv.Itoa(r.Status)
		}
		if r.RequestID != "" {
			reqID = showText(r.RequestID)
		}
		attempt = strconv.FormatUint(uint64(r.Attempt), 10)
		created, completed, expires = showTime(r.CreatedAt), showTime(r.CompletedAt), showTime(r.ExpiresAt)
	}
	fmt.Fprintf(l.tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s",
		j.State, scope, endpoint, key, status, reqID, attempt, ent.Size, created, completed, expires)
	if j.Error != "" {
		fmt.Fprintf(l.tw, "\t%s", showText(j.Error))
	}
	fmt.Fprintln(l.tw)
	// Flush now and then: tabwriter holds every row until then.
	if l.pending++; l.pending == 1024 {
		l.pending = 0
		return l.tw.Flush()
	}
	return nil
}

// flush writes out what is buffered.
func (l *lister) flush() error {
	if l.tw != nil {
		if err := l.tw.Flush(); err != nil {
			return err
		}
	}
	return l.out.Flush()
}
