package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// topScopes is how many scopes stats lists.
const topScopes = 10

// runStats is 'idemkv stats': counts and sizes of a data directory.
func runStats(args []string) (err error) {
	fs := newFlagSet("idemkv stats", "Usage: idemkv stats [flags]\n\n"+
		"Prints counts and sizes of a data directory (one that no server is using):\n"+
		"disk bytes, generations, records by state (expired ones not swept yet\n"+
		"included), stored bytes, oldest and newest expiry, and the scopes with the\n"+
		"most records. Damaged records are counted, and make the command exit 1.\n\n")
	var df dataFlags
	df.register(fs)
	asJSON := fs.Bool("json", false, "print a JSON object")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	eng, err := openDataDir(&df, false)
	if err != nil {
		return err
	}
	defer closeEngine(eng, &err)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	st := eng.Stats()
	s := dirStats{
		Dir: df.dir, GenerationWidth: st.GenerationWidth.String(),
		LowGeneration: st.LowGeneration, HighGeneration: st.HighGeneration,
		DiskBytes: st.DiskBytes, Opens: st.Incarnation,
		States: map[string]int{},
	}
	now := time.Now()
	var oldest, newest time.Time
	type perScope struct {
		records int
		bytes   int64
	}
	scopes := map[string]*perScope{}
	err = eng.Scan(ctx, engine.ScanOptions{Prefix: record.AllKeys(), IncludeExpired: true}, func(ent engine.Entry) error {
		s.Records++
		s.StoredBytes += int64(ent.Size)
		if ent.Key.Key != "" { // the key of a damaged record may be unknown
			ps := scopes[ent.Key.Scope]
			if ps == nil {
				ps = &perScope{}
				scopes[ent.Key.Scope] = ps
			}
			ps.records++
			ps.bytes += int64(ent.Size)
		}
		if ent.Err != nil {
			s.Damaged++
			s.States["damaged"]++
			return nil
		}
		s.States[stateOf(ent.Record, st, now)]++
		if e := ent.Record.ExpiresAt; !e.IsZero() {
			if oldest.IsZero() || e.Before(oldest) {
				oldest = e
			}
			if e.After(newest) {
				newest = e
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if s.Records > 0 {
		s.BytesPerRecord = s.StoredBytes / int64(s.Records)
	}
	s.OldestExpiry, s.NewestExpiry = jsonTime(oldest), jsonTime(newest)
	s.Scopes = len(scopes)
	for scope, ps := range scopes {
		sc := scopeJSON{Records: ps.records, Bytes: ps.bytes, scope: scope}
		sc.Scope, sc.ScopeHex = jsonPart(scope)
		s.TopScopes = append(s.TopScopes, sc)
	}
	slices.SortFunc(s.TopScopes, func(a, b scopeJSON) int {
		return cmp.Or(cmp.Compare(b.Records, a.Records), cmp.Compare(a.scope, b.scope))
	})
	s.TopScopes = s.TopScopes[:min(len(s.TopScopes), topScopes)]

	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			return err
		}
	} else if err := s.write(); err != nil {
		return err
	}
	return damaged(s.Damaged)
}

// dirStats is what stats prints.
type dirStats struct {
	Dir             string         `json:"dir"`
	GenerationWidth string         `json:"generation_width"`
	LowGeneration   uint32         `json:"low_generation"`
	HighGeneration  uint32         `json:"high_generation"`
	DiskBytes       uint64         `json:"disk_bytes"`
	Opens           uint64         `json:"opens"` // the incarnation number
	Records         int            `json:"records"`
	States          map[string]int `json:"states"`
	Damaged         int            `json:"damaged"`
	StoredBytes     int64          `json:"stored_bytes"`
	BytesPerRecord  int64          `json:"bytes_per_record"`
	OldestExpiry    *time.Time     `json:"oldest_expiry,omitempty"`
	NewestExpiry    *time.Time     `json:"newest_expiry,omitempty"`
	Scopes          int            `json:"scopes"`
	TopScopes       []scopeJSON    `json:"top_scopes"`
}

type scopeJSON struct {
	Scope    *string `json:"scope,omitempty"`
	ScopeHex string  `json:"scope_hex,omitempty"`
	Records  int     `json:"records"`
	Bytes    int64   `json:"bytes"`
	scope    string
}

// stateNames are the states in the order stats prints them.
var stateNames = []string{"completed", "expired", "interrupted", "in-flight", "damaged"}

func (s *dirStats) write() error {
	out := bufio.NewWriter(os.Stdout)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	field := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{name}, args...)...)
	}
	field("data directory", "%s", s.Dir)
	field("disk bytes", "%d", s.DiskBytes)
	field("generation width", "%s", s.GenerationWidth)
	if s.HighGeneration < s.LowGeneration {
		field("generations", "none written yet")
	} else {
		field("generations", "%d to %d", s.LowGeneration, s.HighGeneration)
	}
	field("opened", "%d times by a server or sweep", s.Opens)
	byState := ""
	for _, name := range stateNames {
		if n := s.States[name]; n > 0 {
			byState += fmt.Sprintf(", %d %s", n, name)
		}
	}
	field("records", "%d%s", s.Records, byState)
	field("stored bytes", "%d (%d per record)", s.StoredBytes, s.BytesPerRecord)
	if s.OldestExpiry != nil {
		field("expiry", "oldest %s, newest %s", showTime(*s.OldestExpiry), showTime(*s.NewestExpiry))
	}
	field("scopes", "%d", s.Scopes)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.TopScopes) > 0 {
		fmt.Fprintf(out, "\ntop scopes by records:\n")
		fmt.Fprintf(tw, "RECORDS\tBYTES\tSCOPE\n")
		for _, sc := range s.TopScopes {
			fmt.Fprintf(tw, "%d\t%d\t%s\n", sc.Records, sc.Bytes, showPart(sc.scope))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return out.Flush()
}
