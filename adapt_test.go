package sendfile2_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/sendfile2/sendfile2"
)

// TestAdaptive: on loopback the kernel copies every zero-copy send, and the
// notifications say so. An Auto Sender learns it and sends on that route with
// Copy, and says so in Stats; a Sender with an explicit method does not adapt.
func TestAdaptive(t *testing.T) {
	for _, m := range []sendfile2.Method{sendfile2.Auto, sendfile2.URing} {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			if s.Method() != sendfile2.URing {
				t.Skipf("auto resolved to %s", s.Method())
			}
			f, data := tempFile(t, 1<<20)
			for range 6 {
				sendOver(t, data, func(a *net.TCPConn) (int64, error) {
					return s.Send(context.Background(), a, f, 0, int64(len(data)))
				})
			}
			st := s.Stats()
			t.Logf("%+v", st)
			if m != sendfile2.Auto {
				if st.Adaptive != (sendfile2.AdaptiveStats{}) || st.Methods[sendfile2.Copy].Bytes != 0 {
					t.Fatalf("an explicit method adapted: %+v", st)
				}
				return
			}
			if st.Adaptive.Switches != 1 || st.Adaptive.CopyingRoutes != 1 || st.Adaptive.CopiedRoute != 3 {
				t.Errorf("adaptive stats = %+v, want 1 switch, 1 copying route, 3 sends copied by route", st.Adaptive)
			}
			if u, c := st.Methods[sendfile2.URing], st.Methods[sendfile2.Copy]; u.Sends != 3 || c.Sends != 3 || u.CopiedBytes != 3<<20 {
				t.Errorf("uring %+v, copy %+v: want 3 sends each, uring's all reported copied", u, c)
			}

			// A small send copies from the start.
			a, b := tcpPair(t)
			got := receive(b)
			if _, err := s.Send(context.Background(), a, f, 0, 4096); err != nil {
				t.Fatal(err)
			}
			a.Close()
			<-got
			if s.Stats().Adaptive.Small != 1 {
				t.Errorf("small send not counted: %+v", s.Stats().Adaptive)
			}
		})
	}
}

// newAutoURing is an Auto Sender that resolved to URing, whose routes the
// tests below watch adapt; it skips t where Auto resolved to another method.
func newAutoURing(t *testing.T) *sendfile2.Sender {
	t.Helper()
	s := newSender(t, sendfile2.Config{Method: sendfile2.Auto})
	if s.Method() != sendfile2.URing {
		t.Skipf("auto resolved to %s", s.Method())
	}
	return s
}

// TestAdaptiveProbes: many sends that start together on a route that Auto
// knows nothing about yet do not all go out zero-copy: three do, and their
// notifications decide the route; the others copy meanwhile.
func TestAdaptiveProbes(t *testing.T) {
	s := newAutoURing(t)
	const conns = 16
	f, data := tempFile(t, 1<<20)
	var wg sync.WaitGroup
	start := make(chan struct{}) // the peers read once every send is in flight
	for range conns {
		a, b := smallWindowPair(t)
		if err := a.SetWriteBuffer(64 << 10); err != nil { // copies wait for the peer too
			t.Fatal(err)
		}
		wg.Go(func() {
			got := make(chan []byte, 1)
			go func() {
				<-start
				bs, _ := io.ReadAll(b)
				got <- bs
			}()
			n, err := s.Send(context.Background(), a, f, 0, int64(len(data)))
			a.Close()
			if err != nil || n != int64(len(data)) {
				t.Errorf("Send = %d, %v", n, err)
			}
			if !bytes.Equal(<-got, data) {
				t.Error("wrong bytes")
			}
		})
	}
	for deadline := time.Now().Add(20 * time.Second); s.Stats().InFlight < conns; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sends in flight, want %d", s.Stats().InFlight, conns)
		}
	}
	close(start)
	wg.Wait()
	st := s.Stats()
	t.Logf("%+v", st)
	if u := st.Methods[sendfile2.URing]; u.Sends != 3 || u.CopiedBytes != 3<<20 {
		t.Errorf("uring: %+v; want 3 sends, all reported copied", u)
	}
	if c := st.Methods[sendfile2.Copy]; c.Sends != conns-3 || st.Adaptive.Probing != conns-3 {
		t.Errorf("copy: %+v, adaptive %+v; want %d sends, each while the route was probed", c, st.Adaptive, conns-3)
	}
	if st.Adaptive.Switches != 1 || st.Adaptive.CopyingRoutes != 1 {
		t.Errorf("adaptive stats = %+v, want the route switched to copy once", st.Adaptive)
	}
}

