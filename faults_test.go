package sendfile2_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2"
)

// The fault tests: what each method does when the peer, the file, the
// context, the Sender or the destination descriptor fails it in the middle of
// a send, and that it leaves nothing behind (buffers, notifications,
// descriptors, goroutines).

// faultMethods are every concrete method and Auto.
func faultMethods() []sendfile2.Method { return append(sendfile2.Methods(), sendfile2.Auto) }

// hangBound bounds each wait for something that must happen. Past it the test
// fails as hung; correct code takes a small fraction of it, also under -race.
// It is not a timing assertion.
const hangBound = 60 * time.Second

// faultSize is the size of the ranges sent: far more than the socket buffers
// and the engines' windows hold, so that a send is really in flight when the
// fault comes.
const faultSize = 16 << 20

// pinsFile reports whether m's sends, once stopped, still wait for the
// notifications of data that references the file's own pages: they return
// only once the peer has acknowledged (so, with a window full, read) what was
// queued.
func pinsFile(m sendfile2.Method) bool { return m == sendfile2.URingMmap || m == sendfile2.MsgZC }

type sendResult struct {
	n   int64
	err error
}

// goSend runs s.Send in its own goroutine.
func goSend(ctx context.Context, s *sendfile2.Sender, dst syscall.Conn, f *os.File, off, count int64) <-chan sendResult {
	ch := make(chan sendResult, 1)
	go func() {
		n, err := s.Send(ctx, dst, f, off, count)
		ch <- sendResult{n, err}
	}()
	return ch
}

// await returns the value ch delivers, or fails t as hung.
func await[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hangBound):
		t.Fatalf("%s: nothing after %v", what, hangBound)
		panic("unreachable")
	}
}

// readPrefix reads the first n bytes from c in the background: receiving
// them shows that the send is under way.
func readPrefix(c net.Conn, n int) <-chan []byte {
	out := make(chan []byte, 1)
	go func() {
		b := make([]byte, n)
		k, _ := io.ReadFull(c, b)
		out <- b[:k]
	}()
	return out
}

// checkPrefix checks what the peer of a send that stopped early received:
// the start of the range, exactly the n bytes that Send reported sent. (A
// count too low would make a caller that resumes send bytes twice; too high,
// skip some.)
func checkPrefix(t testing.TB, got, want []byte, n int64) {
	t.Helper()
	if int64(len(got)) != n {
		t.Errorf("Send reported %d bytes sent; the peer received %d", n, len(got))
	}
	if len(got) > len(want) {
		t.Errorf("the peer received %d bytes, more than the %d of the range", len(got), len(want))
		return
	}
	if i := firstDiff(got, want[:len(got)]); i >= 0 {
		t.Errorf("the peer's %d bytes differ from the range at byte %d", len(got), i)
	}
}

// checkNotified checks that every notification of s's zero-copy sends has
// been reaped: the bytes that notifications accounted (sent from memory or
// copied by the kernel) add up to the bytes the sends reported.
func checkNotified(t testing.TB, s *sendfile2.Sender) {
	t.Helper()
	st := s.Stats()
	if st.Fallbacks != 0 {
		return // bytes a fallback copied have no notification
	}
	for m, ms := range st.Methods {
		if m != sendfile2.URing && m != sendfile2.URingMmap && m != sendfile2.MsgZC {
			continue
		}
		if ms.ZeroCopyBytes+ms.CopiedBytes != ms.Bytes {
			t.Errorf("%s: notifications accounted %d bytes (%d zero-copy, %d copied) of the %d sent",
				m, ms.ZeroCopyBytes+ms.CopiedBytes, ms.ZeroCopyBytes, ms.CopiedBytes, ms.Bytes)
		}
	}
}

// checkReleased checks, right after a send returned, that the kernel holds
// nothing of it: every buffer is back and every notification reaped.
func checkReleased(t testing.TB, s *sendfile2.Sender) {
	t.Helper()
	if n := sendfile2.BuffersOut(s); n != 0 {
		t.Errorf("%d registered buffers out after Send returned", n)
	}
	checkNotified(t, s)
}

