package prometheus_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/internal/testutil"
	sfprom "github.com/sendfile2/sendfile2/prometheus"
)

// metric returns the value of the series name{label=value} in reg, and
// whether it exists.
func metric(t *testing.T, reg *prometheus.Registry, name, label, value string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && !hasLabel(m, label, value) {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// TestCollector: the Sender's counters appear at a scrape, the series of
// its method and of every bypass reason from the start.
func TestCollector(t *testing.T) {
	s, err := sendfile2.NewSender(sendfile2.Config{Method: sendfile2.Copy})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(sfprom.NewCollector(s))
	if v, ok := metric(t, reg, "sendfile2_sent_bytes_total", "method", "copy"); !ok || v != 0 {
		t.Fatalf("sent bytes before a send: %v, %v; want a series at 0", v, ok)
	}
	for _, r := range sendfile2.Bypasses() {
		if _, ok := metric(t, reg, "sendfile2_bypassed_total", "reason", string(r)); !ok {
			t.Errorf("no sendfile2_bypassed_total{reason=%q}", r)
		}
	}
	for _, name := range []string{"sendfile2_fallbacks_total", "sendfile2_pool_short_total", "sendfile2_demotions_total"} {
		if v, ok := metric(t, reg, name, "", ""); !ok || v != 0 {
			t.Errorf("%s before a send: %v, %v; want a series at 0", name, v, ok)
		}
	}
	if v, ok := metric(t, reg, "sendfile2_sender_info", "method", "copy"); !ok || v != 1 {
		t.Fatalf("sender_info{method=copy} = %v, %v", v, ok)
	}

	const size = 100 << 10
	f := tempFile(t, size)
	a, b := tcpPair(t)
	go io.Copy(io.Discard, b)
	if _, err := s.Send(context.Background(), a, f, 0, -1); err != nil {
		t.Fatal(err)
	}
	if v, _ := metric(t, reg, "sendfile2_sent_bytes_total", "method", "copy"); v != size {
		t.Fatalf("sent bytes = %v, want %d", v, size)
	}
	if v, _ := metric(t, reg, "sendfile2_sends_total", "method", "copy"); v != 1 {
		t.Fatalf("sends = %v, want 1", v)
	}
}

// TestLatencyObserver: each zero-copy notification is observed.
func TestLatencyObserver(t *testing.T) {
	obs := sfprom.NewLatencyObserver()
	s, err := sendfile2.NewSender(sendfile2.Config{Method: sendfile2.URing, Observer: obs})
	if errors.Is(err, sendfile2.ErrNotSupported) {
		t.Skipf("no io_uring zero-copy send here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(obs)
	f := tempFile(t, 1<<20)
	a, b := tcpPair(t)
	go io.Copy(io.Discard, b)
	if _, err := s.Send(context.Background(), a, f, 0, -1); err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, copied := range []string{"true", "false"} {
		v, _ := metric(t, reg, "sendfile2_notification_latency_seconds", "copied", copied)
		n += v
	}
	if n == 0 {
		t.Fatal("no notification observed")
	}
}

func tempFile(t *testing.T, n int) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

func TestMain(m *testing.M) { testutil.Main(m) }
