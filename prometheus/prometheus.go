// Package prometheus exports the counters of a sendfile2.Sender as
// Prometheus metrics, and the latency of its zero-copy notifications as a
// histogram. It is a module of its own, so that the sendfile2 library does
// not depend on the Prometheus client; `sendfile2 serve --metrics-addr`
// uses it.
//
//	obs := prometheus.NewLatencyObserver()
//	s, err := sendfile2.NewSender(sendfile2.Config{Observer: obs})
//	...
//	reg.MustRegister(obs, prometheus.NewCollector(s))
package prometheus

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sendfile2/sendfile2"
)

var (
	descSent = prometheus.NewDesc("sendfile2_sent_bytes_total",
		"Bytes sent by the Sender, by method.", []string{"method"}, nil)
	descCopied = prometheus.NewDesc("sendfile2_copied_bytes_total",
		"Bytes of zero-copy sends that the kernel reported it copied (always so on loopback and veth), by method.", []string{"method"}, nil)
	descZeroCopy = prometheus.NewDesc("sendfile2_zerocopy_bytes_total",
		"Bytes of zero-copy sends that the kernel sent without copying, by method.", []string{"method"}, nil)
	descSends = prometheus.NewDesc("sendfile2_sends_total",
		"Sends completed, with or without error, by method (an auto send that probed its route with its first MiB counts under the method of its rest).", []string{"method"}, nil)
	descErrors = prometheus.NewDesc("sendfile2_send_errors_total",
		"Sends that returned an error, by method.", []string{"method"}, nil)
	descReceived = prometheus.NewDesc("sendfile2_received_bytes_total",
		"Bytes that the Sender's Receive wrote to files, by method.", []string{"method"}, nil)
	descReceives = prometheus.NewDesc("sendfile2_receives_total",
		"Receives completed, with or without error, by method.", []string{"method"}, nil)
	descReceiveErrors = prometheus.NewDesc("sendfile2_receive_errors_total",
		"Receives that returned an error (a body cut short, a full disk, a shutdown), by method.", []string{"method"}, nil)
	descInFlight = prometheus.NewDesc("sendfile2_sends_in_flight",
		"Sends in progress.", nil, nil)
	descFallbacks = prometheus.NewDesc("sendfile2_fallbacks_total",
		"Times the Sender took a copying path where its method could not apply (non-TCP socket, RWF_DONTCACHE refused, the registered buffers all lent).", nil, nil)
	descPoolShort = prometheus.NewDesc("sendfile2_pool_short_total",
		"Parts of uring sends and receives that found every registered buffer lent (and of uring-mmap sends that found the ring full), copied instead of waiting.", nil, nil)
	descDemotions = prometheus.NewDesc("sendfile2_demotions_total",
		"Times auto's method failed at run time with EPERM or ENOSYS and was replaced by the next one.", nil, nil)
	descBypassed = prometheus.NewDesc("sendfile2_bypassed_total",
		"HTTP file bodies that went around the Sender, copied through a buffer, by reason (see sendfile2.Bypass).", []string{"reason"}, nil)
	descSwitches = prometheus.NewDesc("sendfile2_adaptive_switches_total",
		"Times auto switched a route (local and peer address) whose zero-copy sends kept coming back copied to copy, for a while.", nil, nil)
	descCopyingRoutes = prometheus.NewDesc("sendfile2_adaptive_copying_routes",
		"Routes that auto sends to with copy now.", nil, nil)
	descAdapted = prometheus.NewDesc("sendfile2_adaptive_copy_sends_total",
		"Sends (or rests of sends after a probe of their first MiB) that auto made with copy instead of zero-copy, by reason: copied_route (the kernel copies on that route anyway), small, or probing (the route's first zero-copy sends had not reported yet).", []string{"reason"}, nil)
	descInfo = prometheus.NewDesc("sendfile2_sender_info",
		"Always 1; method is the one the Sender resolved to.", []string{"method"}, nil)
)