// TestAdaptiveProbePrefix: a large send on a route Auto knows nothing about
// probes it with its first MiB only, three times in a row on loopback, where
// each comes back copied, and sends the rest with Copy: the send is not paid
// for in full zero-copy. The bytes count under the method that sent them.
func TestAdaptiveProbePrefix(t *testing.T) {
	const size = 16 << 20
	probes := int64(3 * sendfile2.ProbeSend)
	for _, tc := range []struct {
		name string
		send func(s *sendfile2.Sender, a *net.TCPConn, f *os.File, data []byte) (int64, error)
	}{
		{"file", func(s *sendfile2.Sender, a *net.TCPConn, f *os.File, data []byte) (int64, error) {
			return s.Send(context.Background(), a, f, 0, int64(len(data)))
		}},
		// Memory: the probes split the header.
		{"header", func(s *sendfile2.Sender, a *net.TCPConn, f *os.File, data []byte) (int64, error) {
			empty, _ := tempFile(t, 0)
			return s.SendWithHeader(context.Background(), a, data, empty, 0, 0)
		}},
		// A header of half a probe, then the file.
		{"header and file", func(s *sendfile2.Sender, a *net.TCPConn, f *os.File, data []byte) (int64, error) {
			h := sendfile2.ProbeSend / 2
			return s.SendWithHeader(context.Background(), a, data[:h], f, int64(h), int64(len(data)-h))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newAutoURing(t)
			f, data := tempFile(t, size)
			sendOver(t, data, func(a *net.TCPConn) (int64, error) { return tc.send(s, a, f, data) })
			st := s.Stats()
			t.Logf("%+v", st)
			u, c := st.Methods[sendfile2.URing], st.Methods[sendfile2.Copy]
			if u.Bytes != probes || u.CopiedBytes != probes || u.Sends != 0 {
				t.Errorf("uring %+v: want %d bytes, all reported copied, in no send of its own", u, probes)
			}
			if c.Bytes != size-probes || c.Sends != 1 {
				t.Errorf("copy %+v: want %d bytes in 1 send", c, size-probes)
			}
			if st.Adaptive.Switches != 1 || st.Adaptive.CopyingRoutes != 1 {
				t.Errorf("adaptive stats = %+v, want the route switched to copy once", st.Adaptive)
			}
		})
	}
}

// TestAdaptiveProbeFallback: a socket accepted from an MPTCP listener (Go's
// default since 1.24) cannot send zero-copy on kernels that lack the
// support for it there (EOPNOTSUPP). A large send of Auto that probes its
// route on such a socket learns it once, from its first part, and copies
// the rest: it does not try zero-copy again for every MiB.
func TestAdaptiveProbeFallback(t *testing.T) {
	s := newAutoURing(t)
	const size = 8 << 20
	f, data := tempFile(t, size)
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	client, server := listenPair(t, &lc)
	got := receive(client)
	if n, err := s.Send(context.Background(), server, f, 0, size); err != nil || n != size {
		t.Fatalf("Send = %d, %v", n, err)
	}
	server.Close()
	if !bytes.Equal(<-got, data) {
		t.Fatal("wrong bytes")
	}
	st := s.Stats()
	t.Logf("%+v", st)
	if st.Methods[sendfile2.URing].Bytes == 0 && st.Fallbacks == 0 {
		t.Fatalf("neither a zero-copy byte nor a fallback: %+v", st)
	}
	if st.Fallbacks > 1 {
		t.Errorf("%d fallbacks for one send: zero-copy was tried again after the socket refused it", st.Fallbacks)
	}
}

// TestAdaptiveProbeSmallRest: a send a little longer than a probe is probed
// whole, not cut into a probe and a rest too small for zero-copy that
// Stats would count as a small send.
func TestAdaptiveProbeSmallRest(t *testing.T) {
	s := newAutoURing(t)
	size := sendfile2.ProbeSend + 4096
	f, data := tempFile(t, size)
	sendOver(t, data, func(a *net.TCPConn) (int64, error) {
		return s.Send(context.Background(), a, f, 0, int64(size))
	})
	st := s.Stats()
	t.Logf("%+v", st)
	if st.Adaptive.Small != 0 {
		t.Errorf("adaptive stats %+v: a send of %d bytes counted as small", st.Adaptive, size)
	}
	if u := st.Methods[sendfile2.URing]; u.Sends != 1 || u.Bytes != int64(size) {
		t.Errorf("uring %+v: want the whole send, probing", u)
	}
}

