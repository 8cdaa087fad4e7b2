package sendfile2_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2"
)

// The fairness tests: peers that stall (a receiver that never reads, an
// upload that stops in the middle of its body) must not keep what the other
// connections of the same Sender need. Their sends and receives hold a
// deadline far away; a well-behaved client's sends and receives on the same
// Sender must complete meanwhile, byte-exact. Then the stalled ones are
// ended, and every registered buffer and every request of the ring comes
// back.

// fairBound bounds the wait for a well-behaved client beside stalled ones. It
// is a hang bound, not a timing assertion: the client needs a fraction of a
// second.
const fairBound = 30 * time.Second

// stalled is one connection whose peer has stopped: a Send to a peer that
// never reads, or a Receive from a peer that sent part of its body.
type stalled struct {
	cancel context.CancelFunc
	res    <-chan sendResult
	local  net.Conn // the Sender's end
	peer   net.Conn
	send   bool
}

// stallSend starts a Send of f's size bytes to a peer that never reads.
func stallSend(t *testing.T, s *sendfile2.Sender, f *os.File, size int64, small bool) *stalled {
	t.Helper()
	a, b := tcpPair(t)
	if small {
		a, b = smallWindowPair(t)
		setSndbuf(t, a, 64<<10)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &stalled{cancel: cancel, res: goSend(ctx, s, a, f, 0, size), local: a, peer: b, send: true}
}

// stallReceive starts a Receive of 8 MiB from a peer that sends 1 KiB and
// stops.
func stallReceive(t *testing.T, s *sendfile2.Sender, dir string, i int) *stalled {
	t.Helper()
	a, b := tcpPair(t)
	dst, err := os.Create(filepath.Join(dir, fmt.Sprintf("stalled-%d", i)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dst.Close() })
	if _, err := b.Write(make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan sendResult, 1)
	go func() {
		n, err := s.Receive(ctx, a, dst, 0, 8<<20)
		res <- sendResult{n, err}
	}()
	return &stalled{cancel: cancel, res: res, local: a, peer: b}
}

func setSndbuf(t testing.TB, c syscall.Conn, n int) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, n) })
}

// end ends a stalled connection: its context is cancelled, and a stalled
// send's peer then reads everything, so that the notifications of what the
// kernel had queued come. It returns what the Send or Receive returned.
func (st *stalled) end(t *testing.T) sendResult {
	t.Helper()
	st.cancel()
	if st.send {
		go io.Copy(io.Discard, st.peer)
	}
	r := await(t, st.res, "a stalled send or receive, cancelled")
	st.local.Close()
	st.peer.Close()
	return r
}

// goodSend sends size bytes of f to a peer that reads at once, and checks
// the bytes.
func goodSend(t *testing.T, s *sendfile2.Sender, f *os.File, data []byte, off, size int64) error {
	a, b := tcpPair(t)
	defer a.Close()
	ok := verify(b, data[off:off+size])
	ctx, cancel := context.WithTimeout(context.Background(), fairBound)
	defer cancel()
	n, err := s.Send(ctx, a, f, off, size)
	a.Close()
	if err != nil || n != size {
		return fmt.Errorf("Send beside stalled peers = %d, %v; want %d, nil", n, err, size)
	}
	return await(t, ok, "the well-behaved peer's bytes")
}

// goodReceive receives size bytes from a peer that sends them at once, and
// checks the file.
func goodReceive(t *testing.T, s *sendfile2.Sender, dir string, size int) error {
	a, b := tcpPair(t)
	defer a.Close()
	defer b.Close()
	body := make([]byte, size)
	rand.Read(body)
	go b.Write(body)
	dst, err := os.CreateTemp(dir, "good")
	if err != nil {
		return err
	}
	defer dst.Close()
	ctx, cancel := context.WithTimeout(context.Background(), fairBound)
	defer cancel()
	n, err := s.Receive(ctx, a, dst, 0, int64(size))
	if err != nil || n != int64(size) {
		return fmt.Errorf("Receive beside stalled peers = %d, %v; want %d, nil", n, err, size)
	}
	got, err := os.ReadFile(dst.Name())
	if err != nil {
		return err
	}
	if !bytes.Equal(got, body) {
		return errors.New("Receive beside stalled peers: the file differs from the body")
	}
	return nil
}

