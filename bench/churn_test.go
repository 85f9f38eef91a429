package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
)

// TestRunChurn runs the churn mode long enough for the engine to drop
// generations, and checks the samples, never the ratio itself.
func TestRunChurn(t *testing.T) {
	rep, err := RunChurn(context.Background(), ChurnConfig{
		TTL: time.Second, Concurrency: 2, BodySize: 400, Durability: engine.Relaxed,
		Duration: 3 * time.Second, SampleEvery: 250 * time.Millisecond, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Config.GenerationWidth != time.Second || rep.Config.SweepInterval != 100*time.Millisecond {
		t.Errorf("width %v, sweep %v; want 1s, 100ms", rep.Config.GenerationWidth, rep.Config.SweepInterval)
	}
	if rep.Inserts == 0 || len(rep.Samples) < 5 || rep.GenerationsDropped == 0 {
		t.Fatalf("%d inserts, %d samples, %d generations dropped; want some of each", rep.Inserts, len(rep.Samples), rep.GenerationsDropped)
	}
	last := rep.Samples[len(rep.Samples)-1]
	if last.Inserts != rep.Inserts || last.LiveRecords == 0 || last.LiveRecords >= rep.Inserts || last.DiskBytes == 0 {
		t.Errorf("last sample %+v after %d inserts: want some, not all, live", last, rep.Inserts)
	}
	if rep.MaxRatio < rep.FinalRatio || rep.FinalRatio != last.Ratio || rep.MaxRatioAt < rep.Warmup {
		t.Errorf("max ratio %v at %v, final %v; last sample %+v", rep.MaxRatio, rep.MaxRatioAt, rep.FinalRatio, last)
	}
	var tab, cs, js bytes.Buffer
	if err := rep.WriteTable(&tab); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(tab.String(), "\n"); n != len(rep.Samples)+3 || !strings.Contains(tab.String(), "2x") {
		t.Errorf("table of %d lines:\n%s", n, tab.String())
	}
	if err := rep.WriteCSV(&cs); err != nil {
		t.Fatal(err)
	}
	if recs, err := csv.NewReader(&cs).ReadAll(); err != nil || len(recs) != len(rep.Samples)+1 {
		t.Errorf("csv: %d records, %v", len(recs), err)
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var v struct {
		Samples []ChurnSample `json:"samples"`
	}
	if err := json.Unmarshal(js.Bytes(), &v); err != nil || len(v.Samples) != len(rep.Samples) || v.Samples[0] != rep.Samples[0] {
		t.Errorf("json: %v, %+v", err, v)
	}
}

func TestChurnConfigInvalid(t *testing.T) {
	for _, c := range []ChurnConfig{
		{TTL: 500 * time.Millisecond},
		{TTL: 2 * time.Minute, GenerationWidth: time.Second}, // 121 generations
		{GenerationWidth: 1500 * time.Millisecond},
		{Ops: -1},
	} {
		if _, err := RunChurn(context.Background(), c); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: got %v; want ErrInvalid", c, err)
		}
	}
}
