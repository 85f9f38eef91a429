package redisstore

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Waiting for a request in flight (see package sharedstore for the
// design): a waiter's Begin marks the record (field w, set by
// beginScript); the Complete or Release of a marked claim publishes its
// Redis key on the channel Prefix + "done" (completeScript,
// releaseScript). Every Store that has waited keeps one subscription to
// that channel, made before its first waiting Begin asks, and wakes the
// watches of the keys it receives. Without a subscription (the server
// refused SUBSCRIBE), waiters poll.

// subscription is the Store's subscription to its channel.
type subscription struct {
	ok   atomic.Bool // ps is set: the fast path of subscribed
	mu   sync.Mutex
	ps   *redis.PubSub // nil until subscribed
	next time.Time     // after a failed SUBSCRIBE, when to try again
}

// resubscribeAfter is how long a Store whose SUBSCRIBE failed polls before
// it tries again.
const resubscribeAfter = 30 * time.Second

// subscribed makes sure the Store is subscribed to its channel (lazily,
// at its first wait); false if it cannot be (it tries again
// resubscribeAfter later). The subscription is confirmed before it
// returns true, so a publication after that is received.
func (s *Store) subscribed() bool {
	w := &s.sub
	if w.ok.Load() {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ps != nil {
		return true
	}
	if time.Now().Before(w.next) {
		return false
	}
	ps := s.c.Subscribe(s.ctx, s.channel)
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		_ = ps.Close()
		w.next = time.Now().Add(resubscribeAfter)
		return false
	}
	w.ps = ps
	w.ok.Store(true)
	s.work.Add(1)
	go s.dispatch(ps)
	return true
}

// dispatch wakes the watches of the keys published on the channel, until
// Close.
func (s *Store) dispatch(ps *redis.PubSub) {
	defer s.work.Done()
	ch := ps.Channel()
	for {
		select {
		case msg, ok := <-ch:
			if !ok {
				return
			}
			s.waiter.Watches.Notify(msg.Payload)
		case <-s.ctx.Done():
			_ = ps.Close()
			return
		}
	}
}