// waitReleased is checkReleased for a cancelled URing send, whose buffers
// stay parked until the notifications of what they sent arrive: the peer has
// read everything, so they come; it waits for them.
func waitReleased(t testing.TB, s *sendfile2.Sender) {
	t.Helper()
	for deadline := time.Now().Add(hangBound); sendfile2.BuffersOut(s) != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d registered buffers still out %v after the peer read everything", sendfile2.BuffersOut(s), hangBound)
		}
	}
	checkNotified(t, s)
}

// checkServes sends a range of f on a new connection with s and checks that
// the peer gets exactly its bytes, and that the send releases everything.
func checkServes(t testing.TB, s *sendfile2.Sender, f *os.File, data []byte) {
	t.Helper()
	c, d := tcpPair(t)
	got := receive(d)
	off, count := int64(4097), int64(len(data)-4097-1)
	r := await(t, goSend(context.Background(), s, c, f, off, count), "Send on a new connection")
	c.Close()
	if r.err != nil || r.n != count {
		t.Fatalf("Send on a new connection = %d, %v; want %d, nil", r.n, r.err, count)
	}
	if i := firstDiff(await(t, got, "the new peer's bytes"), data[off:off+count]); i >= 0 {
		t.Fatalf("on a new connection the peer's bytes differ from the range at byte %d", i)
	}
	checkReleased(t, s)
}

// checkNoLeaks fails t if descriptors or goroutines that did not exist when
// it was called are left when t ends, after the cleanups registered later
// (connections, files, Senders) have run.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	before := faultFDs(t)
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		// Goroutines first: a connection's descriptor closes when the last
		// goroutine using it lets go.
		if err := goleak.Find(ignore); err != nil {
			t.Errorf("goroutines left: %v", err)
		}
		for fd, target := range faultFDs(t) {
			if _, ok := before[fd]; !ok {
				t.Errorf("descriptor %d left open: %s", fd, target)
			}
		}
	})
}

func faultFDs(t testing.TB) map[int]string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := map[int]string{}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // the descriptor of ReadDir itself, gone by now
		}
		fds[fd] = target
	}
	return fds
}

// faultFile writes data to a new file and returns it open for reading, and
// its path.
func faultFile(t testing.TB, data []byte) (*os.File, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, path
}

// queued is the number of bytes written to the connection a→b that b has
// not read: those a's socket has not had acknowledged (SIOCOUTQ) and those
// waiting in b's (SIOCINQ).
func queued(t testing.TB, a, b *net.TCPConn) int {
	t.Helper()
	ioctl := func(c *net.TCPConn, req uint) int {
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var n int
		var ierr error
		if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), req) }); err != nil {
			t.Fatal(err)
		}
		if ierr != nil {
			t.Fatal(os.NewSyscallError("ioctl", ierr))
		}
		return n
	}
	return ioctl(a, unix.SIOCOUTQ) + ioctl(b, unix.SIOCINQ)
}

// TestFaultPeer: the peer resets the connection, closes it, or stops reading
// in the middle of a send. Send returns: an error matching ECONNRESET or
// EPIPE for the first two, having reported at least the bytes the peer read;
// context.DeadlineExceeded at the deadline for the third, having reported
// exactly the bytes the peer then receives. Every notification is reaped and
// every buffer is back, and the same Sender then serves another connection
// byte-exact.
func TestFaultPeer(t *testing.T) {
	f, data := tempFile(t, faultSize)
	const peerRead = 1 << 20 // what the peer reads before the fault
	for _, m := range faultMethods() {
		t.Run(string(m), func(t *testing.T) {
			for _, fault := range []string{"reset", "close", "stall"} {
				t.Run(fault, func(t *testing.T) {
					checkNoLeaks(t)
					s := newSender(t, sendfile2.Config{Method: m})
					// A small window: most of the range waits in the sender
					// when the fault comes.
					a, b := smallWindowPair(t)
					if fault == "stall" {
						faultStall(t, s, a, b, f, data)
					} else {
						first := readPrefix(b, peerRead)
						res := goSend(context.Background(), s, a, f, 0, faultSize)
						await(t, first, "the peer's first bytes")
						if fault == "reset" {
							b.SetLinger(0) // close sends RST at once
						}
						// A plain close with bytes still unread also
						// answers with RST (RFC 2525), and the segments
						// that arrive after it get one.
						b.Close()
						r := await(t, res, "Send to a peer that went away")
						if !errors.Is(r.err, syscall.ECONNRESET) && !errors.Is(r.err, syscall.EPIPE) {
							t.Fatalf("Send = %d, %v; want an error matching ECONNRESET or EPIPE", r.n, r.err)
						}
						if r.n < peerRead || r.n >= faultSize {
							t.Errorf("Send reported %d bytes sent; the peer read %d of %d", r.n, peerRead, faultSize)
						}
						checkReleased(t, s)
						a.Close()
					}
					checkServes(t, s, f, data)
				})
			}
		})
	}
}

