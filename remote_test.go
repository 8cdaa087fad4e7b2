package sendfile2_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/internal/peer"
)

// The remote fault tests: the faults of faults_test.go with the peer on the
// other side of a network device, where the kernel sends from the pages and
// holds them until the peer acknowledges. SENDFILE2_TEST_PEER names a
// `sendfile2 peer` (HOST:PORT) to send to; the kernel matrix runs one on the
// host of each virtual machine and the tests in the guest, across its
// virtio-net device. Without it the tests run against a peer in this process,
// on loopback, which copies every send: that proves the tests, not the path.

// remoteSize is the size of the ranges the remote tests send: more than the
// socket buffers and the engines' windows hold, small enough for a guest in
// software emulation.
const remoteSize = 8 << 20

// remoteMethods are the methods the remote tests put through each fault.
func remoteMethods() []sendfile2.Method {
	return []sendfile2.Method{sendfile2.Auto, sendfile2.URing, sendfile2.URingMmap, sendfile2.MsgZC}
}

// remotePeer is the peer's address: SENDFILE2_TEST_PEER, or a peer started
// in this process for the test. settle waits until such a peer has closed
// every connection (so that the leak checks see none of its descriptors).
func remotePeer(t *testing.T) (addr string, settle func()) {
	t.Helper()
	if addr := os.Getenv("SENDFILE2_TEST_PEER"); addr != "" {
		return addr, func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &peer.Server{}
	ls, err := srv.Listen(ctx, "127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ls) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("peer: %v", err)
		}
	})
	settle = func() {
		for deadline := time.Now().Add(hangBound); srv.Conns() != 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the peer still has %d connections", srv.Conns())
			}
		}
	}
	// Once it answers, the peer's goroutines all run: the leak checks of
	// the tests see them from the start.
	ps, err := peer.Dial(ctx, ls.Main.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Stats(ctx); err != nil {
		t.Fatal(err)
	}
	ps.Close()
	settle()
	return ls.Main.Addr().String(), settle
}

// remoteFile writes size bytes of the stream of seed to a new file and
// returns it open, its path and its bytes.
func remoteFile(t testing.TB, seed [32]byte, size int) (*os.File, string, []byte) {
	t.Helper()
	data := make([]byte, size)
	rand.NewChaCha8(seed).Read(data)
	path := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, path, data
}

// remoteConn opens a session with the peer and a data connection whose
// bytes the peer compares with seed's stream from skip on, with the peer's
// small window. Both close when the test ends.
func remoteConn(t testing.TB, addr string, seed [32]byte, skip int64) (*net.TCPConn, *peer.Session) {
	t.Helper()
	ps, err := peer.Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	c, _, err := ps.Open(context.Background(), peer.OpenOptions{Seed: seed, Skip: skip, Small: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, ps
}

type peerResult struct {
	rep peer.Report
	err error
}

// goPeer runs a call to the peer in its own goroutine.
func goPeer(f func() (peer.Report, error)) <-chan peerResult {
	ch := make(chan peerResult, 1)
	go func() {
		rep, err := f()
		ch <- peerResult{rep, err}
	}()
	return ch
}

// peerDrain has the peer read until the end of the stream.
func peerDrain(ps *peer.Session) <-chan peerResult {
	return goPeer(func() (peer.Report, error) { return ps.Drain(context.Background(), hangBound) })
}

// checkRemotePrefix checks what the peer of a send that stopped early
// received: exactly the n bytes Send reported, none of them changed.
func checkRemotePrefix(t testing.TB, r peerResult, n int64) {
	t.Helper()
	if r.err != nil && r.rep.Received == 0 {
		t.Fatalf("peer: %v", r.err)
	}
	if r.rep.Received != n {
		t.Errorf("Send reported %d bytes sent; the peer received %d", n, r.rep.Received)
	}
	if r.rep.Changed != 0 {
		t.Errorf("the peer received %d changed bytes, the first at %d", r.rep.Changed, r.rep.FirstChange)
	}
}

// cancelGrace is how long a send whose context ended may take to return
// while its peer does not read, when it waits only for its requests' results.
const cancelGrace = 10 * time.Second

// awaitCancelled waits for a send that was cancelled (its context ended, or
// its Sender closed) and does not wait for its peer. If it has not returned
// after cancelGrace, read lets the peer read and the test waits on. Seen
// once, for uring under -race on a loaded machine, with a peer behind a
// small window: a send that Close cancelled waited 60 s, until its peer
// read. The engines ignore the answer of IORING_OP_ASYNC_CANCEL, so a
// cancellation that finds its SEND_ZC between two attempts (-ENOENT) or
// running (-EALREADY) is not asked again, and the SEND_ZC waits for room
// that only the peer's reading makes. That is logged here, not failed:
// TestFaultClose and TestFaultPeer check on loopback that cancellation ends
// such sends.
func awaitCancelled(t testing.TB, res <-chan sendResult, read func(), what string) sendResult {
	t.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(cancelGrace):
	}
	t.Logf("%s: not returned %v after its cancellation; the peer reads now", what, cancelGrace)
	read()
	return await(t, res, what)
}

// sentAndAcked is the number of bytes written to c: those its peer
// acknowledged (tcpi_bytes_acked, counting the handshake's one) and those
// still in its socket (SIOCOUTQ).
func sentAndAcked(t testing.TB, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var outq int
	var ierr, qerr error
	if err := rc.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		outq, qerr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
	}); err != nil {
		t.Fatal(err)
	}
	if ierr != nil || qerr != nil {
		t.Fatal(errors.Join(ierr, qerr))
	}
	return int(info.Bytes_acked) - 1 + outq
}

