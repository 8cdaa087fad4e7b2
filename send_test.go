package sendfile2_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/internal/testutil"
)

// newSender returns a Sender for m, closed at the end of the test, after a
// check that every registered buffer came back.
func newSender(t testing.TB, cfg sendfile2.Config) *sendfile2.Sender {
	t.Helper()
	return newTunedSender(t, cfg, nil)
}

// newTunedSender is newSender with the engines' thresholds that tune sets.
func newTunedSender(t testing.TB, cfg sendfile2.Config, tune func(*sendfile2.Tuning)) *sendfile2.Sender {
	t.Helper()
	s, err := sendfile2.NewSenderTuned(cfg, tune)
	testutil.RequireSupported(t, err)
	if err != nil {
		t.Fatalf("NewSender(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if n := sendfile2.BuffersOut(s); n != 0 {
			t.Errorf("%d registered buffers not returned after Close", n)
		}
	})
	return s
}

// tempFile writes n random bytes to a new file and returns it open.
func tempFile(t testing.TB, n int) (*os.File, []byte) {
	t.Helper()
	data := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16)})
	r.Read(data)
	path := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, data
}

// tcpPair returns a connected pair over loopback: the sending end and the
// receiving end.
func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	return listenPair(t, &net.ListenConfig{})
}

// listenPair is tcpPair with a listener made by lc.
func listenPair(t testing.TB, lc *net.ListenConfig) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// receive reads everything from c until EOF in the background.
func receive(c net.Conn) <-chan []byte {
	out := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c)
		out <- b
	}()
	return out
}

var contentSizes = []int{0, 1, 4095, 4096, 4097, 64<<10 + 1, 1<<20 + 3, 64 << 20}

// sendOver sends with send on a new loopback connection, whose peer reads
// everything, and fails t unless send reports len(want) bytes and the peer
// got exactly want.
func sendOver(t testing.TB, want []byte, send func(a *net.TCPConn) (int64, error)) {
	t.Helper()
	a, b := tcpPair(t)
	got := receive(b)
	if n, err := send(a); err != nil || n != int64(len(want)) {
		t.Fatalf("send = %d, %v", n, err)
	}
	a.Close()
	if !bytes.Equal(<-got, want) {
		t.Fatal("wrong bytes")
	}
}

// TestContent: every method delivers exactly the bytes of the range, for
// sizes from 0 to 64 MiB and odd offsets.
func TestContent(t *testing.T) {
	for _, m := range sendfile2.Methods() {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			for _, size := range contentSizes {
				for _, off := range []int{0, 1, 4095, 12345} {
					if off > size && size != 0 {
						continue
					}
					if size == 0 && off != 0 {
						continue
					}
					t.Run(fmt.Sprintf("size=%d/off=%d", size, off), func(t *testing.T) {
						f, data := tempFile(t, size+off)
						a, b := tcpPair(t)
						got := receive(b)
						n, err := s.Send(context.Background(), a, f, int64(off), int64(size))
						if err != nil || n != int64(size) {
							t.Fatalf("Send = %d, %v; want %d", n, err, size)
						}
						a.Close()
						if r := <-got; !bytes.Equal(r, data[off:off+size]) {
							t.Fatalf("received %d bytes, not the %d of the range", len(r), size)
						}
					})
				}
			}
			st := s.Stats()
			if ms := st.Methods[m]; ms.Errors != 0 || ms.Bytes == 0 {
				t.Errorf("stats for %s = %+v", m, ms)
			}
		})
	}
}

// TestUnixSocket: zero-copy methods fall back to copying on a unix stream
// socket, and say so.
func TestUnixSocket(t *testing.T) {
	for _, m := range []sendfile2.Method{sendfile2.URing, sendfile2.URingMmap, sendfile2.MsgZC, sendfile2.Copy} {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			fa, fb := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
			ca, _ := net.FileConn(fa)
			cb, _ := net.FileConn(fb)
			fa.Close()
			fb.Close()
			defer cb.Close()
			f, data := tempFile(t, 3<<20)
			got := receive(cb)
			n, err := s.Send(context.Background(), ca.(*net.UnixConn), f, 0, int64(len(data)))
			ca.Close()
			if err != nil || n != int64(len(data)) {
				t.Fatalf("Send = %d, %v", n, err)
			}
			if !bytes.Equal(<-got, data) {
				t.Fatal("wrong bytes")
			}
			if m != sendfile2.Copy && s.Stats().Fallbacks == 0 {
				t.Error("no fallback counted")
			}
		})
	}
}

