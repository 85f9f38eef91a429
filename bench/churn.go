package bench

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/expiry"
)

// ChurnConfig describes a churn run: idemkv alone, fresh requests without
// pause on records of a short TTL, to check that the disk space in use
// stays within a small multiple of the live set however long it runs.
// Zero fields take their defaults; negative ones are invalid.
type ChurnConfig struct {
	// TTL is the records' time to live (engine.Options.TTL). Default 2s;
	// at least a second.
	TTL time.Duration

	// GenerationWidth is the data directory's generation width
	// (engine.Options.GenerationWidth), a whole number of seconds.
	// Default expiry.DefaultWidth(TTL): an eighth of it, at least 1s.
	GenerationWidth time.Duration

	// SweepInterval is how often the engine drops expired generations
	// by itself. Default a tenth of the width, at least 100ms.
	SweepInterval time.Duration

	// Concurrency is the number of goroutines inserting. Default 64.
	Concurrency int

	// BodySize and Durability are as in Config. Default 2048 and
	// engine.Synced.
	BodySize   int
	Durability engine.Durability

	// Ops is the number of inserts, and Duration how long to insert;
	// the run stops at whichever comes first. If both are zero, Duration
	// is ten TTLs.
	Ops      int
	Duration time.Duration

	// SampleEvery is how often the disk space and the live set are
	// measured. Default 1s.
	SampleEvery time.Duration

	// Dir and Progress are as in Config.
	Dir      string
	Progress io.Writer
}

