package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// runGet is 'idemkv get': it shows one record decoded.
func runGet(args []string) (err error) {
	fs := newFlagSet("idemkv get", "Usage: idemkv get -endpoint ENDPOINT -key KEY [flags]\n\n"+
		"Shows the current record of one key in a data directory (one that no server is\n"+
		"using): its metadata, stored headers and body. The body is printed as text if\n"+
		"it is printable UTF-8, else as a hex dump; -body-only writes its raw bytes.\n"+
		"A key with no live record, or a damaged record, makes the command exit 1.\n\n")
	var df dataFlags
	df.register(fs)
	var sf scopeFlags
	sf.register(fs)
	endpoint := fs.String("endpoint", "", "the record's `endpoint` (for HTTP, method and route: \"POST /v1/calls\"); required")
	key := fs.String("key", "", "the idempotency `key`; required")
	bodyOnly := fs.Bool("body-only", false, "write only the raw body bytes to standard output")
	asJSON := fs.Bool("json", false, "print the record as a JSON object")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case !isSet(fs, "endpoint") || *key == "":
		return usageError(fs, "idemkv get needs -endpoint and -key")
	case *bodyOnly && *asJSON:
		return usageError(fs, "give at most one of -body-only and -json")
	}
	k := record.Key{Scope: sf.scope, Endpoint: *endpoint, Key: *key}
	if err := k.Validate(); err != nil {
		return usageError(fs, err.Error())
	}

	eng, err := openDataDir(&df, false)
	if err != nil {
		return err
	}
	defer closeEngine(eng, &err)
	if err := sf.resolve(eng); err != nil {
		return err
	}
	k.Scope = sf.scope
	r, err := eng.Get(context.Background(), k)
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return fmt.Errorf("no record for %s (never stored, deleted, or expired; -ttl is %v)", showKey(k), df.ttl)
	case errors.Is(err, engine.ErrCorrupt):
		return fmt.Errorf("the record for %s is damaged: %w", showKey(k), err)
	case err != nil:
		return err
	}
	state := stateOf(r, eng.Stats(), time.Now())
	switch {
	case *bodyOnly:
		if r.State != record.Completed {
			return fmt.Errorf("the record for %s is %s: it has no body", showKey(k), state)
		}
		_, err := os.Stdout.Write(r.Body)
		return err
	case *asJSON:
		return writeRecordJSON(k, state, r)
	}
	return writeRecord(k, state, r)
}

// recordJSON is get's JSON output.
type recordJSON struct {
	jsonKey
	State       string          `json:"state"`
	Status      int             `json:"status,omitempty"`
	RequestID   string          `json:"request_id,omitempty"`
	Fingerprint string          `json:"fingerprint"`
	Attempt     uint32          `json:"attempt"`
	Created     *time.Time      `json:"created,omitempty"`
	Completed   *time.Time      `json:"completed,omitempty"`
	Expires     *time.Time      `json:"expires,omitempty"`
	Lease       *leaseJSON      `json:"lease,omitempty"`
	Checkpoint  *checkpointJSON `json:"checkpoint,omitempty"`
	Header      []headerJSON    `json:"headers,omitempty"`
	// Body holds a body that is valid UTF-8; BodyBase64 any other.
	Body       *string `json:"body,omitempty"`
	BodyBase64 []byte  `json:"body_base64,omitempty"`
}

type headerJSON struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type leaseJSON struct {
	Owner   uint64     `json:"owner"`
	Token   uint64     `json:"token"`
	Expires *time.Time `json:"expires,omitempty"`
}

type checkpointJSON struct {
	Phase string `json:"phase"`
	Data  []byte `json:"data,omitempty"`
}

func writeRecordJSON(k record.Key, state string, r *record.Record) error {
	j := recordJSON{
		jsonKey: newJSONKey(k), State: state, Status: r.Status, RequestID: r.RequestID,
		Fingerprint: showFingerprint(r.Fingerprint), Attempt: r.Attempt,
		Created: jsonTime(r.CreatedAt), Completed: jsonTime(r.CompletedAt), Expires: jsonTime(r.ExpiresAt),
	}
	for _, h := range r.Header {
		j.Header = append(j.Header, headerJSON{h.Name, h.Value})
	}
	if r.State == record.Claimed {
		j.Lease = &leaseJSON{Owner: r.Lease.Owner, Token: r.Lease.Token, Expires: jsonTime(r.Lease.ExpiresAt)}
	}
	if c := r.Checkpoint; c != nil {
		j.Checkpoint = &checkpointJSON{Phase: c.Phase, Data: c.Data}
	}
	if utf8.Valid(r.Body) {
		if r.State == record.Completed {
			s := string(r.Body)
			j.Body = &s
		}
	} else {
		j.BodyBase64 = r.Body
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(j)
}

func writeRecord(k record.Key, state string, r *record.Record) error {
	out := bufio.NewWriter(os.Stdout)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	field := func(name, value string) { fmt.Fprintf(tw, "%s\t%s\n", name, value) }
	field("scope", showPart(k.Scope))
	field("endpoint", showPart(k.Endpoint))
	field("key", showPart(k.Key))
	field("state", state)
	if r.Status != 0 {
		field("status", fmt.Sprint(r.Status))
	}
	field("request id", showText(r.RequestID))
	field("fingerprint", showFingerprint(r.Fingerprint))
	field("attempt", fmt.Sprint(r.Attempt))
	field("created", showTime(r.CreatedAt))
	field("completed", showTime(r.CompletedAt))
	field("expires", showTime(r.ExpiresAt))
	if r.State == record.Claimed {
		field("lease", fmt.Sprintf("owner %d, token %d, until %s", r.Lease.Owner, r.Lease.Token, showTime(r.Lease.ExpiresAt)))
	}
	if c := r.Checkpoint; c != nil {
		field("checkpoint", fmt.Sprintf("%s (%d bytes of data)", showText(c.Phase), len(c.Data)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Header) > 0 {
		fmt.Fprintf(out, "\nheaders:\n")
		for _, h := range r.Header {
			fmt.Fprintf(out, "  %s: %s\n", showText(h.Name), showText(h.Value))
		}
	}
	switch {
	case r.State != record.Completed:
		fmt.Fprintf(out, "\nno body: the request did not complete\n")
	case len(r.Body) == 0:
		fmt.Fprintf(out, "\nbody: empty\n")
	case isPrintable(r.Body):
		fmt.Fprintf(out, "\nbody (%d bytes):\n%s", len(r.Body), r.Body)
		if r.Body[len(r.Body)-1] != '\n' {
			fmt.Fprintln(out)
		}
	default:
		fmt.Fprintf(out, "\nbody (%d bytes, binary):\n%s", len(r.Body), hex.Dump(r.Body))
	}
	return out.Flush()
}

// isPrintable reports whether b is UTF-8 text that is safe to print:
// graphic characters and white space, but no other control characters.
func isPrintable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	return strings.IndexFunc(string(b), func(r rune) bool {
		return !unicode.IsPrint(r) && r != '\n' && r != '\r' && r != '\t'
	}) < 0
}

func showFingerprint(f record.Fingerprint) string {
	return fmt.Sprintf("v%d:%016x", f.Version, f.Sum)
}
