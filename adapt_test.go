package sendfile2_test

import (
	"bytes"
	"context"
	"testing"

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