// settle waits until the stalled sends have filled their peers' sockets and
// the stalled receives have taken their peers' bytes, for 2 s at most (a
// send or receive that waits for a buffer does neither): until then they may
// not hold what they will hold once stalled.
func settle(t *testing.T, conns []*stalled) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for _, st := range conns {
		for {
			// A stalled send has filled its peer's socket; a stalled
			// receive has taken its peer's bytes from its own.
			c := st.peer
			if !st.send {
				c = st.local
			}
			var n int
			var err error
			rc, _ := c.(syscall.Conn).SyscallConn()
			rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
			if err != nil {
				t.Fatal(err)
			}
			if st.send && n > 0 || !st.send && n == 0 {
				break
			}
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond) // let the sends fill what they can
}

// epollFDs is the number of epoll instances the process has open.
func epollFDs(t *testing.T) int {
	t.Helper()
	n := 0
	for _, target := range faultFDs(t) {
		if target == "anon_inode:[eventpoll]" {
			n++
		}
	}
	return n
}

// pipeFDs is the number of pipe ends the process has open.
func pipeFDs(t *testing.T) int {
	t.Helper()
	n := 0
	for _, target := range faultFDs(t) {
		if strings.HasPrefix(target, "pipe:") {
			n++
		}
	}
	return n
}