// NewCollector returns a collector that reads s's Stats at each scrape.
// Stats only count up, so the counters it exports only grow. A send is
// counted under the method that ran it: a Sender configured with auto
// reports its resolved method in sendfile2_sender_info, and may send some
// bodies with copy (see sendfile2_adaptive_copy_sends_total). A receive is
// counted under the method that ran it too: uring-mmap, msgzc and sendfile
// receive with copy. The series of the Sender's own method and of every
// bypass reason exist from the start, at zero.
func NewCollector(s *sendfile2.Sender) prometheus.Collector { return collector{s} }

type collector struct{ s *sendfile2.Sender }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSent, descCopied, descZeroCopy, descSends, descErrors, descReceived, descReceives, descReceiveErrors, descInFlight, descFallbacks, descPoolShort, descDemotions, descBypassed, descSwitches, descCopyingRoutes, descAdapted, descInfo} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, string(st.Method))
	ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(st.InFlight))
	ch <- prometheus.MustNewConstMetric(descFallbacks, prometheus.CounterValue, float64(st.Fallbacks))
	ch <- prometheus.MustNewConstMetric(descPoolShort, prometheus.CounterValue, float64(st.PoolShort))
	ch <- prometheus.MustNewConstMetric(descDemotions, prometheus.CounterValue, float64(st.Demotions))
	ch <- prometheus.MustNewConstMetric(descSwitches, prometheus.CounterValue, float64(st.Adaptive.Switches))
	ch <- prometheus.MustNewConstMetric(descCopyingRoutes, prometheus.GaugeValue, float64(st.Adaptive.CopyingRoutes))
	ch <- prometheus.MustNewConstMetric(descAdapted, prometheus.CounterValue, float64(st.Adaptive.CopiedRoute), "copied_route")
	ch <- prometheus.MustNewConstMetric(descAdapted, prometheus.CounterValue, float64(st.Adaptive.Small), "small")
	ch <- prometheus.MustNewConstMetric(descAdapted, prometheus.CounterValue, float64(st.Adaptive.Probing), "probing")
	for _, r := range sendfile2.Bypasses() {
		ch <- prometheus.MustNewConstMetric(descBypassed, prometheus.CounterValue, float64(st.Bypassed[r]), string(r))
	}
	methods := st.Methods
	if _, ok := methods[st.Method]; !ok && st.Method != "" {
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

// LatencyObserver is a sendfile2.Observer that records the time from each
// zero-copy send's submission to its notification (the kernel letting go of
// the data) in the histogram sendfile2_notification_latency_seconds, by
// method and by whether the kernel copied. Set it as Config.Observer and
// register it.
type LatencyObserver struct{ h *prometheus.HistogramVec }

// NewLatencyObserver returns a LatencyObserver with buckets from 5 µs to 1 s.
func NewLatencyObserver() *LatencyObserver {
	return &LatencyObserver{h: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "sendfile2_notification_latency_seconds",
		Help: "Time from a zero-copy send's submission to its notification (the kernel letting go of the data), by method and whether the kernel copied.",
		// 5 us to 1 s: loopback notifications come after ~15 us with an
		// open window, a slow peer's only after it has read.
		Buckets: prometheus.ExponentialBucketsRange(5e-6, 1, 16),
	}, []string{"method", "copied"})}
}

// Notified implements sendfile2.Observer.
func (o *LatencyObserver) Notified(m sendfile2.Method, latency time.Duration, copied bool) {
	o.h.WithLabelValues(string(m), strconv.FormatBool(copied)).Observe(latency.Seconds())
}

// Describe implements prometheus.Collector.
func (o *LatencyObserver) Describe(ch chan<- *prometheus.Desc) { o.h.Describe(ch) }

// Collect implements prometheus.Collector.
func (o *LatencyObserver) Collect(ch chan<- prometheus.Metric) { o.h.Collect(ch) }