// faultStall: the peer never reads; Send ends at its deadline. The methods
// that pin the file's pages wait for the notifications of what they queued,
// which come only when the peer reads: the peer starts reading once the
// deadline has passed. The others return on their own.
func faultStall(t *testing.T, s *sendfile2.Sender, a, b *net.TCPConn, f *os.File, data []byte) {
	m := s.Method()
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(200*time.Millisecond))
	defer cancel()
	res := goSend(ctx, s, a, f, 0, faultSize)
	var rest <-chan []byte
	if pinsFile(m) {
		<-ctx.Done()
		rest = receive(b)
	}
	r := await(t, res, "Send at its deadline")
	if rest == nil {
		rest = receive(b)
	}
	if !errors.Is(r.err, context.DeadlineExceeded) || r.n >= faultSize {
		t.Fatalf("Send = %d, %v; want fewer than %d bytes and context.DeadlineExceeded", r.n, r.err, faultSize)
	}
	if m != sendfile2.URing { // URing's buffers stay parked until the peer reads
		checkReleased(t, s)
	}
	a.Close()
	checkPrefix(t, await(t, rest, "the peer's bytes"), data, r.n)
	waitReleased(t, s)
}

// TestFaultFile: the file changes in the middle of a send. Truncated: Send
// returns io.ErrUnexpectedEOF, never SIGBUS, and reports exactly the bytes
// the peer got, the start of the range (up to the new end, for the methods
// that send from the file's pages). Extended: exactly the requested range is
// sent. Replaced by a rename over its path: the open descriptor's bytes are
// sent.
func TestFaultFile(t *testing.T) {
	_, data := tempFile(t, faultSize)
	const peerRead = 1 << 20 // what the peer reads before the change
	// The new size after truncation, past what can be in flight when the
	// peer has read peerRead: the receive window (a few KiB), the sender's
	// socket buffer (SO_SNDBUF 256 KiB, doubled by the kernel), and what the
	// engines pin (8 chunks of 256 KiB, or 32 calls of 64 KiB). So the
	// truncation takes away pages not sent yet, also of the mapping that
	// uring-mmap, msgzc and copy send from. A multiple of the chunk size, so
	// that every method can send exactly up to it. (At a size inside a page,
	// the methods that send from a mapping also send, and count, the zeros
	// that the mapping shows from the new end to the end of that page.)
	const newSize = 6 << 20
	for _, m := range faultMethods() {
		t.Run(string(m), func(t *testing.T) {
			for _, change := range []string{"truncated", "extended", "replaced"} {
				t.Run(change, func(t *testing.T) {
					checkNoLeaks(t)
					s := newSender(t, sendfile2.Config{Method: m})
					f, path := faultFile(t, data)
					a, b := smallWindowPair(t)
					if err := a.SetWriteBuffer(256 << 10); err != nil {
						t.Fatal(err)
					}
					off, count := int64(0), int64(faultSize)
					if change == "extended" {
						off, count = 12345, faultSize-12345-4321
					}
					first := readPrefix(b, peerRead)
					res := goSend(context.Background(), s, a, f, off, count)
					head := await(t, first, "the peer's first bytes")
					switch change {
					case "truncated":
						if err := os.Truncate(path, newSize); err != nil {
							t.Fatal(err)
						}
					case "extended":
						w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
						if err != nil {
							t.Fatal(err)
						}
						_, err = w.Write(bytes.Repeat([]byte{0xee}, 2<<20))
						w.Close()
						if err != nil {
							t.Fatal(err)
						}
					case "replaced":
						other := filepath.Join(filepath.Dir(path), "other")
						if err := os.WriteFile(other, bytes.Repeat([]byte{0xee}, faultSize), 0o644); err != nil {
							t.Fatal(err)
						}
						if err := os.Rename(other, path); err != nil {
							t.Fatal(err)
						}
					}
					b.SetReadBuffer(4 << 20) // the rest goes faster
					rest := receive(b)
					r := await(t, res, "Send of a file that changed")
					checkReleased(t, s)
					a.Close()
					got := append(head, await(t, rest, "the peer's bytes")...)
					want := data[off : off+count]
					if change != "truncated" {
						if r.err != nil || r.n != count {
							t.Fatalf("Send = %d, %v; want %d, nil", r.n, r.err, count)
						}
						if len(got) != len(want) {
							t.Fatalf("the peer received %d bytes, want the %d of the range", len(got), len(want))
						}
						if i := firstDiff(got, want); i >= 0 {
							t.Fatalf("the peer's bytes differ from the range at byte %d", i)
						}
						return
					}
					if !errors.Is(r.err, io.ErrUnexpectedEOF) {
						t.Fatalf("Send = %d, %v; want an error matching io.ErrUnexpectedEOF", r.n, r.err)
					}
					// The methods that send from the file's pages send up to
					// its new end, where the pages stop. URing sends from
					// its buffers: it stops at the first read that finds the
					// end, and chunks read but not yet submitted stay unsent.
					if r.n < peerRead || r.n >= count || s.Method() != sendfile2.URing && r.n != newSize {
						t.Errorf("Send reported %d bytes sent; the peer had read %d when the file shrank to %d bytes", r.n, peerRead, newSize)
					}
					checkPrefix(t, got, want, r.n)
				})
			}
		})
	}
}