// TestSplitJob: where a probe ends in a send's header and file range.
func TestSplitJob(t *testing.T) {
	hdr := []byte("0123456789")
	for _, tc := range []struct {
		name               string
		hdr                []byte
		off, count, n      int64
		split              bool
		headHdr, restHdr   string
		headCount, restOff int64
		restCount          int64
	}{
		{"shorter than the probe", hdr, 5, 20, 30, false, "0123456789", "", 20, 0, 0},
		{"exactly the probe", hdr, 5, 20, 30, false, "0123456789", "", 20, 0, 0},
		{"ends in the header", hdr, 5, 20, 4, true, "0123", "456789", 0, 5, 20},
		{"ends at the header's end", hdr, 5, 20, 10, true, "0123456789", "", 0, 5, 20},
		{"ends in the file", hdr, 5, 20, 16, true, "0123456789", "", 6, 11, 14},
		{"no header", nil, 5, 20, 8, true, "", "", 8, 13, 12},
		{"header only", hdr, 0, 0, 3, true, "012", "3456789", 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "shorter than the probe" {
				tc.count = 19
				tc.headCount = 19
			}
			head, rest, split := sendfile2.SplitJob(tc.hdr, tc.off, tc.count, tc.n)
			if split != tc.split {
				t.Fatalf("split = %v", split)
			}
			if string(head.Header) != tc.headHdr || head.Off != tc.off || head.Count != tc.headCount {
				t.Errorf("head: header %q, off %d, count %d", head.Header, head.Off, head.Count)
			}
			if !split {
				return
			}
			if string(rest.Header) != tc.restHdr || rest.Off != tc.restOff || rest.Count != tc.restCount {
				t.Errorf("rest: header %q, off %d, count %d", rest.Header, rest.Off, rest.Count)
			}
			if got := int64(len(head.Header)+len(rest.Header)) + head.Count + rest.Count; got != int64(len(tc.hdr))+tc.count {
				t.Errorf("the parts hold %d bytes", got)
			}
		})
	}
}

// TestAdaptiveRoute: the route's decisions, with the notifications' reports
// made up: a device that sends without copying (which loopback never shows)
// lifts the limit on zero-copy sends; three sends in a row reported copied
// make the route copy.
func TestAdaptiveRoute(t *testing.T) {
	s := newSender(t, sendfile2.Config{Method: sendfile2.Auto})
	zc := s.Method()
	if !zc.Safe() || zc == sendfile2.Copy {
		t.Skipf("auto resolved to %s", zc)
	}
	want := func(got, want sendfile2.Method, what string) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: %s, want %s", what, got, want)
		}
	}
	var ends []func(bool, int64, int64)
	for i := range 3 {
		m, end := sendfile2.Adapt(s)
		want(m, zc, fmt.Sprintf("probe %d of a new route", i+1))
		ends = append(ends, end)
	}
	m, _ := sendfile2.Adapt(s)
	want(m, sendfile2.Copy, "a fourth send while three probes are out")
	ends[0](false, 0, 0) // failed: teaches nothing, frees its place
	m, end := sendfile2.Adapt(s)
	want(m, zc, "a send after a probe failed")
	end(true, 1<<20, 0) // left without a copy: the route is known
	for i := range 10 {
		m, _ := sendfile2.Adapt(s)
		want(m, zc, fmt.Sprintf("send %d on a route known to send without copying", i+1))
	}
	for _, end := range ends[1:] {
		end(true, 0, 1<<20)
	}
	m, end = sendfile2.Adapt(s)
	want(m, zc, "a send after two copied reports")
	end(true, 0, 1<<20)
	m, _ = sendfile2.Adapt(s)
	want(m, sendfile2.Copy, "a send after three copied reports in a row")
	if st := s.Stats().Adaptive; st.Switches != 1 || st.Probing != 1 || st.CopiedRoute != 1 {
		t.Fatalf("adaptive stats = %+v; want 1 switch, 1 send copied while probing, 1 copied by route", st)
	}
}
