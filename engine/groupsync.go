package engine

import (
	"sync"
	"time"
)

// groupSync runs fn (an fsync of the log) on behalf of many callers at
// once. A caller needs a run of fn that starts after its call began; every
// caller that arrives while a run is in progress is served by the next
// run, so under load one fsync makes the writes of many requests durable
// (group commit) and the fsync rate, not the request rate, is what the
// disk sees.
//
// The runs happen on a goroutine of their own, so that callers only wait
// on a channel: waking a thousand waiters costs one close, not a thousand
// turns of a mutex. A failure is sticky: once fn fails, every later Sync
// returns that error without running fn again, because after a failed
// fsync the durability of earlier writes is unknown.
type groupSync struct {
	fn   func() error
	kick chan struct{} // wakes the loop; capacity 1
	quit chan struct{} // closed by stop
	done chan struct{} // closed when the loop has exited

	mu      sync.Mutex
	pending *syncRound // the round the next run serves; guarded by mu
	err     error      // the first failure; guarded by mu
	stopped bool       // guarded by mu
}

// A syncRound is one run of fn and the callers it serves.
type syncRound struct {
	done chan struct{} // closed when the run has finished
	err  error         // written before done is closed
}

// start starts the loop that runs fn.
func (g *groupSync) start(fn func() error) {
	g.fn = fn
	g.kick = make(chan struct{}, 1)
	g.quit = make(chan struct{})
	g.done = make(chan struct{})
	go g.loop()
}

// Sync returns once every write completed before the call is durable, or
// with the error of the run that should have made it so. After stop it
// runs fn itself.
func (g *groupSync) Sync() error {
	g.mu.Lock()
	if g.stopped {
		defer g.mu.Unlock()
		if g.err == nil {
			g.err = g.fn()
		}
		return g.err
	}
	r := g.pending
	if r == nil {
		r = &syncRound{done: make(chan struct{})}
		g.pending = r
	}
	g.mu.Unlock()
	select {
	case g.kick <- struct{}{}:
	default: // the loop has been kicked already and will take r
	}
	<-r.done
	return r.err
}

func (g *groupSync) loop() {
	defer close(g.done)
	for {
		select {
		case <-g.kick:
		case <-g.quit:
			return
		}
		g.mu.Lock()
		r, err := g.pending, g.err
		g.pending = nil
		g.mu.Unlock()
		if r == nil {
			continue
		}
		if err == nil {
			if err = g.fn(); err != nil {
				g.mu.Lock()
				g.err = err
				g.mu.Unlock()
			}
		}
		r.err = err
		close(r.done)
	}
}

// stop ends the loop after serving every caller already waiting; later
// Sync calls run fn directly. It is safe to call more than once.
func (g *groupSync) stop() { g.stopWithin(0, nil) }

// stopWithin is stop that waits at most limit (if limit > 0) for a run in
// progress, and reports whether the loop ended. If it gives up (a run stuck
// in a store that has failed), the callers that wait for a later run get
// the error failed (ErrClosed if it is nil) instead of waiting for ever;
// those of the stuck run get its result if it ever returns.
func (g *groupSync) stopWithin(limit time.Duration, failed error) bool {
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		return true
	}
	g.stopped = true
	r := g.pending
	g.pending = nil
	g.mu.Unlock()
	close(g.quit)
	ended := true
	if limit > 0 {
		t := time.NewTimer(limit)
		defer t.Stop()
		select {
		case <-g.done:
		case <-t.C:
			ended = false
		}
	} else {
		<-g.done
	}
	if r != nil {
		// Callers that registered but were not served before the loop
		// saw quit: serve them here (or fail them, if the loop is stuck).
		if ended {
			g.mu.Lock()
			if g.err == nil {
				g.err = g.fn()
			}
			r.err = g.err
			g.mu.Unlock()
		} else {
			if failed == nil {
				failed = ErrClosed
			}
			r.err = failed
		}
		close(r.done)
	}
	return ended
}