func (c ChurnConfig) withDefaults() (ChurnConfig, error) {
	switch {
	case c.TTL < 0 || c.GenerationWidth < 0 || c.SweepInterval < 0 || c.Concurrency < 0 || c.BodySize < 0 ||
		c.Ops < 0 || c.Duration < 0 || c.SampleEvery < 0:
		return c, fmt.Errorf("%w: negative churn setting", ErrInvalid)
	case c.Durability > engine.Relaxed:
		return c, fmt.Errorf("%w: unknown durability %d", ErrInvalid, uint8(c.Durability))
	case c.Ops > maxRecords:
		return c, fmt.Errorf("%w: Ops above %d", ErrInvalid, maxRecords)
	}
	if c.TTL == 0 {
		c.TTL = 2 * time.Second
	}
	if c.GenerationWidth == 0 {
		c.GenerationWidth = expiry.DefaultWidth(c.TTL)
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = max(100*time.Millisecond, c.GenerationWidth/10)
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.BodySize == 0 {
		c.BodySize = DefaultBodySize
	}
	if c.Ops == 0 && c.Duration == 0 {
		c.Duration = 10 * c.TTL
	}
	if c.SampleEvery == 0 {
		c.SampleEvery = time.Second
	}
	if err := (expiry.Policy{TTL: c.TTL}).WithDefaults().Validate(c.GenerationWidth); err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return c, nil
}

// ChurnSample is one measurement of a churn run.
type ChurnSample struct {
	// At is the time since the first insert.
	At time.Duration `json:"at_ns"`
	// Inserts is the number of records inserted so far.
	Inserts int `json:"inserts"`
	// LiveRecords and LiveBytes are the records that have not expired
	// (those completed within the last TTL, and claims in flight) and
	// their stored size: encoded, compressed value plus encoded key.
	LiveRecords int   `json:"live_records"`
	LiveBytes   int64 `json:"live_bytes"`
	// DiskBytes is the disk space the data directory uses
	// (engine.Stats.DiskBytes).
	DiskBytes uint64 `json:"disk_bytes"`
	// Ratio is DiskBytes divided by LiveBytes; 0 without live records.
	Ratio float64 `json:"ratio"`
}

// ChurnReport is the outcome of RunChurn.
type ChurnReport struct {
	Config  ChurnConfig
	BodyLen int
	// Inserts is the number of records inserted, in Elapsed.
	Inserts   int
	Elapsed   time.Duration
	OpsPerSec float64
	// Samples are taken every SampleEvery, and once more at the end.
	Samples []ChurnSample
	// Warmup is how long the live set takes to reach its steady state
	// and the first generation to become droppable: TTL plus one
	// generation width plus one sweep interval.
	Warmup time.Duration
	// MaxRatio is the largest ratio of disk space to live bytes among the
	// samples after Warmup (among all of them if none is), at MaxRatioAt.
	MaxRatio   float64
	MaxRatioAt time.Duration
	// FinalRatio is the ratio of the last sample.
	FinalRatio float64
	// GenerationsDropped counts the generations the engine swept.
	GenerationsDropped uint64
	GoVersion          string
	GOMAXPROCS         int
}

// RunChurn inserts fresh records of a short TTL into idemkv from
// Concurrency goroutines until Ops inserts or Duration, while the engine
// sweeps expired generations by itself, and samples the disk space in use
// against the live set.
func RunChurn(ctx context.Context, cfg ChurnConfig) (_ ChurnReport, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return ChurnReport{Config: cfg}, err
	}
	d := newDataset(0, cfg.BodySize)
	rep := ChurnReport{
		Config: cfg, BodyLen: d.bodyLen(), Warmup: cfg.TTL + cfg.GenerationWidth + cfg.SweepInterval,
		GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0),
	}
	root, err := os.MkdirTemp(cfg.Dir, "idemkv-churn-")
	if err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(root)
	e, err := engine.Open(filepath.Join(root, "idemkv"), &engine.Options{
		TTL: cfg.TTL, GenerationWidth: cfg.GenerationWidth, SweepInterval: cfg.SweepInterval, Durability: cfg.Durability,
	})
	if err != nil {
		return rep, fmt.Errorf("bench: churn: %w", err)
	}
	defer func() {
		if cerr := e.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("bench: churn: close: %w", cerr)
		}
	}()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Duration > 0 {
		runCtx, cancel = context.WithTimeout(runCtx, cfg.Duration)
		defer cancel()
	}
	limit := int64(cfg.Ops)
	if limit == 0 {
		limit = maxRecords
	}
	var next, done atomic.Int64
	errs := make([]error, cfg.Concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for g := range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				x := next.Add(1) - 1
				if x >= limit {
					return
				}
				if err := churnInsert(e, d, int(x)); err != nil {
					errs[g] = err
					cancel()
					return
				}
				done.Add(1)
			}
		}()
	}
	stopProgress := startProgress(cfg.Progress, "churn idemkv", "inserts", cfg.Ops, done.Load)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(cfg.SampleEvery)
	defer tick.Stop()
	var sampleErr error
	for running := true; running; {
		select {
		case <-finished:
			running = false
		case <-tick.C:
			s, err := churnSample(ctx, e, int(done.Load()), time.Since(start))
			if err != nil {
				sampleErr = err
				cancel()
				<-finished
				running = false
				continue
			}
			rep.Samples = append(rep.Samples, s)
		}
	}
	rep.Elapsed = time.Since(start)
	stopProgress()
	rep.Inserts = int(done.Load())
	rep.OpsPerSec = float64(rep.Inserts) / rep.Elapsed.Seconds()
	for _, err := range append(errs, sampleErr) {
		if err != nil {
			return rep, fmt.Errorf("bench: churn: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	s, err := churnSample(ctx, e, rep.Inserts, rep.Elapsed)
	if err != nil {
		return rep, fmt.Errorf("bench: churn: %w", err)
	}
	rep.Samples = append(rep.Samples, s)
	rep.FinalRatio = s.Ratio
	rep.GenerationsDropped = e.Stats().GenerationsDropped
	for _, warm := range []bool{true, false} {
		for _, s := range rep.Samples {
			if (!warm || s.At >= rep.Warmup) && s.Ratio > rep.MaxRatio {
				rep.MaxRatio, rep.MaxRatioAt = s.Ratio, s.At
			}
		}
		if rep.MaxRatio > 0 {
			break
		}
	}
	return rep, nil
}

// churnInsert stores the record of key index x: Begin, then Complete.
func churnInsert(e *engine.Engine, d *dataset, x int) error {
	ctx := context.Background()
	k := d.keyAt(x)
	res, err := e.Begin(ctx, engine.Request{Key: k, Fingerprint: d.fpAt(x), RequestID: k.Key})
	if err != nil {
		return err
	}
	if res.Outcome != engine.Proceed {
		return fmt.Errorf("%w: churn: key %s answered %v; want Proceed", ErrUnexpectedOutcome, k.Key, res.Outcome)
	}
	return res.Claim.Complete(ctx, engine.Response{Status: 201, Header: d.hdr, Body: d.bodyAt(x)})
}

// churnSample measures the live set (with a Scan) and the disk space.
func churnSample(ctx context.Context, e *engine.Engine, inserts int, at time.Duration) (ChurnSample, error) {
	s := ChurnSample{At: at, Inserts: inserts}
	var kb []byte
	err := e.Scan(ctx, engine.ScanOptions{}, func(ent engine.Entry) error {
		kb = ent.Key.Append(kb[:0])
		s.LiveRecords++
		s.LiveBytes += int64(ent.Size + len(kb))
		return nil
	})
	if err != nil {
		return s, err
	}
	s.DiskBytes = e.Stats().DiskBytes
	if s.LiveBytes > 0 {
		s.Ratio = float64(s.DiskBytes) / float64(s.LiveBytes)
	}
	return s, nil
}

// WriteTable writes the churn run as a configuration line, a table of
// the samples and a summary line.
func (r ChurnReport) WriteTable(w io.Writer) error {
	c := r.Config
	if _, err := fmt.Fprintf(w, "churn: ttl=%v width=%v sweep=%v durability=%s concurrency=%d body=%dB (mean %dB) %s GOMAXPROCS=%d\n",
		c.TTL, c.GenerationWidth, c.SweepInterval, c.Durability, c.Concurrency, c.BodySize, r.BodyLen, r.GoVersion, r.GOMAXPROCS); err != nil {
		return err
	}
	rows := [][]string{{"t", "inserts", "live records", "live bytes", "disk bytes", "disk ÷ live"}}
	for _, s := range r.Samples {
		ratio := "-"
		if s.Ratio > 0 {
			ratio = ftoa(s.Ratio, 2)
		}
		rows = append(rows, []string{short(s.At.Round(time.Millisecond)), group(float64(s.Inserts)),
			group(float64(s.LiveRecords)), group(float64(s.LiveBytes)), group(float64(s.DiskBytes)), ratio})
	}
	if _, err := io.WriteString(w, formatTable(rows)); err != nil {
		return err
	}
	verdict := "below"
	if r.MaxRatio >= 2 {
		verdict = "NOT below"
	}
	_, err := fmt.Fprintf(w, "%s inserts in %s (%s/s), %d generations dropped; disk ÷ live after the %s warm-up: max %.2f (at %s), final %.2f: %s 2x\n",
		group(float64(r.Inserts)), short(r.Elapsed.Round(time.Millisecond)), group(r.OpsPerSec), r.GenerationsDropped,
		short(r.Warmup), r.MaxRatio, short(r.MaxRatioAt.Round(time.Millisecond)), r.FinalRatio, verdict)
	return err
}

// WriteCSV writes a header line and one line per sample; times are in
// nanoseconds.
func (r ChurnReport) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"ttl_ns", "width_ns", "durability", "concurrency", "body_len", "at_ns", "inserts",
		"live_records", "live_bytes", "disk_bytes", "ratio"})
	c := r.Config
	for _, s := range r.Samples {
		_ = cw.Write([]string{strconv.FormatInt(int64(c.TTL), 10), strconv.FormatInt(int64(c.GenerationWidth), 10),
			c.Durability.String(), strconv.Itoa(c.Concurrency), strconv.Itoa(r.BodyLen),
			strconv.FormatInt(int64(s.At), 10), strconv.Itoa(s.Inserts), strconv.Itoa(s.LiveRecords),
			strconv.FormatInt(s.LiveBytes, 10), strconv.FormatUint(s.DiskBytes, 10), ftoa(s.Ratio, 3)})
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes the churn run as one indented JSON object (times in
// nanoseconds).
func (r ChurnReport) WriteJSON(w io.Writer) error {
	c := r.Config
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		TTL                time.Duration `json:"ttl_ns"`
		Width              time.Duration `json:"generation_width_ns"`
		SweepInterval      time.Duration `json:"sweep_interval_ns"`
		Durability         string        `json:"durability"`
		Concurrency        int           `json:"concurrency"`
		BodySize           int           `json:"body_size"`
		BodyLen            int           `json:"body_len"`
		Inserts            int           `json:"inserts"`
		Elapsed            time.Duration `json:"elapsed_ns"`
		OpsPerSec          float64       `json:"ops_per_sec"`
		Warmup             time.Duration `json:"warmup_ns"`
		MaxRatio           float64       `json:"max_ratio"`
		MaxRatioAt         time.Duration `json:"max_ratio_at_ns"`
		FinalRatio         float64       `json:"final_ratio"`
		GenerationsDropped uint64        `json:"generations_dropped"`
		Samples            []ChurnSample `json:"samples"`
		GoVersion          string        `json:"go_version"`
		GOMAXPROCS         int           `json:"gomaxprocs"`
	}{c.TTL, c.GenerationWidth, c.SweepInterval, c.Durability.String(), c.Concurrency, c.BodySize, r.BodyLen,
		r.Inserts, r.Elapsed, r.OpsPerSec, r.Warmup, r.MaxRatio, r.MaxRatioAt, r.FinalRatio, r.GenerationsDropped,
		r.Samples, r.GoVersion, r.GOMAXPROCS})
}
