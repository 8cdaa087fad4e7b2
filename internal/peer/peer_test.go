package peer_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/sendfile2/sendfile2/internal/peer"
	"github.com/sendfile2/sendfile2/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// startPeer runs a peer on 127.0.0.1 until the test ends.
func startPeer(t *testing.T, srv *peer.Server) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ls, err := srv.Listen(ctx, "127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ls) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ls.Main.Addr().String()
}

func stream(seed [32]byte, skip, n int) []byte {
	b := make([]byte, skip+n)
	rand.NewChaCha8(seed).Read(b)
	return b[skip:]
}

// TestCount: the peer holds the data until asked, then counts exactly the
// bytes that differ from the named stream, and reports the end of the stream.
func TestCount(t *testing.T) {
	addr := startPeer(t, &peer.Server{})
	ctx := context.Background()
	s, err := peer.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	seed := [32]byte{1, 2, 3}
	for _, skip := range []int{0, 12345} {
		c, rep, err := s.Open(ctx, peer.OpenOptions{Seed: seed, Skip: int64(skip), Small: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Window == 0 {
			t.Errorf("no window reported")
		}
		data := stream(seed, skip, 1<<20)
		data[10] ^= 1
		data[len(data)-1] ^= 0xff
		done := make(chan error, 1)
		go func() {
			_, err := c.Write(data)
			c.CloseWrite()
			done <- err
		}()
		head, err := s.Read(ctx, 4096, 10*time.Second)
		if err != nil || head.Received != 4096 || head.Changed != 1 || head.FirstChange != 10 || head.EOF {
			t.Fatalf("Read(4096) = %+v, %v", head, err)
		}
		rep, err = s.Drain(ctx, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		c.Close()
		if rep.Received != int64(len(data)) || rep.Changed != 2 || rep.FirstChange != 10 || !rep.EOF {
			t.Errorf("skip %d: Drain = %+v; want %d bytes, 2 changed from 10, EOF", skip, rep, len(data))
		}
	}
}

// TestReset: the peer resets the data connection; the sender's writes fail.
func TestReset(t *testing.T) {
	addr := startPeer(t, &peer.Server{})
	ctx := context.Background()
	s, err := peer.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, _, err := s.Open(ctx, peer.OpenOptions{Small: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	if _, err := s.Read(ctx, 1<<20, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("writes to a reset connection went on")
		}
	case <-time.After(time.Minute):
		t.Fatal("writes to a reset connection did not fail")
	}
	if _, err := s.Drain(ctx, time.Second); !errors.Is(err, peer.ErrNoData) {
		t.Errorf("Drain after Reset: %v; want ErrNoData", err)
	}
}

// TestStrangers: what a stranger on the network can send is refused: bad
// magic, a data connection with an unknown token, too many sessions.
func TestStrangers(t *testing.T) {
	addr := startPeer(t, &peer.Server{MaxSessions: 2})
	ctx := context.Background()
	for _, b := range [][]byte{
		[]byte("GET / HTTP/1.0\r\n\r\n" + string(make([]byte, 96))),
		append([]byte("SF2P\x01\x02\x00\x00"), make([]byte, 88)...), // a data connection, unknown token
		append([]byte("SF2P\x09\x01\x00\x00"), make([]byte, 88)...), // another version
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(b)
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 128)
		n, err := c.Read(buf)
		for err == nil {
			var m int
			m, err = c.Read(buf[n:])
			n += m
		}
		c.Close()
		if n > 64 || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("request %q: %d bytes back, %v", b[:8], n, err)
		}
	}
	var ss []*peer.Session
	for range 2 {
		s, err := peer.Dial(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stats(ctx); err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
	}
	s, err := peer.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stats(ctx); !errors.Is(err, peer.ErrBusy) {
		t.Errorf("a third session: %v; want ErrBusy", err)
	}
	s.Close()
	for _, s := range ss {
		s.Close()
	}
}