// TestRemoteFaults: the peer across the network resets the connection or
// stalls (Send ends at its deadline while the methods that pin the file's
// pages wait for them), the file is truncated during the send, the send is
// cancelled while sending and while it waits for notifications (the file
// then overwritten: the peer must receive the original bytes), and the
// Sender is closed while sends wait for notifications. The peer counts what
// it receives and what differs from the file.
func TestRemoteFaults(t *testing.T) {
	addr, settle := remotePeer(t)
	seed := [32]byte{'r', 'e', 'm', 'o', 't', 'e'}

	for _, m := range remoteMethods() {
		t.Run(string(m), func(t *testing.T) {
			t.Run("reset", func(t *testing.T) {
				checkNoLeaks(t)
				t.Cleanup(settle)
				s := newSender(t, sendfile2.Config{Method: m})
				f, _, _ := remoteFile(t, seed, remoteSize)
				a, ps := remoteConn(t, addr, seed, 0)
				const peerRead = 512 << 10
				first := goPeer(func() (peer.Report, error) { return ps.Read(context.Background(), peerRead, hangBound) })
				res := goSend(context.Background(), s, a, f, 0, remoteSize)
				if p := await(t, first, "the peer's first bytes"); p.err != nil {
					t.Fatal(p.err)
				}
				if _, err := ps.Reset(context.Background()); err != nil {
					t.Fatal(err)
				}
				r := await(t, res, "Send to a peer that reset the connection")
				if !errors.Is(r.err, syscall.ECONNRESET) && !errors.Is(r.err, syscall.EPIPE) {
					t.Fatalf("Send = %d, %v; want an error matching ECONNRESET or EPIPE", r.n, r.err)
				}
				if r.n < peerRead || r.n >= remoteSize {
					t.Errorf("Send reported %d bytes sent; the peer read %d of %d", r.n, peerRead, remoteSize)
				}
				checkReleased(t, s)
			})
			t.Run("stall", func(t *testing.T) {
				checkNoLeaks(t)
				t.Cleanup(settle)
				s := newSender(t, sendfile2.Config{Method: m})
				f, _, _ := remoteFile(t, seed, remoteSize)
				a, ps := remoteConn(t, addr, seed, 0)
				ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(300*time.Millisecond))
				defer cancel()
				res := goSend(ctx, s, a, f, 0, remoteSize)
				var rest <-chan peerResult
				if pinsFile(s.Method()) {
					// Its pages stay pinned until the peer acknowledges
					// them: the peer reads once the deadline has passed.
					<-ctx.Done()
					rest = peerDrain(ps)
				}
				r := awaitCancelled(t, res, func() { rest = peerDrain(ps) }, "Send at its deadline")
				if !errors.Is(r.err, context.DeadlineExceeded) || r.n >= remoteSize {
					t.Fatalf("Send = %d, %v; want fewer than %d bytes and context.DeadlineExceeded", r.n, r.err, remoteSize)
				}
				if s.Method() != sendfile2.URing {
					checkReleased(t, s)
				}
				a.Close()
				if rest == nil {
					rest = peerDrain(ps)
				}
				checkRemotePrefix(t, await(t, rest, "the peer's bytes"), r.n)
				waitReleased(t, s)
			})
			t.Run("truncated", func(t *testing.T) {
				checkNoLeaks(t)
				t.Cleanup(settle)
				s := newSender(t, sendfile2.Config{Method: m})
				f, path, _ := remoteFile(t, seed, remoteSize)
				a, ps := remoteConn(t, addr, seed, 0)
				if err := a.SetWriteBuffer(256 << 10); err != nil {
					t.Fatal(err)
				}
				// As in TestFaultFile: past what can be in flight when the
				// peer has read peerRead, a multiple of the chunk size.
				const peerRead, newSize = 512 << 10, 6 << 20
				first := goPeer(func() (peer.Report, error) { return ps.Read(context.Background(), peerRead, hangBound) })
				res := goSend(context.Background(), s, a, f, 0, remoteSize)
				if p := await(t, first, "the peer's first bytes"); p.err != nil {
					t.Fatal(p.err)
				}
				if err := os.Truncate(path, newSize); err != nil {
					t.Fatal(err)
				}
				rest := peerDrain(ps)
				r := await(t, res, "Send of a file that shrank")
				checkReleased(t, s)
				a.Close()
				if !errors.Is(r.err, io.ErrUnexpectedEOF) {
					t.Fatalf("Send = %d, %v; want an error matching io.ErrUnexpectedEOF", r.n, r.err)
				}
				// The methods that send from the file's pages stop at its
				// new end, or before: msgzc's call that spans the end
				// fails whole (EFAULT) across a device, where a page
				// pinned for zero-copy must exist.
				if r.n < peerRead || r.n > newSize {
					t.Errorf("Send reported %d bytes sent; the peer had read %d when the file shrank to %d bytes", r.n, peerRead, newSize)
				}
				checkRemotePrefix(t, await(t, rest, "the peer's bytes"), r.n)
			})
			t.Run("cancel", func(t *testing.T) {
				checkNoLeaks(t)
				t.Cleanup(settle)
				s := newSender(t, sendfile2.Config{Method: m})
				f, _, _ := remoteFile(t, seed, remoteSize)
				a, ps := remoteConn(t, addr, seed, 0)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				first := goPeer(func() (peer.Report, error) { return ps.Read(context.Background(), 256<<10, hangBound) })
				res := goSend(ctx, s, a, f, 0, remoteSize)
				if p := await(t, first, "the peer's first bytes"); p.err != nil {
					t.Fatal(p.err)
				}
				rest := peerDrain(ps)
				cancel()
				r := await(t, res, "Send cancelled in flight")
				if !errors.Is(r.err, context.Canceled) || r.n >= remoteSize {
					t.Fatalf("Send = %d, %v; want fewer than %d bytes and context.Canceled", r.n, r.err, remoteSize)
				}
				if s.Method() != sendfile2.URing {
					checkReleased(t, s)
				}
				a.Close()
				checkRemotePrefix(t, await(t, rest, "the peer's bytes"), r.n)
				waitReleased(t, s)
			})
			t.Run("notifying", func(t *testing.T) {
				checkNoLeaks(t)
				t.Cleanup(settle)
				remoteNotifying(t, addr, m)
			})
			t.Run("close", func(t *testing.T) {
				checkNoLeaks(t)
				t.Cleanup(settle)
				remoteClose(t, addr, m, seed)
			})
		})
	}
	// The unsafe baseline through the same stage: it must show the
	// corruption, or the notifying stage has lost its power to fail.
	t.Run(string(sendfile2.Sendfile), func(t *testing.T) {
		t.Run("notifying", func(t *testing.T) {
			checkNoLeaks(t)
			t.Cleanup(settle)
			remoteNotifying(t, addr, sendfile2.Sendfile)
		})
	})
}