// TestConcurrent: many goroutines on one Sender, each on its own connection,
// all get their own bytes.
func TestConcurrent(t *testing.T) {
	for _, m := range []sendfile2.Method{sendfile2.URing, sendfile2.URingMmap, sendfile2.MsgZC, sendfile2.Copy} {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m, Buffers: 8})
			f, data := tempFile(t, 2<<20)
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for i := range 64 {
				wg.Go(func() {
					a, b := tcpPair(t)
					got := receive(b)
					off := int64(i * 4099 % len(data))
					count := int64(len(data)) - off
					n, err := s.Send(context.Background(), a, f, off, count)
					a.Close()
					if err != nil || n != count {
						errs <- fmt.Errorf("goroutine %d: Send = %d, %v", i, n, err)
						return
					}
					if !bytes.Equal(<-got, data[off:]) {
						errs <- fmt.Errorf("goroutine %d: wrong bytes", i)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	s := newSender(t, sendfile2.Config{Method: sendfile2.Copy})
	f, _ := tempFile(t, 1000)
	a, _ := tcpPair(t)
	wrong := newWrongEnds(t, t.TempDir())
	dir, pr, udp, uf := wrong.dir, wrong.pipeR, wrong.udp, wrong.unconnected

	tests := []struct {
		name       string
		dst        syscall.Conn
		src        *os.File
		off, count int64
		want       error
	}{
		{"negative offset", a, f, -1, 10, sendfile2.ErrRange},
		{"negative count past EOF", a, f, 1001, -1, sendfile2.ErrRange},
		{"past EOF", a, f, 900, 101, sendfile2.ErrRange},
		{"offset past EOF", a, f, 1001, 0, sendfile2.ErrRange},
		{"directory", a, dir, 0, 1, syscall.EISDIR},
		{"pipe", a, pr, 0, 1, syscall.ESPIPE},
		{"file as dst", f, f, 0, 1, syscall.ENOTSOCK},
		{"udp dst", udp, f, 0, 1, syscall.EPROTOTYPE},
		{"unconnected dst", uf, f, 0, 1, syscall.ENOTCONN},
		{"nil src", a, nil, 0, 1, os.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := s.Send(context.Background(), tt.dst, tt.src, tt.off, tt.count)
			if n != 0 || !errors.Is(err, tt.want) {
				t.Fatalf("Send = %d, %v; want 0, an error matching %v", n, err, tt.want)
			}
		})
	}
	if _, err := sendfile2.NewSender(sendfile2.Config{Method: "bogus"}); err == nil {
		t.Error("NewSender accepted method bogus")
	}
	if _, err := sendfile2.NewSender(sendfile2.Config{BufferSize: 1000}); err == nil {
		t.Error("NewSender accepted a 1000-byte buffer")
	}
}

// TestSendAfterClose: a closed Sender refuses sends with ErrClosed.
func TestSendAfterClose(t *testing.T) {
	for _, m := range []sendfile2.Method{sendfile2.Auto, sendfile2.Copy} {
		s, err := sendfile2.NewSender(sendfile2.Config{Method: m})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		f, _ := tempFile(t, 10)
		a, _ := tcpPair(t)
		if _, err := s.Send(context.Background(), a, f, 0, 10); !errors.Is(err, sendfile2.ErrClosed) {
			t.Errorf("%s: Send after Close = %v, want ErrClosed", m, err)
		}
	}
}

// TestCancel: a send to a peer that does not read stops when ctx ends, and
// the Sender still serves other sends afterwards.
func TestCancel(t *testing.T) {
	for _, m := range []sendfile2.Method{sendfile2.URing, sendfile2.URingMmap, sendfile2.MsgZC, sendfile2.Copy, sendfile2.Sendfile, sendfile2.Splice} {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			f, data := tempFile(t, 32<<20)
			a, b := tcpPair(t)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			done := make(chan struct{})
			var n int64
			var err error
			go func() {
				n, err = s.Send(ctx, a, f, 0, int64(len(data)))
				close(done)
			}()
			if m == sendfile2.URingMmap || m == sendfile2.MsgZC {
				// Sending from the file's own pages, it must wait for the
				// notifications of what it queued, which come only when the
				// peer acknowledges: not before the peer reads.
				<-ctx.Done()
				select {
				case <-done:
					t.Fatalf("%s returned while the kernel still held the file's pages", m)
				case <-time.After(200 * time.Millisecond):
				}
				go io.Copy(io.Discard, b)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Send did not return within 10s of its deadline")
			}
			if !errors.Is(err, context.DeadlineExceeded) || n >= int64(len(data)) {
				t.Fatalf("Send = %d, %v; want fewer bytes and context.DeadlineExceeded", n, err)
			}
			// The Sender keeps working.
			c, d := tcpPair(t)
			got := receive(d)
			if n, err := s.Send(context.Background(), c, f, 0, 100000); err != nil || n != 100000 {
				t.Fatalf("Send after a cancelled one = %d, %v", n, err)
			}
			c.Close()
			if !bytes.Equal(<-got, data[:100000]) {
				t.Fatal("wrong bytes after a cancelled send")
			}
			go io.Copy(io.Discard, b) // let parked buffers come back before Close
		})
	}
}

