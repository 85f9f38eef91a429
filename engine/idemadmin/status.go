package idemadmin

import (
	"context"
	_ "embed"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
)

// Status is the status page: one server-rendered HTML page, with a
// little plain JavaScript and no build step, for the person who would
// rather look than read. It shows the outcome rates of the last fifteen
// minutes as small charts (sampled every ten seconds by Run), the
// latency, the claims in flight, the store's health and disk, the top
// endpoints by outcome, and a form that looks a key up through the admin
// API (and deletes it, after a confirmation).
type Status struct {
	store engine.Store
	m     *idemhttp.Middleware
	token string

	mu      sync.Mutex
	samples []sample // oldest first, at most maxSamples
}

type sample struct {
	At     time.Time                   `json:"at"`
	Counts map[idemhttp.Outcome]uint64 `json:"counts"`
}

const (
	sampleEvery = 10 * time.Second
	maxSamples  = 15 * 60 / 10
)

// NewStatus returns the status page of m over store (m may be nil: the
// store's figures only). token guards it as it guards the API (see
// Handler); a browser passes it once as ?token=, which the page keeps in
// a cookie.
func NewStatus(store engine.Store, m *idemhttp.Middleware, token string) *Status {
	s := &Status{store: store, m: m, token: token}
	s.sample(time.Now())
	return s
}

// Run samples the outcome counters every ten seconds until ctx ends.
func (s *Status) Run(ctx context.Context) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.sample(now)
		}
	}
}

func (s *Status) sample(now time.Time) {
	var st *idemhttp.Stats
	if s.m != nil {
		v := s.m.Stats()
		st = &v
	}
	counts := totals(st)
	s.mu.Lock()
	s.samples = append(s.samples, sample{At: now.UTC(), Counts: counts})
	if len(s.samples) > maxSamples {
		s.samples = slices.Delete(s.samples, 0, len(s.samples)-maxSamples)
	}
	s.mu.Unlock()
}

//go:embed status.html
var statusHTML string

var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"ms": func(d time.Duration) string { return d.String() },
}).Parse(statusHTML))

type endpointRow struct {
	Endpoint string
	Total    uint64
	Counts   map[idemhttp.Outcome]uint64
}

type page struct {
	Health    string
	Healthy   bool
	Stats     engine.Stats
	HTTP      *idemhttp.Stats
	Endpoints []endpointRow
	Outcomes  []idemhttp.Outcome
	Samples   []sample
	P50, P99  map[idemhttp.Outcome]time.Duration
	Generated time.Time
}

// ServeHTTP renders the page; with ?token= (the right one) it keeps the
// token in a cookie and sends the browser back to the page without it.
func (s *Status) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if t := r.URL.Query().Get("token"); t != "" && s.token != "" && tokenIs(t, s.token) {
		http.SetCookie(w, &http.Cookie{Name: TokenCookie, Value: t, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		q := r.URL.Query()
		q.Del("token")
		u := *r.URL
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.String(), http.StatusSeeOther)
		return
	}
	if !Authorized(r, s.token) {
		http.Error(w, "this page needs the admin token: open it once as /?token=<admin token>", http.StatusUnauthorized)
		return
	}
	p := page{Stats: s.store.Stats(), Outcomes: []idemhttp.Outcome{idemhttp.OutcomeProceed, idemhttp.OutcomeReplay,
		idemhttp.OutcomeConflict, idemhttp.OutcomeInProgress, idemhttp.OutcomeError, idemhttp.OutcomeRefused, idemhttp.OutcomePassed},
		Generated: time.Now().UTC()}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Health(ctx); err != nil {
		p.Health = err.Error()
	} else {
		p.Health, p.Healthy = "ok", true
	}
	if s.m != nil {
		st := s.m.Stats()
		p.HTTP = &st
		for ep, counts := range st.Endpoints {
			row := endpointRow{Endpoint: ep, Counts: counts}
			for _, n := range counts {
				row.Total += n
			}
			p.Endpoints = append(p.Endpoints, row)
		}
		slices.SortFunc(p.Endpoints, func(a, b endpointRow) int {
			if a.Total != b.Total {
				return int(b.Total) - int(a.Total)
			}
			return strings.Compare(a.Endpoint, b.Endpoint)
		})
		p.Endpoints = p.Endpoints[:min(len(p.Endpoints), 20)]
		p.P50, p.P99 = map[idemhttp.Outcome]time.Duration{}, map[idemhttp.Outcome]time.Duration{}
		for o, h := range st.Latency {
			p.P50[o], p.P99[o] = quantile(h, 0.5), quantile(h, 0.99)
		}
	}
	s.mu.Lock()
	p.Samples = slices.Clone(s.samples)
	s.mu.Unlock()
	p.Samples = append(p.Samples, sample{At: p.Generated, Counts: totals(p.HTTP)})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
	_ = statusTemplate.Execute(w, p)
}

func totals(st *idemhttp.Stats) map[idemhttp.Outcome]uint64 {
	out := map[idemhttp.Outcome]uint64{}
	if st == nil {
		return out
	}
	for _, byOutcome := range st.Endpoints {
		for o, n := range byOutcome {
			out[o] += n
		}
	}
	return out
}

// quantile is the upper bound of the bucket holding quantile q of h (0
// if h is empty; the last bound for the +Inf bucket).
func quantile(h idemhttp.Histogram, q float64) time.Duration {
	var total uint64
	for _, c := range h.Counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	want := uint64(q*float64(total) + 0.5)
	var cum uint64
	for i, c := range h.Counts {
		cum += c
		if cum >= want && cum > 0 {
			if i < len(h.Bounds) {
				return h.Bounds[i]
			}
			return h.Bounds[len(h.Bounds)-1]
		}
	}
	return 0
}
