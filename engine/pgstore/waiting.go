package pgstore

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Waiting for a request in flight (see package sharedstore for the
// design): a waiter's Begin marks the row (w, set by the begin function);
// the Complete or Release of a marked claim notifies the key's digest on
// the channel Table + "_done" (NOTIFY, delivered when the completing
// transaction commits: with CompleteTx, when the handler's writes do).
// Every Store that has waited keeps one connection of its own that
// LISTENs on that channel, made before its first waiting Begin asks, and
// wakes the watches of the keys it receives.
//
// If that connection breaks, notifications sent meanwhile are lost: the
// Store makes a new one (every resubscribeAfter at most), and the waiters
// that missed a notification learn the end by their slow poll (at most
// MaxPollInterval later). Without a connection, waiters poll.

// listener is the Store's LISTEN connection.
type listener struct {
	ok   atomic.Bool // a connection listens: the fast path of subscribed
	mu   sync.Mutex
	on   bool      // the listening goroutine runs
	next time.Time // after a failed LISTEN, when to try again
}

// resubscribeAfter is how long a Store whose LISTEN failed polls before
// it tries again.
const resubscribeAfter = 5 * time.Second

// channel is the channel that Complete and Release notify waited-for keys
// on.
func (s *Store) channel() string { return s.opts.Table + "_done" }

// subscribed makes sure the Store listens on its channel (lazily, at its
// first wait); false if it cannot (it tries again resubscribeAfter
// later). The LISTEN has returned before it returns true, so a
// notification committed after that is received.
func (s *Store) subscribed() bool {
	l := &s.listener
	if l.ok.Load() {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ok.Load() {
		return true
	}
	if l.on || time.Now().Before(l.next) {
		return false
	}
	conn, err := s.listen()
	if err != nil {
		l.next = time.Now().Add(resubscribeAfter)
		return false
	}
	l.ok.Store(true)
	l.on = true
	s.work.Add(1)
	go s.dispatch(conn)
	return true
}

// listen opens a connection of its own (not the pool's: it stays busy)
// and LISTENs on the channel.
func (s *Store) listen() (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.Tracer = nil
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel()}.Sanitize()); err != nil {
		_ = conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// dispatch wakes the watches of the keys notified on the channel, until
// Close. When the connection breaks it makes another.
func (s *Store) dispatch(conn *pgx.Conn) {
	defer s.work.Done()
	l := &s.listener
	for {
		n, err := conn.WaitForNotification(s.ctx)
		if err == nil {
			s.waiter.Watches.Notify(n.Payload)
			continue
		}
		_ = conn.Close(context.Background())
		l.ok.Store(false)
		for {
			if s.ctx.Err() != nil {
				l.mu.Lock()
				l.on = false
				l.mu.Unlock()
				return
			}
			if conn, err = s.listen(); err == nil {
				break
			}
			select {
			case <-time.After(resubscribeAfter):
			case <-s.ctx.Done():
			}
		}
		l.ok.Store(true)
	}
}