// TestCloseWithSendsInFlight: Close cancels sends in flight, which return
// ErrClosed, and waits for their notifications.
func TestCloseWithSendsInFlight(t *testing.T) {
	for _, m := range []sendfile2.Method{sendfile2.URing, sendfile2.Copy} {
		t.Run(string(m), func(t *testing.T) {
			s, err := sendfile2.NewSender(sendfile2.Config{Method: m})
			if errors.Is(err, sendfile2.ErrNotSupported) {
				testutil.RequireFeature(t, "io_uring with SEND_ZC", "6.0", false, err)
			}
			if err != nil {
				t.Fatal(err)
			}
			f, data := tempFile(t, 16<<20)
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			var readers []net.Conn
			for range 8 {
				a, b := tcpPair(t)
				readers = append(readers, b)
				wg.Go(func() {
					_, err := s.Send(context.Background(), a, f, 0, int64(len(data)))
					errs <- err
				})
			}
			time.Sleep(50 * time.Millisecond) // let the sends fill the sockets
			closed := make(chan error, 1)
			go func() { closed <- s.Close() }()
			wg.Wait()
			close(errs)
			for err := range errs {
				if !errors.Is(err, sendfile2.ErrClosed) {
					t.Errorf("send interrupted by Close = %v, want ErrClosed", err)
				}
			}
			// Notifications of data queued on loopback come when the peers read.
			for _, b := range readers {
				go io.Copy(io.Discard, b)
			}
			select {
			case err := <-closed:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Close did not return")
			}
			if n := sendfile2.BuffersOut(s); n != 0 {
				t.Fatalf("%d buffers out after Close", n)
			}
		})
	}
}

// TestTruncatedDuringSend: a file that shrinks under a send gives the bytes
// sent and io.ErrUnexpectedEOF, never a signal.
func TestTruncatedDuringSend(t *testing.T) {
	for _, m := range []sendfile2.Method{sendfile2.URing, sendfile2.URingMmap, sendfile2.MsgZC, sendfile2.Copy} {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			f, data := tempFile(t, 64<<20)
			a, b := tcpPair(t)
			w, err := os.OpenFile(f.Name(), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			// The peer reads slowly at first, so the send is under way when
			// the file shrinks.
			go func() {
				buf := make([]byte, 1<<20)
				io.ReadFull(b, buf)
				w.Truncate(2 << 20)
				io.Copy(io.Discard, b)
			}()
			n, err := s.Send(context.Background(), a, f, 0, int64(len(data)))
			if !errors.Is(err, io.ErrUnexpectedEOF) || n >= int64(len(data)) {
				t.Fatalf("Send = %d, %v; want fewer bytes and io.ErrUnexpectedEOF", n, err)
			}
		})
	}
}

func TestPackageSend(t *testing.T) {
	f, data := tempFile(t, 300000)
	a, b := tcpPair(t)
	got := receive(b)
	n, err := sendfile2.Send(context.Background(), a, f, 5, int64(len(data)-5))
	a.Close()
	if err != nil || n != int64(len(data)-5) {
		t.Fatalf("Send = %d, %v", n, err)
	}
	if !bytes.Equal(<-got, data[5:]) {
		t.Fatal("wrong bytes")
	}
}

// smallWindowPair is tcpPair with a receive buffer of a few KiB: most of a
// send waits in the sender's queue, still referencing its buffers or pages,
// until the receiver reads.
func smallWindowPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	return listenPair(t, &net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
	}})
}

// TestBufferReuse: with two small registered buffers and a peer that takes
// the data slowly, every buffer is lent again many times while the kernel may
// still send from it. A buffer reused before its notification would change
// bytes still queued for the peer.
func TestBufferReuse(t *testing.T) {
	for _, m := range []sendfile2.Method{sendfile2.URing, sendfile2.URingMmap} {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m, Buffers: 2, BufferSize: 64 << 10})
			f, data := tempFile(t, 4<<20)
			a, b := smallWindowPair(t)
			got := receive(b)
			n, err := s.Send(context.Background(), a, f, 0, int64(len(data)))
			a.Close()
			if err != nil || n != int64(len(data)) {
				t.Fatalf("Send = %d, %v", n, err)
			}
			if r := <-got; !bytes.Equal(r, data) {
				t.Fatalf("received bytes differ from the file (%d bytes)", len(r))
			}
		})
	}
}