// TestFaultCancel: the context ends at each stage of a send.
//
//   - before: already cancelled, or past its deadline, or cancelled with a
//     cause: nothing is sent and Send returns that error.
//   - sending: cancelled while reads and sends are in flight (the peer reads
//     on): Send returns context.Canceled, and the peer received the start
//     of the range, exactly as many bytes as Send reported.
//   - notifying: cancelled when every byte has been queued in the socket and
//     the peer, holding back, has acknowledged few: the zero-copy methods
//     wait for notifications then. When Send returns the file is overwritten,
//     and only then does the peer read: it must get the original bytes. The
//     unsafe baselines must show the corruption.
func TestFaultCancel(t *testing.T) {
	f, data := tempFile(t, faultSize)
	for _, m := range faultMethods() {
		t.Run(string(m), func(t *testing.T) {
			t.Run("before", func(t *testing.T) {
				checkNoLeaks(t)
				s := newSender(t, sendfile2.Config{Method: m})
				errCause := errors.New("the caller gave up")
				contexts := []struct {
					name string
					ctx  func() context.Context
					want error
				}{
					{"cancelled", func() context.Context {
						ctx, cancel := context.WithCancel(context.Background())
						cancel()
						return ctx
					}, context.Canceled},
					{"past deadline", func() context.Context {
						ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
						t.Cleanup(cancel)
						return ctx
					}, context.DeadlineExceeded},
					{"cause", func() context.Context {
						ctx, cancel := context.WithCancelCause(context.Background())
						cancel(errCause)
						return ctx
					}, errCause},
				}
				for _, c := range contexts {
					a, b := tcpPair(t)
					got := receive(b)
					r := await(t, goSend(c.ctx(), s, a, f, 0, faultSize), "Send with a context already done")
					a.Close()
					if r.n != 0 || !errors.Is(r.err, c.want) {
						t.Errorf("%s: Send = %d, %v; want 0 and an error matching %v", c.name, r.n, r.err, c.want)
					}
					if n := len(await(t, got, "the peer's bytes")); n != 0 {
						t.Errorf("%s: the peer received %d bytes", c.name, n)
					}
					checkReleased(t, s)
				}
				for _, ms := range s.Stats().Methods {
					if ms.Bytes != 0 || ms.ZeroCopyBytes != 0 || ms.CopiedBytes != 0 {
						t.Errorf("stats after sends that were cancelled before they began: %+v", ms)
					}
				}
			})
			t.Run("sending", func(t *testing.T) {
				checkNoLeaks(t)
				s := newSender(t, sendfile2.Config{Method: m})
				a, b := smallWindowPair(t)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				first := readPrefix(b, 512<<10)
				res := goSend(ctx, s, a, f, 0, faultSize)
				head := await(t, first, "the peer's first bytes")
				rest := receive(b)
				cancel()
				r := await(t, res, "Send cancelled in flight")
				if !errors.Is(r.err, context.Canceled) || r.n >= faultSize {
					t.Fatalf("Send = %d, %v; want fewer than %d bytes and context.Canceled", r.n, r.err, faultSize)
				}
				if s.Method() != sendfile2.URing { // URing's buffers stay parked until the peer reads
					checkReleased(t, s)
				}
				a.Close()
				checkPrefix(t, append(head, await(t, rest, "the peer's bytes")...), data, r.n)
				waitReleased(t, s)
			})
			t.Run("notifying", func(t *testing.T) {
				checkNoLeaks(t)
				faultCancelNotifying(t, m)
			})
		})
	}
}

