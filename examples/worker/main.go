// Command worker consumes a queue whose broker redelivers messages, as
// real brokers do (at-least-once delivery), and uses engine/idemjob so
// that each message's job runs once: redeliveries get the stored result,
// a message id reused with another payload is refused, and a job that
// fails for a passing reason runs again on its next delivery.
//
//	go run ./examples/worker [-data DIR] [-workers 4] [-once]
//
// With -once it checks every outcome and exits non-zero if one is wrong.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemjob"
)

// message is what the queue delivers: an id the producer chose, and a
// payload.
type message struct {
	ID      string
	Payload string
}

// receipt is the job's result, stored and replayed.
type receipt struct {
	Charge string `json:"charge"`
	Amount string `json:"amount"`
}

func main() {
	data := flag.String("data", "", "data directory (default: a new temporary directory)")
	workers := flag.Int("workers", 4, "consumers reading the queue at once")
	once := flag.Bool("once", false, "check every outcome and exit non-zero if one is wrong")
	flag.Parse()

	dir := *data
	if dir == "" {
		d, err := os.MkdirTemp("", "idemkv-worker-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	store, err := engine.Open(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	// The deliveries: m1 three times (two of them at once), m2 with a
	// flaky first run, m3 once and then again with another payload (a
	// producer bug), m4 once.
	deliveries := []message{
		{"m1", "amount=100"}, {"m1", "amount=100"}, {"m2", "amount=250"}, {"m3", "amount=75"},
		{"m1", "amount=100"}, {"m4", "amount=10"}, {"m2", "amount=250"}, {"m3", "amount=80"},
	}
	queue := make(chan message)
	var charges atomic.Int64
	var flaky atomic.Bool
	charge := func(m message) func(context.Context, *idemjob.Run) (receipt, error) {
		return func(ctx context.Context, run *idemjob.Run) (receipt, error) {
			if m.ID == "m2" && flaky.CompareAndSwap(false, true) {
				return receipt{}, errors.New("payment provider timed out") // released: the next delivery runs it
			}
			n := charges.Add(1)
			return receipt{Charge: fmt.Sprintf("ch_%d", n), Amount: m.Payload}, nil
		}
	}

	var mu sync.Mutex
	outcomes := map[string][]string{} // by message id, in no particular order
	var wg sync.WaitGroup
	for range *workers {
		wg.Go(func() {
			for m := range queue {
				res, err := idemjob.Do(context.Background(), store,
					idemjob.Call{Name: "charge", Key: m.ID, Input: m.Payload}, charge(m), nil)
				var out string
				switch {
				case errors.Is(err, idemjob.ErrConflict):
					out = "conflict"
				case err != nil:
					out = "error: " + err.Error()
				case res.Replayed:
					out = "replay " + res.Value.Charge
				default:
					out = "ran " + res.Value.Charge
				}
				fmt.Printf("%s %-12s -> %s\n", m.ID, m.Payload, out)
				mu.Lock()
				outcomes[m.ID] = append(outcomes[m.ID], out)
				mu.Unlock()
			}
		})
	}
	for _, m := range deliveries {
		queue <- m
	}
	close(queue)
	wg.Wait()
	fmt.Printf("%d deliveries, %d charges\n", len(deliveries), charges.Load())

	if !*once {
		return
	}
	var wrong []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			wrong = append(wrong, fmt.Sprintf(format, args...))
		}
	}
	count := func(id, prefix string) int {
		n := 0
		for _, o := range outcomes[id] {
			if len(o) >= len(prefix) && o[:len(prefix)] == prefix {
				n++
			}
		}
		return n
	}
	check(count("m1", "ran ") == 1 && count("m1", "replay ") == 2, "m1: %v; want one run, two replays", outcomes["m1"])
	check(count("m2", "error: ") == 1 && count("m2", "ran ") == 1, "m2: %v; want a failure, then a run", outcomes["m2"])
	check(count("m3", "ran ") == 1 && count("m3", "conflict") == 1, "m3: %v; want a run and a conflict", outcomes["m3"])
	check(count("m4", "ran ") == 1, "m4: %v; want one run", outcomes["m4"])
	check(charges.Load() == 4, "%d charges; want 4 (one per message)", charges.Load())
	if len(wrong) > 0 {
		sort.Strings(wrong)
		for _, w := range wrong {
			fmt.Println("WRONG:", w)
		}
		os.Exit(1)
	}
	fmt.Println("every message charged once: ok")
}