// residentPages counts the pages of f that are in the page cache (mincore(2)).
func residentPages(t *testing.T, f *os.File, size int) int {
	t.Helper()
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	vec := make([]byte, (size+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&mem[0])), uintptr(size), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(os.NewSyscallError("mincore", errno))
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// TestDontCache: with Config.DontCache, the uring method's reads leave the
// pages they brought in out of the page cache (RWF_DONTCACHE, Linux 6.14);
// without it they stay.
func TestDontCache(t *testing.T) {
	const size = 8 << 20
	pages := size / os.Getpagesize()
	for _, dontcache := range []bool{false, true} {
		t.Run(fmt.Sprint("dontcache=", dontcache), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: sendfile2.URing, DontCache: dontcache})
			f, data := tempFile(t, size)
			// Write back and evict the file, so that the send's reads are the
			// ones that bring its pages in.
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
				t.Fatal(err)
			}
			if n := residentPages(t, f, size); n > pages/10 {
				t.Skipf("could not evict the file: %d of %d pages resident", n, pages)
			}
			sendOver(t, data, func(a *net.TCPConn) (int64, error) {
				return s.Send(context.Background(), a, f, 0, size)
			})
			resident := residentPages(t, f, size)
			t.Logf("%d of %d pages resident after the send", resident, pages)
			if !dontcache {
				if resident < pages/2 {
					t.Errorf("without DontCache only %d of %d pages stayed cached", resident, pages)
				}
				return
			}
			supported := s.Stats().Fallbacks == 0
			testutil.RequireFeature(t, "RWF_DONTCACHE on this file system", "6.14", supported, nil)
			if resident > pages/10 {
				t.Errorf("with DontCache %d of %d pages stayed cached", resident, pages)
			}
		})
	}
}

// wrongEnds are the descriptors that a send or receive must refuse as either
// end: a directory, a pipe, a UDP socket, and a TCP socket that is not
// connected. They are closed at the end of the test.
type wrongEnds struct {
	dir          *os.File
	pipeR, pipeW *os.File
	udp          *net.UDPConn
	unconnected  *os.File
}

func newWrongEnds(t testing.TB, dir string) wrongEnds {
	t.Helper()
	var w wrongEnds
	var err error
	if w.dir, err = os.Open(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.dir.Close() })
	if w.pipeR, w.pipeW, err = os.Pipe(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.pipeR.Close(); w.pipeW.Close() })
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.udp = udp.(*net.UDPConn)
	t.Cleanup(func() { w.udp.Close() })
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.unconnected = os.NewFile(uintptr(fd), "unconnected")
	t.Cleanup(func() { w.unconnected.Close() })
	return w
}

// TestSendContext: a send's context ends when the caller's does, with its
// cause, or when the Sender closes, with ErrClosed, whether or not anything
// waited on it first.
func TestSendContext(t *testing.T) {
	errMine := errors.New("mine")
	t.Run("caller", func(t *testing.T) {
		s := newSender(t, sendfile2.Config{Method: sendfile2.Copy})
		parent, cancel := context.WithCancelCause(context.Background())
		ctx, end := sendfile2.SendContext(s, parent)
		defer end()
		if ctx.Err() != nil {
			t.Fatalf("Err before any end = %v", ctx.Err())
		}
		cancel(errMine)
		if !errors.Is(ctx.Err(), context.Canceled) || !errors.Is(context.Cause(ctx), errMine) {
			t.Errorf("after the caller's cancel: Err %v, Cause %v", ctx.Err(), context.Cause(ctx))
		}
		select {
		case <-ctx.Done():
		default:
			t.Error("Done is open after the caller's cancel")
		}
	})
	for _, waited := range []bool{false, true} {
		t.Run(fmt.Sprintf("sender-closed/waited=%v", waited), func(t *testing.T) {
			s, err := sendfile2.NewSender(sendfile2.Config{Method: sendfile2.Copy})
			if err != nil {
				t.Fatal(err)
			}
			ctx, end := sendfile2.SendContext(s, context.Background())
			var done <-chan struct{}
			if waited {
				done = ctx.Done()
			}
			s.Close()
			if !errors.Is(ctx.Err(), context.Canceled) || !errors.Is(context.Cause(ctx), sendfile2.ErrClosed) {
				t.Errorf("after the Sender's Close: Err %v, Cause %v", ctx.Err(), context.Cause(ctx))
			}
			if !waited {
				done = ctx.Done()
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("Done is open after the Sender's Close")
			}
			end()
		})
	}
}
