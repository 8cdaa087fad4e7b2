package main

import (
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sendfile2/sendfile2"
)

// metrics are what `serve --metrics-addr` exports, in a registry of their
// own (not the process-wide default, so that tests can run several servers).
type metrics struct {
	reg      *prometheus.Registry
	latency  *prometheus.HistogramVec
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	conns    prometheus.Gauge
	// Connections ended by a limit (timeouts.go), and responses cut short.
	limitCloses *prometheus.CounterVec
	short       prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sendfile2_notification_latency_seconds",
			Help: "Time from a zero-copy send's submission to its notification (the kernel letting go of the data), by method and whether the kernel copied.",
			// 5 us to 1 s: loopback notifications come after ~15 us with an
			// open window, a slow peer's only after it has read.
			Buckets: prometheus.ExponentialBucketsRange(5e-6, 1, 16),
		}, []string{"method", "copied"}),
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
	}
	for _, l := range []string{limitBody, limitSend, limitMaxConns} {
		m.limitCloses.WithLabelValues(l) // exported at zero from the start
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.latency, m.requests, m.duration, m.conns, m.limitCloses, m.short,
	)
	return m
}

// request counts a request answered with status after d.
func (m *metrics) request(method string, status int, d time.Duration) {
	m.requests.WithLabelValues(strconv.Itoa(status)).Inc()
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut:
	default:
		method = "other" // a client picks the method: keep the series few
	}
	m.duration.WithLabelValues(strconv.Itoa(status/100)+"xx", method).Observe(d.Seconds())
}

// Notified implements sendfile2.Observer.
func (m *metrics) Notified(method sendfile2.Method, latency time.Duration, copied bool) {
	m.latency.WithLabelValues(string(method), strconv.FormatBool(copied)).Observe(latency.Seconds())
}

// watch exports the counters of s.
func (m *metrics) watch(s *sendfile2.Sender) { m.reg.MustRegister(senderCollector{s}) }

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

var (
	descSent = prometheus.NewDesc("sendfile2_sent_bytes_total",
		"Bytes sent by the Sender, by method.", []string{"method"}, nil)
	descCopied = prometheus.NewDesc("sendfile2_copied_bytes_total",
		"Bytes of zero-copy sends that the kernel reported it copied (always so on loopback and veth), by method.", []string{"method"}, nil)
	descZeroCopy = prometheus.NewDesc("sendfile2_zerocopy_bytes_total",
		"Bytes of zero-copy sends that the kernel sent without copying, by method.", []string{"method"}, nil)
	descSends = prometheus.NewDesc("sendfile2_sends_total",
		"Sends completed, with or without error, by method.", []string{"method"}, nil)
	descErrors = prometheus.NewDesc("sendfile2_send_errors_total",
		"Sends that returned an error, by method.", []string{"method"}, nil)
	descReceived = prometheus.NewDesc("sendfile2_received_bytes_total",
		"Bytes that the Sender's Receive wrote to files (PUT bodies, but for the start that net/http read with the header), by method.", []string{"method"}, nil)
	descReceives = prometheus.NewDesc("sendfile2_receives_total",
		"Receives completed, with or without error, by method.", []string{"method"}, nil)
	descReceiveErrors = prometheus.NewDesc("sendfile2_receive_errors_total",
		"Receives that returned an error (a body cut short, a full disk, a shutdown), by method.", []string{"method"}, nil)
	descInFlight = prometheus.NewDesc("sendfile2_sends_in_flight",
		"Sends in progress.", nil, nil)
	descFallbacks = prometheus.NewDesc("sendfile2_fallbacks_total",
		"Times the Sender took a copying path where its method could not apply (non-TCP socket, RWF_DONTCACHE refused).", nil, nil)
	descSwitches = prometheus.NewDesc("sendfile2_adaptive_switches_total",
		"Times auto switched a route (local and peer address) whose zero-copy sends kept coming back copied to copy, for a while.", nil, nil)
	descCopyingRoutes = prometheus.NewDesc("sendfile2_adaptive_copying_routes",
		"Routes that auto sends to with copy now.", nil, nil)
	descAdapted = prometheus.NewDesc("sendfile2_adaptive_copy_sends_total",
		"Sends that auto made with copy instead of zero-copy, by reason: copied_route (the kernel copies on that route anyway), small, or probing (the route's first zero-copy sends had not reported yet).", []string{"reason"}, nil)
	descInfo = prometheus.NewDesc("sendfile2_sender_info",
		"Always 1; method is the one the Sender resolved to.", []string{"method"}, nil)
)

// senderCollector reads a Sender's Stats on each scrape. Stats only count
// up, so the counters it emits only grow. A send is counted under the method
// that ran it: auto's Sender reports its resolved method in
// sendfile2_sender_info, and may send some bodies with copy (see
// sendfile2_adaptive_copy_sends_total). A receive is counted under the
// method that ran it too: uring-mmap, msgzc and sendfile receive with copy.
type senderCollector struct{ s *sendfile2.Sender }

func (c senderCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSent, descCopied, descZeroCopy, descSends, descErrors, descReceived, descReceives, descReceiveErrors, descInFlight, descFallbacks, descSwitches, descCopyingRoutes, descAdapted, descInfo} {
		ch <- d
	}
}

func (c senderCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, string(st.Method))
	ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(st.InFlight))
	ch <- prometheus.MustNewConstMetric(descFallbacks, prometheus.CounterValue, float64(st.Fallbacks))
	ch <- prometheus.MustNewConstMetric(descSwitches, prometheus.CounterValue, float64(st.Adaptive.Switches))
	ch <- prometheus.MustNewConstMetric(descCopyingRoutes, prometheus.GaugeValue, float64(st.Adaptive.CopyingRoutes))
	ch <- prometheus.MustNewConstMetric(descAdapted, prometheus.CounterValue, float64(st.Adaptive.CopiedRoute), "copied_route")
	ch <- prometheus.MustNewConstMetric(descAdapted, prometheus.CounterValue, float64(st.Adaptive.Small), "small")
	ch <- prometheus.MustNewConstMetric(descAdapted, prometheus.CounterValue, float64(st.Adaptive.Probing), "probing")
	methods := st.Methods
	if _, ok := methods[st.Method]; !ok && st.Method != "" {
		// Export the Sender's own method from the start, at zero, so that
		// its series exist before the first send.
		methods = map[sendfile2.Method]sendfile2.MethodStats{st.Method: {}}
		for k, v := range st.Methods {
			methods[k] = v
		}
	}
	for method, ms := range methods {
		l := string(method)
		ch <- prometheus.MustNewConstMetric(descSent, prometheus.CounterValue, float64(ms.Bytes), l)
		ch <- prometheus.MustNewConstMetric(descCopied, prometheus.CounterValue, float64(ms.CopiedBytes), l)
		ch <- prometheus.MustNewConstMetric(descZeroCopy, prometheus.CounterValue, float64(ms.ZeroCopyBytes), l)
		ch <- prometheus.MustNewConstMetric(descSends, prometheus.CounterValue, float64(ms.Sends), l)
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(ms.Errors), l)
		ch <- prometheus.MustNewConstMetric(descReceived, prometheus.CounterValue, float64(ms.Received), l)
		ch <- prometheus.MustNewConstMetric(descReceives, prometheus.CounterValue, float64(ms.Receives), l)
		ch <- prometheus.MustNewConstMetric(descReceiveErrors, prometheus.CounterValue, float64(ms.ReceiveErrors), l)
	}
}
