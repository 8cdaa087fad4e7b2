package peer_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sendfile2/sendfile2/internal/peer"
)

// waitConns waits until srv has n connections open, and fails the test if it
// does not within 10 seconds.
func waitConns(t *testing.T, srv *peer.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Conns() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open; want %d", srv.Conns(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestJoinAfterEnd: a data connection that took its session's token while
// the session ended is closed, not attached to the session that is gone.
func TestJoinAfterEnd(t *testing.T) {
	ended := make(chan struct{}, 1)
	srv := &peer.Server{MaxSessions: 1, Logf: func(format string, args ...any) {
		if strings.HasSuffix(format, "ended") {
			ended <- struct{}{}
		}
	}}
	var cur atomic.Pointer[peer.Session]
	peer.SetJoinHook(srv, func() {
		cur.Load().Close()
		<-ended
	})
	addr := startPeer(t, srv)
	ctx := context.Background()
	// More rounds than the peer's limit of 3 x MaxSessions connections: a
	// connection left over from each would have it refuse the later ones.
	for i := range 5 {
		s, err := peer.Dial(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		cur.Store(s)
		c, _, err := s.Open(ctx, peer.OpenOptions{}, nil)
		if err == nil {
			t.Errorf("round %d: a data connection joined a session that had ended", i)
			c.Close()
		}
		waitConns(t, srv, 0)
	}
}

// TestJoinAfterReopen: a data connection that took a token the session has
// replaced (by asking for another data connection) is not attached.
func TestJoinAfterReopen(t *testing.T) {
	srv := &peer.Server{}
	var joins atomic.Int32
	opened := make(chan struct{})
	peer.SetJoinHook(srv, func() {
		if joins.Add(1) == 1 {
			<-opened // the first data connection waits for the second Open
		}
	})
	addr := startPeer(t, srv)
	ctx := context.Background()
	s, err := peer.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first := make(chan error, 1)
	go func() {
		c, _, err := s.Open(ctx, peer.OpenOptions{}, nil)
		if err == nil {
			c.Close()
		}
		first <- err
	}()
	for joins.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	// The second Open's data connection dials only once the first one is
	// attached, or refused.
	d := &net.Dialer{Control: func(_, _ string, _ syscall.RawConn) error {
		close(opened)
		if err := <-first; err == nil {
			t.Errorf("the first data connection joined after the session asked for another")
		}
		return nil
	}}
	c, _, err := s.Open(ctx, peer.OpenOptions{}, d)
	if err != nil {
		t.Fatalf("the second data connection: %v", err)
	}
	defer c.Close()
	waitConns(t, srv, 2)
}
