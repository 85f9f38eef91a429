package idemhttp_test

// Reliability campaign: exactly once under contention. Many requests over
// few keys, heavily duplicated, from many goroutines, through the
// middleware over real HTTP against the embedded engine on disk: each
// key's handler runs once, and every answer for a key is the first one
// (or a conflict naming it).

import (
	"encoding/json"
	"fmt"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
)

// contentionSize is the campaign's size: the full size with
// IDEMKV_LONG=1, else a short run that takes seconds under -race.
func contentionSize() (requests, keys, workers int) {
	if os.Getenv("IDEMKV_LONG") == "1" {
		return 100_000, 1_000, 256
	}
	return 5_000, 200, 64
}

// contentionOrder returns the key of each request: every key the same
// number of times, its copies close together (shuffled within windows of
// two workers' worth of requests) so that they overlap, and a tenth of
// them moved anywhere, so that some arrive long after the first.
func contentionOrder(r *rand.Rand, requests, keys, workers int) []int {
	perm := r.Perm(keys)
	order := make([]int, requests)
	for i := range order {
		order[i] = perm[i*keys/requests]
	}
	swap := func(i, j int) { order[i], order[j] = order[j], order[i] }
	for s, w := 0, 2*workers; s < len(order); s += w {
		e := min(s+w, len(order))
		r.Shuffle(e-s, func(i, j int) { swap(s+i, s+j) })
	}
	for range requests / 10 {
		swap(r.IntN(requests), r.IntN(requests))
	}
	return order
}

// contentionHandler creates a payment: it counts its runs by key, sleeps
// up to 200µs to widen the races, and answers 201 with headers, some of
// which are stored and replayed.
type contentionHandler struct {
	index map[string]int // key -> its index; read-only
	runs  []atomic.Int64 // by key index
	Total atomic.Int64
}