// faultCancelNotifying is TestFaultCancel's last stage. The Sender has one
// buffer, of the whole range, which the cancelled URing send leaves parked
// until the peer reads: a send on another connection, started before that,
// must do without it (copy, for want of a buffer) rather than fill it while
// the kernel still sends from it.
func faultCancelNotifying(t *testing.T, m sendfile2.Method) {
	const size = 1 << 20 // fits in the sender's socket buffer, and in its one buffer
	s := newSender(t, sendfile2.Config{Method: m, Buffers: 1, BufferSize: size})
	_, data := tempFile(t, size)
	f, path := faultFile(t, data)
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	changed := bytes.Repeat([]byte{0xee}, size)
	overwrite := func() {
		if _, err := w.WriteAt(changed, 0); err != nil {
			t.Fatal(err)
		}
	}
	a, b := smallWindowPair(t)
	if err := a.SetWriteBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := goSend(ctx, s, a, f, 0, size)
	// Wait until every byte is queued (or Send has returned: the copying
	// methods are done then).
	var r sendResult
	returned := false
	for deadline := time.Now().Add(hangBound); !returned && queued(t, a, b) < size; time.Sleep(time.Millisecond) {
		select {
		case r = <-res:
			returned = true
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v only %d of %d bytes queued", hangBound, queued(t, a, b), size)
		}
	}
	cancel()
	if !returned {
		// A zero-copy send waits for its notifications, which come when the
		// peer reads. Give a wrong return time to show: a false pass at
		// worst, never a false failure.
		select {
		case r = <-res:
			returned = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	var other <-chan error
	start := func() {
		// Send returned: the caller may change the file, and the Sender
		// serves other connections with its buffers.
		overwrite()
		c, d := tcpPair(t)
		got := receive(d)
		done := make(chan error, 1)
		go func() {
			n, err := s.Send(context.Background(), c, f, 0, size)
			c.Close()
			switch {
			case err != nil || n != size:
				done <- fmt.Errorf("Send on another connection = %d, %v", n, err)
			case !bytes.Equal(<-got, changed):
				done <- errors.New("another connection received bytes that are not the file's")
			default:
				done <- nil
			}
		}()
		other = done
	}
	if returned {
		start()
	}
	rest := receive(b)
	if !returned {
		r = await(t, res, "Send cancelled while waiting for notifications")
		start()
	}
	a.Close()
	got := await(t, rest, "the peer's bytes")
	if !m.Safe() {
		if r.err != nil || r.n != size {
			t.Fatalf("Send = %d, %v; want %d, nil", r.n, r.err, size)
		}
		if bytes.Equal(got, data) {
			t.Errorf("%s delivered the original bytes: the held peer no longer shows the baseline unsafe, so this test lost its power", m)
		}
		if err := await(t, other, "the send on another connection"); err != nil {
			t.Error(err)
		}
		return
	}
	switch {
	case s.Method() == sendfile2.Copy && r.err == nil:
	case !errors.Is(r.err, context.Canceled):
		t.Errorf("Send = %d, %v; want an error matching context.Canceled", r.n, r.err)
	}
	if r.n != size {
		t.Errorf("Send reported %d bytes sent; all %d were queued", r.n, size)
	}
	if i := firstDiff(got, data); i >= 0 {
		t.Errorf("the peer received %d bytes that differ from the file's at byte %d: the file was changed after Send returned", len(got), i)
	}
	if err := await(t, other, "the send on another connection"); err != nil {
		t.Error(err)
	}
	waitReleased(t, s)
}

// TestFaultClose: the Sender or the destination goes away in the middle of
// sends.
//
//   - sender: Close while 32 sends are in flight on as many connections,
//     held back by peers that do not read (with URing, most of them wait for
//     a buffer): every send returns an error matching ErrClosed, having
//     reported exactly what its peer then receives; Close returns with every
//     buffer back; a send after Close fails with ErrClosed; nothing leaks.
//   - dst: another goroutine closes the destination conn during a send. Send
//     uses a duplicate of the descriptor and does not observe dst's Close
//     (doc.go, Sender.Send): it completes, and the peer gets the whole range.
func TestFaultClose(t *testing.T) {
	f, data := tempFile(t, faultSize)
	for _, m := range faultMethods() {
		t.Run(string(m), func(t *testing.T) {
			t.Run("sender", func(t *testing.T) {
				checkNoLeaks(t)
				faultCloseSender(t, m, f, data)
			})
			t.Run("dst", func(t *testing.T) {
				checkNoLeaks(t)
				s := newSender(t, sendfile2.Config{Method: m})
				a, b := smallWindowPair(t)
				first := readPrefix(b, 1<<20)
				res := goSend(context.Background(), s, a, f, 0, faultSize)
				head := await(t, first, "the peer's first bytes")
				if err := a.Close(); err != nil {
					t.Fatal(err)
				}
				rest := receive(b)
				r := await(t, res, "Send whose dst was closed")
				if r.err != nil || r.n != faultSize {
					t.Fatalf("Send = %d, %v; want %d, nil", r.n, r.err, faultSize)
				}
				checkReleased(t, s)
				got := append(head, await(t, rest, "the peer's bytes")...)
				if len(got) != len(data) {
					t.Fatalf("the peer received %d bytes, want %d", len(got), len(data))
				}
				if i := firstDiff(got, data); i >= 0 {
					t.Fatalf("the peer's bytes differ from the file's at byte %d", i)
				}
			})
		})
	}
}

func faultCloseSender(t *testing.T, m sendfile2.Method, f *os.File, data []byte) {
	const conns = 32
	s := newSender(t, sendfile2.Config{Method: m})
	type conn struct {
		a, b *net.TCPConn
		res  <-chan sendResult
		rest <-chan []byte
	}
	cs := make([]conn, conns)
	for i := range cs {
		cs[i].a, cs[i].b = tcpPair(t)
		if err := cs[i].a.SetWriteBuffer(256 << 10); err != nil { // less to drain
			t.Fatal(err)
		}
		cs[i].res = goSend(context.Background(), s, cs[i].a, f, 0, faultSize)
	}
	// Every send has begun, and the sockets hold data: all that could
	// start sending has.
	for deadline := time.Now().Add(hangBound); ; time.Sleep(time.Millisecond) {
		started := 0
		for _, c := range cs {
			if queued(t, c.a, c.b) > 0 {
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
			cs[i].rest = receive(cs[i].b)
		}
	}
	if pinsFile(s.Method()) {
		read() // they return once what they queued is acknowledged
	}
	rs := make([]sendResult, conns)
	for i, c := range cs {
		rs[i] = await(t, c.res, "a send interrupted by Close")
		if !errors.Is(rs[i].err, sendfile2.ErrClosed) || rs[i].n >= faultSize {
			t.Errorf("send %d interrupted by Close = %d, %v; want fewer than %d bytes and ErrClosed", i, rs[i].n, rs[i].err, faultSize)
		}
	}
	if !pinsFile(s.Method()) {
		read() // URing's parked buffers come back, and Close returns, as the peers read
	}
	for i, c := range cs {
		c.a.Close()
		checkPrefix(t, await(t, c.rest, "a peer's bytes"), data, rs[i].n)
	}
	if err := await(t, closed, "Close"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := sendfile2.BuffersOut(s); n != 0 {
		t.Errorf("%d registered buffers out after Close", n)
	}
	checkNotified(t, s)
	a, b := tcpPair(t)
	got := receive(b)
	r := await(t, goSend(context.Background(), s, a, f, 0, faultSize), "Send after Close")
	a.Close()
	if r.n != 0 || !errors.Is(r.err, sendfile2.ErrClosed) {
		t.Errorf("Send after Close = %d, %v; want 0, ErrClosed", r.n, r.err)
	}
	if n := len(await(t, got, "the peer's bytes")); n != 0 {
		t.Errorf("the peer of a send after Close received %d bytes", n)
	}
}
