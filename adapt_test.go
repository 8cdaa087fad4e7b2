package sendfile2_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
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
				a, b := tcpPair(t)
				got := receive(b)
				if n, err := s.Send(context.Background(), a, f, 0, int64(len(data))); err != nil || n != int64(len(data)) {
					t.Fatalf("Send = %d, %v", n, err)
				}
				a.Close()
				if !bytes.Equal(<-got, data) {
					t.Fatal("wrong bytes")
				}
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

// TestAdaptiveProbes: many sends that start together on a route that Auto
// knows nothing about yet do not all go out zero-copy: three do, and their
// notifications decide the route; the others copy meanwhile.
func TestAdaptiveProbes(t *testing.T) {
	s := newSender(t, sendfile2.Config{Method: sendfile2.Auto})
	if s.Method() != sendfile2.URing {
		t.Skipf("auto resolved to %s", s.Method())
	}
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