// remoteNotifying: the send is cancelled once every byte is in the socket
// and the peer, holding back, has acknowledged few: the zero-copy methods
// wait for notifications then. When Send returns the file is overwritten,
// and only then does the peer read on: it must get the original bytes. The
// unsafe baseline must show the corruption.
func remoteNotifying(t *testing.T, addr string, m sendfile2.Method) {
	const size = 1 << 20
	s := newSender(t, sendfile2.Config{Method: m})
	seed := [32]byte{'n', 'o', 't', 'i', 'f', 'y'}
	f, path, _ := remoteFile(t, seed, size)
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	a, ps := remoteConn(t, addr, seed, 0)
	if err := a.SetWriteBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := goSend(ctx, s, a, f, 0, size)
	var r sendResult
	returned, early := false, false
	for deadline := time.Now().Add(hangBound); !returned && sentAndAcked(t, a) < size; time.Sleep(time.Millisecond) {
		select {
		case r = <-res:
			returned = true
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v only %d of %d bytes in the socket", hangBound, sentAndAcked(t, a), size)
		}
	}
	// A send that returned before the cancellation is done (the peer
	// acknowledged everything).
	early = returned
	cancel()
	if !returned {
		select {
		case r = <-res:
			returned = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	overwrite := func() {
		if _, err := w.WriteAt(bytes.Repeat([]byte{0xee}, size), 0); err != nil {
			t.Fatal(err)
		}
	}
	if returned {
		overwrite()
	}
	rest := peerDrain(ps)
	if !returned {
		r = await(t, res, "Send cancelled while waiting for notifications")
		overwrite()
	}
	a.Close()
	p := await(t, rest, "the peer's bytes")
	t.Logf("%s: Send = %d, %v; the peer received %d bytes, %d changed", m, r.n, r.err, p.rep.Received, p.rep.Changed)
	if !m.Safe() {
		if p.rep.Changed == 0 {
			t.Errorf("%s delivered the original bytes: the held peer no longer shows the baseline unsafe, so this test lost its power", m)
		}
		return
	}
	if !((early || s.Method() == sendfile2.Copy) && r.err == nil) && !errors.Is(r.err, context.Canceled) {
		t.Errorf("Send = %d, %v; want an error matching context.Canceled", r.n, r.err)
	}
	if r.n != size {
		t.Errorf("Send reported %d bytes sent; all %d were in the socket", r.n, size)
	}
	checkRemotePrefix(t, p, size)
	waitReleased(t, s)
}

// remoteClose: Close while sends on 8 connections wait for peers that do not
// read: every send returns ErrClosed, having reported exactly what its peer
// then receives, unchanged; the methods that pin the file's pages return
// only once the peers have acknowledged what was queued.
func remoteClose(t *testing.T, addr string, m sendfile2.Method, seed [32]byte) {
	const conns = 8
	s := newSender(t, sendfile2.Config{Method: m})
	f, _, _ := remoteFile(t, seed, remoteSize)
	type conn struct {
		a    *net.TCPConn
		ps   *peer.Session
		res  <-chan sendResult
		rest <-chan peerResult
	}
	cs := make([]conn, conns)
	for i := range cs {
		cs[i].a, cs[i].ps = remoteConn(t, addr, seed, 0)
		if err := cs[i].a.SetWriteBuffer(256 << 10); err != nil {
			t.Fatal(err)
		}
		cs[i].res = goSend(context.Background(), s, cs[i].a, f, 0, remoteSize)
	}
	for deadline := time.Now().Add(hangBound); ; time.Sleep(time.Millisecond) {
		started := 0
		for _, c := range cs {
			if sentAndAcked(t, c.a) > 0 {
				started++
			}
		}
		if s.Stats().InFlight == conns && (started == conns || s.Method() == sendfile2.URing && started > 0) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %d sends in flight and %d sending", hangBound, s.Stats().InFlight, started)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	read := func() {
		for i := range cs {
			cs[i].rest = peerDrain(cs[i].ps)
		}
	}
	reading := false
	if pinsFile(s.Method()) {
		read()
		reading = true
	}
	rs := make([]sendResult, conns)
	for i, c := range cs {
		if reading {
			rs[i] = await(t, c.res, "a send interrupted by Close")
		} else {
			rs[i] = awaitCancelled(t, c.res, func() { read(); reading = true }, "a send interrupted by Close")
		}
		if !errors.Is(rs[i].err, sendfile2.ErrClosed) || rs[i].n >= remoteSize {
			t.Errorf("send %d interrupted by Close = %d, %v; want fewer than %d bytes and ErrClosed", i, rs[i].n, rs[i].err, remoteSize)
		}
	}
	if !reading {
		read()
	}
	for i, c := range cs {
		c.a.Close()
		checkRemotePrefix(t, await(t, c.rest, "a peer's bytes"), rs[i].n)
	}
	if err := await(t, closed, "Close"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := sendfile2.BuffersOut(s); n != 0 {
		t.Errorf("%d registered buffers out after Close", n)
	}
	checkNotified(t, s)
}
