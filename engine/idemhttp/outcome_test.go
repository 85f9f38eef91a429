package idemhttp_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
)

// OnOutcome is called once per selected request, with what happened to
// it; Stats.Endpoints counts the same by endpoint.
func TestOnOutcomeReportsEveryHandledRequest(t *testing.T) {
	var mu sync.Mutex
	var events []idemhttp.Event
	o := &idemhttp.Options{OnOutcome: func(_ context.Context, e idemhttp.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}}
	srv, m := newServer(t, idemtest.NewEngine(t, nil), o, idemtest.NewCounter())
	url := srv.URL + "/v1/orders"
	idemtest.Do(t, "POST", url, "", `{"a":1}`)                         // passed
	first := idemtest.Do(t, "POST", url, "k-1", `{"a":1}`)             // proceed
	idemtest.Do(t, "POST", url, "k-1", `{"a":1}`)                      // replay
	idemtest.Do(t, "POST", url, "k-1", `{"a":2}`)                      // conflict
	idemtest.Do(t, "POST", url, strings.Repeat("k", 300), `{"a":1}`)   // refused
	idemtest.Do(t, "GET", url, "k-2", ``)                              // not selected
	idemtest.Do(t, "POST", url, "k-3", `{"a":1}`, "Authorization", "") // refused: no scope

	// The hook runs once the response is written: the client may see the
	// response first.
	idemtest.WaitFor(t, "six events", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) >= 6
	})
	mu.Lock()
	defer mu.Unlock()
	// Sequential requests, but a hook may run after the next request's:
	// events are matched by outcome, not order.
	byOutcome := map[idemhttp.Outcome][]idemhttp.Event{}
	for _, e := range events {
		if e.Endpoint != "POST /v1/orders" || e.Duration <= 0 {
			t.Errorf("event %+v", e)
		}
		byOutcome[e.Outcome] = append(byOutcome[e.Outcome], e)
	}
	for o, want := range map[idemhttp.Outcome][]int{
		idemhttp.OutcomePassed: {201}, idemhttp.OutcomeProceed: {201}, idemhttp.OutcomeReplay: {201},
		idemhttp.OutcomeConflict: {409}, idemhttp.OutcomeRefused: {400, 400},
	} {
		got := byOutcome[o]
		if len(got) != len(want) {
			t.Fatalf("%s: %d events, want %d (all: %+v)", o, len(got), len(want), events)
		}
		for i := range got {
			if got[i].Status != want[i] {
				t.Errorf("%s: status %d, want %d", o, got[i].Status, want[i])
			}
		}
	}
	proceed, replay, conflict := byOutcome[idemhttp.OutcomeProceed][0], byOutcome[idemhttp.OutcomeReplay][0], byOutcome[idemhttp.OutcomeConflict][0]
	if !proceed.Recorded || proceed.Attempt != 1 || proceed.Key != "k-1" || proceed.RequestID != first.Header.Get("X-Request-Id") {
		t.Errorf("proceed: %+v (the response's request id %q)", proceed, first.Header.Get("X-Request-Id"))
	}
	if replay.OriginalRequestID != proceed.RequestID || conflict.OriginalRequestID != proceed.RequestID {
		t.Errorf("replay and conflict name %q and %q, want the first request %q", replay.OriginalRequestID, conflict.OriginalRequestID, proceed.RequestID)
	}
	got := m.Stats().Endpoints["POST /v1/orders"]
	for o, n := range map[idemhttp.Outcome]uint64{idemhttp.OutcomePassed: 1, idemhttp.OutcomeProceed: 1, idemhttp.OutcomeReplay: 1, idemhttp.OutcomeConflict: 1, idemhttp.OutcomeRefused: 2} {
		if got[o] != n {
			t.Errorf("Stats.Endpoints[POST /v1/orders][%s] = %d, want %d (all: %v)", o, got[o], n, got)
		}
	}
}

// A response that is not recorded (a 5xx the policy releases) is an
// event with Recorded false.
func TestOnOutcomeReportsReleasedResponses(t *testing.T) {
	events := make(chan idemhttp.Event, 1)
	o := &idemhttp.Options{OnOutcome: func(_ context.Context, e idemhttp.Event) { events <- e }}
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), o, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	idemtest.Do(t, "POST", srv.URL+"/v1/orders", "k-1", `{}`)
	got := <-events
	if got.Outcome != idemhttp.OutcomeProceed || got.Status != 502 || got.Recorded {
		t.Errorf("event %+v, want proceed 502 not recorded", got)
	}
}

// However many paths clients send, the endpoints counted one by one stay
// at MaxEndpoints; the rest are counted under "other".
func TestEndpointsAreBoundedByMaxEndpoints(t *testing.T) {
	m, err := idemhttp.New(idemtest.NewEngine(t, nil), &idemhttp.Options{MaxEndpoints: 50})
	if err != nil {
		t.Fatal(err)
	}
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	const paths = 10000
	for i := range paths {
		req := httptest.NewRequest("POST", fmt.Sprintf("/v1/items/%d", i), strings.NewReader("{}"))
		h.ServeHTTP(httptest.NewRecorder(), req) // no key: passed, counted by endpoint
	}
	eps := m.Stats().Endpoints
	if len(eps) != 51 {
		t.Errorf("%d endpoints counted, want 50 and %q", len(eps), idemhttp.OtherEndpoints)
	}
	var total uint64
	for _, c := range eps {
		total += c[idemhttp.OutcomePassed]
	}
	if total != paths || eps[idemhttp.OtherEndpoints][idemhttp.OutcomePassed] != paths-50 {
		t.Errorf("%d requests counted, %d under other; want %d and %d", total, eps[idemhttp.OtherEndpoints][idemhttp.OutcomePassed], paths, paths-50)
	}
}
