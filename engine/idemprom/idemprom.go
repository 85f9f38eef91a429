// Package idemprom publishes idemkv's figures as Prometheus metrics: a
// prometheus.Collector that an application registers in its own registry,
// beside its own metrics and the Go runtime's.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(collectors.NewGoCollector(), idemprom.NewCollector(idem, store))
//	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// The metrics are those idemhttp.Metrics lists (the same names as
// idemhttp.MetricsHandler's text): the middleware's outcomes by endpoint
// and outcome (endpoints bounded by idemhttp.Options.MaxEndpoints), its
// latency histogram by outcome, its counters, and the store's figures
// (claims in flight, cache hits, fsyncs, disk bytes, errors; for Redis,
// what it keeps). Each scrape reads the counters once; nothing is counted
// twice, and requests pay nothing for the collector.
//
// The package uses client_golang, which idemkv's module graph holds
// already (through Pebble); a program that does not import it does not
// build it.
package idemprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
)

// Collector collects a middleware's and a store's metrics.
type Collector struct {
	m     *idemhttp.Middleware
	store engine.Store
	descs map[string]*prometheus.Desc
}

// NewCollector returns a Collector of m's metrics and its store's. m may
// be nil (a store without the HTTP middleware: the RPC adapters, a job
// runner); store may be nil (the middleware's alone).
func NewCollector(m *idemhttp.Middleware, store engine.Store) *Collector {
	c := &Collector{m: m, store: store, descs: make(map[string]*prometheus.Desc)}
	for _, mt := range c.metrics() {
		if _, ok := c.descs[mt.Name]; ok {
			continue
		}
		var labels []string
		for _, l := range mt.Labels {
			labels = append(labels, l[0])
		}
		c.descs[mt.Name] = prometheus.NewDesc(mt.Name, mt.Help, labels, nil)
	}
	// The endpoint counter has no series before the first request: its
	// descriptor is known all the same.
	if m != nil {
		c.descs["idemkv_http_outcomes_total"] = prometheus.NewDesc("idemkv_http_outcomes_total",
			"Requests by endpoint (at most MaxEndpoints, then \"other\") and outcome.", []string{"endpoint", "outcome"}, nil)
	}
	return c
}

func (c *Collector) metrics() []idemhttp.Metric {
	var ms []idemhttp.Metric
	if c.m != nil {
		ms = idemhttp.HTTPMetrics(c.m.Stats())
	}
	if c.store != nil {
		ms = append(ms, idemhttp.StoreMetrics(c.store.Stats())...)
	}
	return ms
}

// Describe sends the descriptors of every metric the Collector collects.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect sends the current value of every metric.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, mt := range c.metrics() {
		d := c.descs[mt.Name]
		if d == nil {
			continue
		}
		values := make([]string, len(mt.Labels))
		for i, l := range mt.Labels {
			values[i] = l[1]
		}
		var m prometheus.Metric
		var err error
		switch mt.Kind {
		case idemhttp.Counter:
			m, err = prometheus.NewConstMetric(d, prometheus.CounterValue, mt.Value, values...)
		case idemhttp.Gauge:
			m, err = prometheus.NewConstMetric(d, prometheus.GaugeValue, mt.Value, values...)
		case idemhttp.HistogramKind:
			h := mt.Histogram
			buckets := make(map[float64]uint64, len(h.Bounds))
			var cum uint64
			for i, n := range h.Counts {
				cum += n
				if i < len(h.Bounds) {
					buckets[h.Bounds[i].Seconds()] = cum
				}
			}
			m, err = prometheus.NewConstHistogram(d, cum, h.Sum.Seconds(), buckets, values...)
		}
		if err == nil {
			ch <- m
		}
	}
}
