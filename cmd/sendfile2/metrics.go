package main

import (
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
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
	duration *prometheus.HistogramVec
	conns    prometheus.Gauge
	// Connections ended by a limit (timeouts.go), and responses cut short.
	limitCloses *prometheus.CounterVec
	short       prometheus.Counter
	// Conns the lean path handed to net/http (lean.go).
	handoffs prometheus.Counter
	// The series of request, by status-100 and method (GET, HEAD, PUT,
	// other), as they are first used.
	series [500][4]atomic.Pointer[requestSeries]
}

func newMetrics() *metrics {
	m := &metrics{
		reg:     prometheus.NewRegistry(),
		latency: sfprom.NewLatencyObserver(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sendfile2_http_requests_total",
			Help: "HTTP requests answered, by status code.",
		}, []string{"code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sendfile2_http_request_duration_seconds",
			Help: "Time from a request's header to the end of its response (or of its upload), by status class (2xx...) and method (GET, HEAD, PUT, other).",
			// 1 ms (a small file from the page cache) to 10 min (a large
			// file to a slow client, or an upload).
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"code", "method"}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sendfile2_http_connections",
			Help: "HTTP connections open.",
		}),
		limitCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sendfile2_http_limit_closes_total",
			Help: "HTTP connections that serve closed because a limit was reached, by limit: body_timeout (no byte of a request body for --body-timeout), send_timeout (the peer took no byte of a response for --send-timeout), max_conns (an idle keep-alive connection closed to make room at --max-conns).",
		}, []string{"limit"}),
		short: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sendfile2_http_short_responses_total",
			Help: "Responses whose body ended before its Content-Length: a file truncated while it was sent, a send that failed or was cut.",
		}),
		handoffs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sendfile2_http_lean_handoffs_total",
			Help: "Connections that the lean path (--lean) handed to net/http for the rest of their life, at the first request it does not answer itself.",
		}),
	}
	for _, l := range []string{limitBody, limitSend, limitMaxConns} {
		m.limitCloses.WithLabelValues(l) // exported at zero from the start
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.latency, m.requests, m.duration, m.conns, m.limitCloses, m.short, m.handoffs,
	)
	return m
}

// watchCache exports the file cache's lookups, when there is a cache.
func (m *metrics) watchCache(c *fileCache) {
	if c == nil {
		return
	}
	for _, r := range []struct {
		result string
		n      *atomic.Uint64
	}{{"hit", &c.hits}, {"miss", &c.misses}} {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "sendfile2_http_open_file_lookups_total",
			Help:        "Looks for a regular file by name (a request's, or its precompressed forms'), by result: hit (the file kept open for the name was still what the name leads to, and served) or miss (opened and checked).",
			ConstLabels: prometheus.Labels{"result": r.result},
		}, func() float64 { return float64(r.n.Load()) }))
	}
}

// request counts a request answered with status after d.
func (m *metrics) request(method string, status int, d time.Duration) {
	mi := 3 // a client picks the method: keep the series few
	switch method {
	case http.MethodGet:
		mi = 0
	case http.MethodHead:
		mi = 1
	case http.MethodPut:
		mi = 2
	}
	var s *requestSeries
	if status >= 100 && status < 600 {
		s = m.series[status-100][mi].Load()
	}
	if s == nil {
		s = &requestSeries{
			requests: m.requests.WithLabelValues(strconv.Itoa(status)),
			duration: m.duration.WithLabelValues(strconv.Itoa(status/100)+"xx", seriesMethods[mi]),
		}
		if status >= 100 && status < 600 {
			m.series[status-100][mi].Store(s)
		}
	}
	s.requests.Inc()
	s.duration.Observe(d.Seconds())
}

// requestSeries are the series that request adds a request to, by status
// and method: looked up once, not at every request.
type requestSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// seriesMethods are the method labels of the duration histogram.
var seriesMethods = [4]string{http.MethodGet, http.MethodHead, http.MethodPut, "other"}

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
