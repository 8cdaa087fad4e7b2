package main

import (
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sendfile2/sendfile2"
	sfprom "github.com/sendfile2/sendfile2/prometheus"
)

// metrics are what `serve --metrics-addr` exports, in a registry of their
// own (not the process-wide default, so that tests can run several servers).
type metrics struct {
	reg      *prometheus.Registry
	latency  *sfprom.LatencyObserver
	requests *prometheus.CounterVec
	conns    prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg:     prometheus.NewRegistry(),
		latency: sfprom.NewLatencyObserver(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sendfile2_http_requests_total",
			Help: "HTTP requests answered, by status code.",
		}, []string{"code"}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sendfile2_http_connections",
			Help: "HTTP connections open.",
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.latency, m.requests, m.conns,
	)
	return m
}

// Notified implements sendfile2.Observer.
func (m *metrics) Notified(method sendfile2.Method, latency time.Duration, copied bool) {
	m.latency.Notified(method, latency, copied)
}

// watch exports the counters of s.
func (m *metrics) watch(s *sendfile2.Sender) { m.reg.MustRegister(sfprom.NewCollector(s)) }

// connState is an http.Server's ConnState hook.
func (m *metrics) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		m.conns.Inc()
	case http.StateClosed, http.StateHijacked:
		m.conns.Dec()
	}
}

func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	return mux
}