func (h *contentionHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	i, ok := h.index[key]
	if !ok {
		http.Error(w, "unknown key "+key, 500)
		return
	}
	h.runs[i].Add(1)
	n := h.Total.Add(1)
	time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Location", fmt.Sprintf("/v1/payments/%s/%d", key, n))
	hd.Set("ETag", fmt.Sprintf(`"%d"`, n))
	hd.Set("Set-Cookie", fmt.Sprintf("run=%d", n)) // never stored
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"key":%q,"run":%d,"nonce":%d,"request":%q}`, key, n, rand.Uint64(), body)
}

// contentionReply is what the campaign keeps of one answer.
type contentionReply struct {
	Status                                     int
	replay, replayed, cookie                   string
	contentType, location, etag, requestID, cc string
	Body                                       string
}

func (r contentionReply) stored() [4]string {
	return [4]string{r.contentType, r.location, r.etag, r.requestID}
}

// runContention sends requests over keys from workers goroutines. With
// bodies > 1 each request carries one of that many bodies for its key,
// mostly the first: the copies with the body of the request that ran
// replay it, the others get 409 idempotency_conflict naming it.
func runContention(t *testing.T, bodies int, seed uint64) {
	requests, keys, workers := contentionSize()
	r := rand.New(rand.NewPCG(seed, seed))
	order := contentionOrder(r, requests, keys, workers)
	variant := make([]int, requests)
	for i := range variant {
		if bodies > 1 && r.IntN(3) == 0 {
			variant[i] = 1 + r.IntN(bodies-1)
		}
	}
	keyOf := func(k int) string { return fmt.Sprintf("pay-%05d", k) }
	bodyOf := func(k, v int) string { return fmt.Sprintf(`{"key":%d,"amount":%d}`, k, 100+v) }

	h := &contentionHandler{index: map[string]int{}, runs: make([]atomic.Int64, keys)}
	for k := range keys {
		h.index[keyOf(k)] = k
	}
	eng := idemtest.OpenDiskEngine(t, t.TempDir(), &engine.Options{Logger: idemtest.QuietLogger()}) // the defaults: Synced
	srv, m := newServer(t, eng, &idemhttp.Options{Logger: idemtest.QuietLogger(), MaxWaitersPerKey: -1}, h)
	srv.Config.ErrorLog = idemtest.QuietHTTPLog()
	tr := &http.Transport{MaxIdleConns: workers, MaxIdleConnsPerHost: workers, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	replies := make([]contentionReply, requests)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= requests {
					return
				}
				req, err := http.NewRequest("POST", srv.URL+"/v1/payments", strings.NewReader(bodyOf(order[i], variant[i])))
				if err != nil {
					t.Error(err)
					return
				}
				req.Header.Set("Idempotency-Key", keyOf(order[i]))
				req.Header.Set("Authorization", "Bearer sk_contention")
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("request %d: %v", i, err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Errorf("request %d: %v", i, err)
					return
				}
				hd := resp.Header
				replies[i] = contentionReply{
					Status: resp.StatusCode, replay: hd.Get("Idempotency-Replay"), replayed: hd.Get("Idempotent-Replayed"),
					cookie: hd.Get("Set-Cookie"), contentType: hd.Get("Content-Type"), location: hd.Get("Location"),
					etag: hd.Get("Etag"), requestID: hd.Get("X-Request-Id"), cc: hd.Get("Cache-Control"), Body: string(b),
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if t.Failed() {
		t.FailNow()
	}

	// The first answer of each key: the one request that ran.
	first := make([]int, keys)
	for k := range first {
		first[k] = -1
	}
	for i, rp := range replies {
		if rp.replay != "false" {
			continue
		}
		k := order[i]
		if first[k] >= 0 {
			t.Fatalf("key %s: requests %d and %d both ran", keyOf(k), first[k], i)
		}
		first[k] = i
	}
	for k, i := range first {
		if i < 0 {
			t.Fatalf("key %s: no request ran", keyOf(k))
		}
		if n := h.runs[k].Load(); n != 1 {
			t.Fatalf("key %s: the handler ran %d times", keyOf(k), n)
		}
		f := replies[i]
		if f.Status != 201 || !strings.Contains(f.Body, fmt.Sprintf(`"key":%q`, keyOf(k))) || f.cookie == "" ||
			!strings.HasPrefix(f.requestID, "req_") {
			t.Fatalf("key %s: first answer %d %q, Set-Cookie %q, X-Request-Id %q", keyOf(k), f.Status, f.Body, f.cookie, f.requestID)
		}
	}

	replays, conflicts := 0, 0
	for i, rp := range replies {
		k := order[i]
		fi := first[k]
		f := replies[fi]
		switch {
		case i == fi:
		case variant[i] == variant[fi]:
			replays++
			if rp.Status != f.Status || rp.Body != f.Body || rp.stored() != f.stored() {
				t.Fatalf("key %s: replay %d %q %q; want %d %q %q", keyOf(k), rp.Status, rp.Body, rp.stored(), f.Status, f.Body, f.stored())
			}
			if rp.replay != "true" || rp.replayed != "true" || rp.cookie != "" {
				t.Fatalf("key %s: replay with Idempotency-Replay %q, Idempotent-Replayed %q, Set-Cookie %q",
					keyOf(k), rp.replay, rp.replayed, rp.cookie)
			}
		default:
			conflicts++
			var p idemhttp.Problem
			if err := json.Unmarshal([]byte(rp.Body), &p); err != nil {
				t.Fatalf("key %s: different body answered %d %q", keyOf(k), rp.Status, rp.Body)
			}
			if rp.Status != 409 || p.Code != idemhttp.CodeConflict || p.Fields["conflicts_with"] != f.requestID ||
				rp.contentType != "application/problem+json" || rp.cc != "no-store" || rp.replay != "" {
				t.Fatalf("key %s: different body answered %d %+v (Idempotency-Replay %q); want 409 %s with conflicts_with %s",
					keyOf(k), rp.Status, p, rp.replay, idemhttp.CodeConflict, f.requestID)
			}
		}
	}

	runs := h.Total.Load()
	s, es := m.Stats(), eng.Stats()
	t.Logf("%d requests over %d keys at %d goroutines, bodies per key: %d, in %v (%.0f requests/s): %d handler runs, %d replays, %d conflicts; the engine waited %d times, %d fsyncs",
		requests, keys, workers, bodies, elapsed.Round(time.Millisecond), float64(requests)/elapsed.Seconds(),
		runs, replays, conflicts, es.Waits, es.Fsyncs)
	if runs != int64(keys) || replays+conflicts+keys != requests {
		t.Fatalf("%d runs, %d replays, %d conflicts for %d requests over %d keys", runs, replays, conflicts, requests, keys)
	}
	if s.Proceeded != uint64(keys) || s.Recorded != uint64(keys) || s.Replayed != uint64(replays) ||
		s.Conflicts != uint64(conflicts) || s.InProgress != 0 || s.Released != 0 || s.StoreErrors != 0 {
		t.Fatalf("middleware stats %+v disagree with the answers", s)
	}
	if bodies > 1 && conflicts == 0 {
		t.Fatal("no request had a different body")
	}
	if es.Waits == 0 {
		t.Fatal("no duplicate ever waited for a running request: the campaign did not contend")
	}
	if es.Claims != 0 {
		t.Fatalf("%d claims left in flight", es.Claims)
	}
}

// Every copy of a key has the same body: the handler runs exactly once a
// key, one answer a key says Idempotency-Replay: false, and every other is
// its replay: same status, body, and stored headers (Content-Type,
// Location, ETag, X-Request-Id), never Set-Cookie.
func TestContentionExactlyOnce(t *testing.T) { runContention(t, 1, 11) }

// A key's copies carry one of three bodies, two thirds the first: the
// handler still runs once a key, the copies with the body of the one that
// ran replay it, and the others get 409 idempotency_conflict whose
// fields.conflicts_with is the X-Request-Id of the one that ran.
func TestContentionMixedBodies(t *testing.T) { runContention(t, 3, 12) }
