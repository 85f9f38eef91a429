package bench

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progressEvery is how often a progress line is printed; a phase that
// ends sooner prints none.
var progressEvery = 2 * time.Second

// startProgress prints "bench: label: done/total unit, rate unit/s" to w
// every progressEvery until the returned function is called, which then
// prints the phase's overall rate if a line was printed before. done
// reports the units completed so far; total 0 means unknown. A nil w
// prints nothing.
func startProgress(w io.Writer, label, unit string, total int, done func() int64) (stop func()) {
	if w == nil {
		return func() {}
	}
	start := time.Now()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	printed := false // written by the goroutine, read after wg.Wait
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				printed = true
				writeProgress(w, label, unit, total, done(), time.Since(start), "")
			}
		}
	}()
	return func() {
		close(quit)
		wg.Wait()
		if printed {
			writeProgress(w, label, unit, total, done(), time.Since(start), " in "+short(time.Since(start).Round(time.Millisecond))+", done")
		}
	}
}

func writeProgress(w io.Writer, label, unit string, total int, n int64, elapsed time.Duration, suffix string) {
	of := ""
	if total > 0 {
		of = "/" + group(float64(total))
	}
	fmt.Fprintf(w, "bench: %s: %s%s %s, %s %s/s%s\n", label, group(float64(n)), of, unit,
		group(float64(n)/elapsed.Seconds()), unit, suffix)
}
