package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/idemkv/idemkv/bench/payload"
	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// The crash test runs a load in a child process (this test binary, running
// TestCrashChild), kills it with SIGKILL at a random moment, reopens the
// data directory and checks the engine's promises:
//
//   - every completion the child acknowledged (printed after Complete
//     returned) replays byte for byte; in the Relaxed mode, every one
//     acknowledged before an Engine.Sync that returned (the child prints
//     "syncing" before the call and "synced" after it);
//   - every claim the child announced (printed after Begin returned
//     Proceed and Engine.Sync then returned: leases never wait for an
//     fsync) and never finished is recovered: Proceed with Recovered;
//   - no stored record is damaged or half-written;
//   - the engine opens cleanly every time.
//
// IDEMKV_CRASH_CYCLES sets the number of kill cycles per durability mode
// (default 3; the README quotes a long run).
const (
	envDir  = "IDEMKV_CRASH_DIR"
	envMode = "IDEMKV_CRASH_MODE"
	envSeed = "IDEMKV_CRASH_SEED"
)

func bodyFor(key string) []byte {
	h := xxhash.Sum64String(key)
	return payload.JSON(nil, 100+int(h%3000), h)
}

func crashKey(k string) record.Key {
	return record.Key{Scope: "crash", Endpoint: "POST /v1/calls", Key: k}
}

func TestCrashChild(t *testing.T) {
	dir := os.Getenv(envDir)
	if dir == "" {
		t.Skip("runs only as the child of TestCrashKill9")
	}
	mode, _ := engine.ParseDurability(os.Getenv(envMode))
	seed, _ := strconv.ParseUint(os.Getenv(envSeed), 10, 64)
	e, err := engine.Open(dir, &engine.Options{Durability: mode})
	if err != nil {
		fmt.Printf("openfail %v\n", err)
		os.Exit(3)
	}
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		// One write(2) per line, after the fact it reports.
		_, _ = os.Stdout.WriteString(fmt.Sprintf(format, args...) + "\n")
	}
	var wg sync.WaitGroup
	if mode == engine.Relaxed {
		go func() {
			for {
				say("syncing -")
				if err := e.Sync(context.Background()); err != nil {
					say("error sync %v", err)
					return
				}
				say("synced -")
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
			}
		}()
	}
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			var done []string
			for i := 0; ; i++ {
				k := fmt.Sprintf("s%d-g%d-%d", seed, g, i)
				if len(done) > 0 && rng.IntN(5) == 0 {
					k = done[rng.IntN(len(done))] // a retry of an acknowledged request
				}
				body := bodyFor(k)
				res, err := e.Begin(context.Background(), engine.Request{
					Key: crashKey(k), Fingerprint: record.Sum(body), RequestID: k})
				if err != nil {
					say("error %s %v", k, err)
					return
				}
				switch res.Outcome {
				case engine.Replay:
					if !bytes.Equal(res.Record.Body, body) || res.Record.Status != 201 {
						say("bad %s", k)
					}
				case engine.Proceed:
					if rng.IntN(200) == 0 {
						if err := e.Sync(context.Background()); err != nil {
							say("error %s %v", k, err)
							return
						}
						say("claim %s", k)
						select {} // hang holding the claim until killed
					}
					if err := res.Claim.Complete(context.Background(), engine.Response{
						Status: 201, Body: body,
						Header: []record.Header{{Name: "Content-Type", Value: "application/json"}}}); err != nil {
						say("error %s %v", k, err)
						return
					}
					say("ack %s", k)
					done = append(done, k)
				default:
					say("bad %s outcome %v", k, res.Outcome)
				}
			}
		}()
	}
	wg.Wait()
	select {}
}

func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns and kills child processes")
	}
	cycles := 3
	if s := os.Getenv("IDEMKV_CRASH_CYCLES"); s != "" {
		cycles, _ = strconv.Atoi(s)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []engine.Durability{engine.Synced, engine.Relaxed} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
			totalAcks, totalRecovered := 0, 0
			for cycle := range cycles {
				acks, synced, claims := runChild(t, exe, dir, mode, cycle, 50+rng.IntN(1500))
				if mode == engine.Synced {
					synced = len(acks)
				}
				totalAcks += synced
				totalRecovered += verifyAfterCrash(t, dir, acks[:synced], claims)
			}
			t.Logf("%s: %d cycles, %d acknowledged completions verified, %d interrupted claims recovered, 0 lost",
				mode, cycles, totalAcks, totalRecovered)
		})
	}
}

// runChild runs the load until it has acknowledged killAfter completions
// (or 10 seconds passed), kills it with SIGKILL, and returns what it
// acknowledged, how many of those an Engine.Sync covered (Relaxed), and
// the claims it left hanging.
func runChild(t *testing.T, exe, dir string, mode engine.Durability, cycle, killAfter int) (acks []string, synced int, claims []string) {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^TestCrashChild$", "-test.timeout=0")
	cmd.Env = append(os.Environ(), envDir+"="+dir, envMode+"="+mode.String(), envSeed+"="+strconv.Itoa(cycle))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.AfterFunc(10*time.Second, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
	defer deadline.Stop()
	sc := bufio.NewScanner(out)
	killed := false
	syncing := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "syncing":
			syncing = len(acks)
		case "synced":
			synced = syncing
		case "ack":
			acks = append(acks, f[1])
		case "claim":
			claims = append(claims, f[1])
		case "bad", "error", "openfail":
			_ = cmd.Process.Signal(syscall.SIGKILL)
			t.Fatalf("cycle %d: child reported: %s", cycle, sc.Text())
		}
		if !killed && len(acks) >= killAfter {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			killed = true // keep reading what it wrote before it died
		}
	}
	_ = cmd.Wait()
	if len(acks) == 0 {
		t.Fatalf("cycle %d: the child acknowledged nothing", cycle)
	}
	return acks, synced, claims
}

func verifyAfterCrash(t *testing.T, dir string, acks, claims []string) (recovered int) {
	t.Helper()
	e, err := engine.Open(dir, nil)
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer func() {
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	lost := 0
	for _, k := range acks {
		body := bodyFor(k)
		res, err := e.Begin(context.Background(), engine.Request{Key: crashKey(k), Fingerprint: record.Sum(body)})
		if err != nil {
			t.Fatalf("key %s: %v", k, err)
		}
		if res.Outcome != engine.Replay || !bytes.Equal(res.Record.Body, body) {
			lost++
			if res.Claim != nil {
				_ = res.Claim.Release(context.Background())
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged completions did not replay after kill -9", lost, len(acks))
	}
	for _, k := range claims {
		res, err := e.Begin(context.Background(), engine.Request{Key: crashKey(k), Fingerprint: record.Sum(bodyFor(k))})
		if err != nil {
			t.Fatal(err)
		}
		if res.Outcome != engine.Proceed || !res.Recovered {
			t.Fatalf("interrupted claim %s: outcome %v recovered %v; want a recovered Proceed", k, res.Outcome, res.Recovered)
		}
		recovered++
		// Leave some recovered claims completed, some released.
		if recovered%2 == 0 {
			err = res.Claim.Release(context.Background())
		} else {
			err = res.Claim.Complete(context.Background(), engine.Response{Status: 201, Body: bodyFor(k)})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	err = e.Scan(context.Background(), engine.ScanOptions{IncludeExpired: true, WithBody: true}, func(en engine.Entry) error {
		if en.Err != nil {
			return fmt.Errorf("damaged record %v after kill -9: %w", en.Key, en.Err)
		}
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	return recovered
}