// checkAllBack checks, once every send and receive has returned and the
// stalled peers have read everything, that every registered buffer is back in
// the pool and that no request of the ring waits for a notification (every
// CQE with F_MORE had its NOTIF).
func checkAllBack(t *testing.T, s *sendfile2.Sender) {
	t.Helper()
	deadline := time.Now().Add(hangBound)
	for {
		inFlight, _, stray := sendfile2.URingLoad(s)
		out := sendfile2.BuffersOut(s)
		if inFlight == 0 && out == 0 {
			if stray != 0 {
				t.Errorf("%d CQEs named no live request", stray)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d registered buffers out and %d ring requests in flight %v after every send returned", out, inFlight, hangBound)
		}
		time.Sleep(time.Millisecond)
	}
}

// runStalled stalls gets sends and puts receives on s, checks that a 4 MiB
// send (then one of 16 MiB) and a 1 MiB receive of a well-behaved client
// complete beside them,
// then ends them and checks that everything comes back.
func runStalled(t *testing.T, s *sendfile2.Sender, gets, puts int, small bool) {
	const fileSize = 16 << 20
	f, data := tempFile(t, fileSize)
	dir := t.TempDir()
	epolls, pipes := epollFDs(t), pipeFDs(t)
	var conns []*stalled
	for i := range gets + puts {
		if i < gets {
			conns = append(conns, stallSend(t, s, f, fileSize, small))
		} else {
			conns = append(conns, stallReceive(t, s, dir, i))
		}
	}
	settle(t, conns)
	held := sendfile2.BuffersOut(s)
	ringHeld, _, _ := sendfile2.URingLoad(s)
	// Waiting sends and receives hold no descriptor of their own: they wait
	// in the Sender's one epoll instance. MsgZC keeps one per send, for the
	// socket's error queue.
	waits := epollFDs(t) - epolls
	if s.Method() != sendfile2.MsgZC && waits > 1 {
		t.Errorf("%d epoll instances made while %d sends and receives wait; want the Sender's one", waits, gets+puts)
	}
	// A waiting Splice receive gives its pipe back: the Sender keeps at
	// most 4 empty ones.
	pipes = pipeFDs(t) - pipes
	if pipes > 2*4 {
		t.Errorf("%d pipe ends open while %d receives wait; want at most the Sender's 4 pipes", pipes, puts)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() {
		if err := goodSend(t, s, f, data, 12345, 4<<20); err != nil {
			errs <- err
		}
		// More than a socket buffer: sent in parts when the pool is empty.
		if err := goodSend(t, s, f, data, 0, fileSize); err != nil {
			errs <- err
		}
	})
	wg.Go(func() {
		if err := goodReceive(t, s, dir, 1<<20); err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := s.Stats()
	t.Logf("%d stalled sends, %d stalled receives: %d registered buffers, %d ring requests, %d epoll instances and %d pipe ends held by them; fallbacks %d, of them for want of a buffer or ring slot %d",
		gets, puts, held, ringHeld, waits, pipes, st.Fallbacks, st.PoolShort)
	for _, c := range conns {
		r := c.end(t)
		switch {
		case c.send && (r.err == nil || r.n >= fileSize):
			t.Errorf("stalled Send = %d, %v; want fewer than %d bytes and an error", r.n, r.err, fileSize)
		case !c.send && (r.n != 1024 || !errors.Is(r.err, context.Canceled)):
			t.Errorf("stalled Receive = %d, %v; want 1024, context.Canceled", r.n, r.err)
		}
	}
	checkAllBack(t, s)
}

// TestStalledPeers: a Sender with 4 registered buffers, 3 sends to peers
// that never read and 3 receives from peers that stopped mid-body, each with
// no deadline; a well-behaved client's 4 MiB send and 1 MiB receive on the
// same Sender complete byte-exact, under every zero-copy method and Auto
// (whose receives splice, or with DontCache use URing's).
func TestStalledPeers(t *testing.T) {
	for _, cfg := range []sendfile2.Config{
		{Method: sendfile2.URing}, {Method: sendfile2.URingMmap}, {Method: sendfile2.MsgZC},
		{Method: sendfile2.Auto}, {Method: sendfile2.Auto, DontCache: true},
	} {
		name := string(cfg.Method)
		if cfg.DontCache {
			name += "+dontcache"
		}
		t.Run(name, func(t *testing.T) {
			checkNoLeaks(t)
			cfg.Buffers = 4
			s := newSender(t, cfg)
			runStalled(t, s, 3, 3, false)
		})
	}
}

// TestStalledPeersMany: 150 stalled peers (75 sends, 75 receives) on a
// Sender with the default pool.
func TestStalledPeersMany(t *testing.T) {
	if testing.Short() {
		t.Skip("150 connections")
	}
	for _, m := range []sendfile2.Method{sendfile2.URing, sendfile2.Auto} {
		t.Run(string(m), func(t *testing.T) {
			checkNoLeaks(t)
			s := newSender(t, sendfile2.Config{Method: m})
			runStalled(t, s, 75, 75, true)
		})
	}
}

// TestSlowReaders: a uring Sender with the default pool sends 16 MiB to each
// of 100 peers that read 4 KiB every 10 ms, and meanwhile delivers 8 sends
// of 4 MiB to peers that read at once. The well-behaved ones must complete
// before a generous bound; the figures are logged, not asserted.
func TestSlowReaders(t *testing.T) {
	if testing.Short() {
		t.Skip("100 connections")
	}
	checkNoLeaks(t)
	s := newSender(t, sendfile2.Config{Method: sendfile2.URing})
	const slow, size = 100, 16 << 20
	f, data := tempFile(t, size)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var slowBytes atomic.Int64
	var slowWG sync.WaitGroup
	results := make([]<-chan sendResult, slow)
	conns := make([]net.Conn, slow)
	for i := range slow {
		a, b := tcpPair(t)
		conns[i] = a
		results[i] = goSend(ctx, s, a, f, 0, size)
		slowWG.Go(func() {
			buf := make([]byte, 4<<10)
			for {
				n, err := b.Read(buf)
				slowBytes.Add(int64(n))
				if err != nil {
					return
				}
				select {
				case <-ctx.Done():
					io.Copy(io.Discard, b) // the rest, so that notifications come
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		})
		t.Cleanup(func() { a.Close(); b.Close() })
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			if err := goodSend(t, s, f, data, int64(i)*4099, 4<<20); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := s.Stats()
	t.Logf("8 well-behaved sends of 4 MiB beside %d slow readers: done in %v; the slow readers had %d KiB by then; fallbacks %d (for want of a buffer %d)",
		slow, took.Round(time.Millisecond), slowBytes.Load()>>10, st.Fallbacks, st.PoolShort)
	cancel()
	for i := range results {
		await(t, results[i], "a slow reader's send, cancelled")
		conns[i].Close()
	}
	slowWG.Wait()
	checkAllBack(t, s)
}

// TestStalledPeersRing: uring-mmap's requests are not bounded by a pool of
// buffers, so sends to peers that never read could fill the ring's Loop
// (each keeps its zero-copy sends, 8 chunks of 4 KiB here, until their
// notifications). 260 of them hold more than the Loop admits; a
// well-behaved client's send must still complete, copying what finds no
// room in the Loop rather than wait for it.
func TestStalledPeersRing(t *testing.T) {
	if testing.Short() {
		t.Skip("260 connections")
	}
	checkNoLeaks(t)
	s := newSender(t, sendfile2.Config{Method: sendfile2.URingMmap, BufferSize: 4096})
	_, capacity, _ := sendfile2.URingLoad(s)
	runStalled(t, s, 260, 0, true)
	t.Logf("the Loop admits %d requests", capacity)
}
