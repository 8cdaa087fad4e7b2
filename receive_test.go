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

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2"
)

// receiveMethods are the methods with a receive path of their own.
var receiveMethods = []sendfile2.Method{sendfile2.URing, sendfile2.Copy, sendfile2.Splice}

// streamBytes returns n pseudo-random bytes, different for each seed.
func streamBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed, byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}).Read(b)
	return b
}

// dstFile creates a file holding pre, open for reading and writing.
func dstFile(t testing.TB, dir string, pre []byte) *os.File {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	f, err := os.OpenFile(filepath.Join(dir, "dst"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Write(pre); err != nil {
		t.Fatal(err)
	}
	return f
}

// peerSend writes data to c, then closes c, in the background.
func peerSend(c net.Conn, data []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		c.Close()
		done <- err
	}()
	return done
}

// contents reads the whole file at path.
func contents(t testing.TB, f *os.File) []byte {
	t.Helper()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkFile checks that f holds pre with want written over it at off, and
// nothing else. It compares in pieces: the race detector makes every large
// allocation slow.
func checkFile(t testing.TB, f *os.File, pre []byte, off int, want []byte) {
	t.Helper()
	head := pre[:min(off, len(pre))]
	var tail []byte
	if len(want) > 0 {
		head = append(bytes.Clone(head), make([]byte, off-len(head))...)
		if end := off + len(want); end < len(pre) {
			tail = pre[end:]
		}
	} else {
		head, want = pre, nil
	}
	exp := io.MultiReader(bytes.NewReader(head), bytes.NewReader(want), bytes.NewReader(tail))
	r, err := os.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a, b := make([]byte, 4<<20), make([]byte, 4<<20)
	region := func(pos int) string {
		switch {
		case pos < len(head):
			return fmt.Sprintf("before offset %d", off)
		case pos < len(head)+len(want):
			return fmt.Sprintf("at byte %d of the %d written", pos-len(head), len(want))
		}
		return fmt.Sprintf("after the %d bytes written at %d", len(want), off)
	}
	for pos := 0; ; {
		n, errA := io.ReadFull(r, a)
		m, _ := io.ReadFull(exp, b[:n])
		if m < n {
			t.Fatalf("file longer than the %d bytes expected", pos+m)
		}
		if i := firstDiff(a[:n], b[:n]); i >= 0 {
			t.Fatalf("file differs %s", region(pos+i))
		}
		pos += n
		if errA != nil {
			if k, _ := exp.Read(b[:1]); k > 0 {
				t.Fatalf("file holds %d bytes, fewer than expected (%s)", pos, region(pos))
			}
			return
		}
	}
}

// firstDiff is the index of the first byte where a and b differ, or -1.
func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// bigStream is the stream that TestReceiveContent sends prefixes of, made once.
var bigStream = sync.OnceValue(func() []byte { return streamBytes(256<<20+100, 1) })

// TestReceiveContent: each method writes exactly the bytes of the stream, at
// the offset, for sizes from 0 to 256 MiB, and leaves the rest of an
// existing file as it was. The peer sends 100 bytes more than asked for:
// they stay in the socket.
func TestReceiveContent(t *testing.T) {
	sizes := []int{0, 1, 4095, 1<<20 + 3, 64 << 20, 256 << 20}
	for _, m := range receiveMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			for _, size := range sizes {
				if size > 64<<20 && m == sendfile2.Splice {
					continue // a baseline: 64 MiB is enough
				}
				for _, off := range []int{0, 12345} {
					t.Run(fmt.Sprintf("size=%d/off=%d", size, off), func(t *testing.T) {
						stream := bigStream()[:size+100]
						pre := streamBytes(off+1000, 2)
						dst := dstFile(t, "", pre)
						a, b := tcpPair(t)
						sent := peerSend(a, stream)
						n, err := s.Receive(context.Background(), b, dst, int64(off), int64(size))
						if err != nil || n != int64(size) {
							t.Fatalf("Receive = %d, %v; want %d", n, err, size)
						}
						if err := <-sent; err != nil {
							t.Fatal(err)
						}
						rest, err := io.ReadAll(b)
						if err != nil || !bytes.Equal(rest, stream[size:]) {
							t.Fatalf("the socket holds %d bytes after Receive (%v), not the 100 past count", len(rest), err)
						}
						checkFile(t, dst, pre, off, stream[:size])
					})
				}
			}
			if st := s.Stats().Methods[m]; st.Receives == 0 || st.ReceiveErrors != 0 || st.Received == 0 {
				t.Errorf("stats for %s = %+v", m, st)
			}
		})
	}
}

// TestReceiveUntilEOF: with count < 0, Receive reads until the peer closes.
func TestReceiveUntilEOF(t *testing.T) {
	for _, m := range receiveMethods {
		for _, size := range []int{0, 1<<20 + 3, 16 << 20} {
			t.Run(fmt.Sprintf("%s/size=%d", m, size), func(t *testing.T) {
				s := newSender(t, sendfile2.Config{Method: m})
				stream := streamBytes(size, 3)
				dst := dstFile(t, "", nil)
				a, b := tcpPair(t)
				peerSend(a, stream)
				n, err := s.Receive(context.Background(), b, dst, 7, -1)
				if err != nil || n != int64(size) {
					t.Fatalf("Receive = %d, %v; want %d", n, err, size)
				}
				checkFile(t, dst, nil, 7, stream)
			})
		}
	}
}

// TestReceiveOtherMethods: the methods without a receive path of their own
// receive with Copy, and the stats say so.
func TestReceiveOtherMethods(t *testing.T) {
	for _, m := range []sendfile2.Method{sendfile2.URingMmap, sendfile2.MsgZC, sendfile2.Sendfile} {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			stream := streamBytes(300000, 4)
			dst := dstFile(t, "", nil)
			a, b := tcpPair(t)
			peerSend(a, stream)
			if n, err := s.Receive(context.Background(), b, dst, 0, int64(len(stream))); err != nil || n != int64(len(stream)) {
				t.Fatalf("Receive = %d, %v", n, err)
			}
			checkFile(t, dst, nil, 0, stream)
			want := sendfile2.Copy
			if st := s.Stats().Methods[want]; st.Receives != 1 || st.Received != int64(len(stream)) {
				t.Errorf("stats of %s = %+v, want one receive of %d bytes", want, st, len(stream))
			}
		})
	}
}

// TestReceiveShortStream: a peer that closes before count bytes gives
// io.ErrUnexpectedEOF and the exact count, and the file holds those bytes.
func TestReceiveShortStream(t *testing.T) {
	for _, m := range receiveMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			stream := streamBytes(1<<20+5, 5)
			dst := dstFile(t, "", nil)
			a, b := tcpPair(t)
			peerSend(a, stream)
			n, err := s.Receive(context.Background(), b, dst, 0, 4<<20)
			if !errors.Is(err, io.ErrUnexpectedEOF) || n != int64(len(stream)) {
				t.Fatalf("Receive = %d, %v; want %d, io.ErrUnexpectedEOF", n, err, len(stream))
			}
			checkFile(t, dst, nil, 0, stream)
			if st := s.Stats().Methods[m]; st.ReceiveErrors != 1 || st.Received != n {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

// TestReceiveReset: a peer that resets the connection gives an error, the
// exact count, and the file holds exactly the bytes counted.
func TestReceiveReset(t *testing.T) {
	for _, m := range receiveMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			stream := streamBytes(3<<20, 6)
			dst := dstFile(t, "", nil)
			a, b := tcpPair(t)
			go func() {
				a.Write(stream[:2<<20])
				time.Sleep(20 * time.Millisecond)
				a.SetLinger(0) // close sends RST
				a.Close()
			}()
			n, err := s.Receive(context.Background(), b, dst, 0, int64(len(stream)))
			if err == nil || n > 2<<20 {
				t.Fatalf("Receive = %d, %v; want at most %d bytes and an error", n, err, 2<<20)
			}
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("Receive error = %v, want ECONNRESET", err)
			}
			t.Logf("Receive = %d, %v", n, err)
			checkFile(t, dst, nil, 0, stream[:n])
		})
	}
}

// slowPeer writes stream to c in 4 KiB pieces every 2 ms until stop is
// closed or the stream is all sent.
func slowPeer(c net.Conn, stream []byte, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := 0; p < len(stream); p += 4096 {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if _, err := c.Write(stream[p:min(p+4096, len(stream))]); err != nil {
				return
			}
		}
	}()
	return done
}

// endOnceWritten calls end once f holds at least n bytes, unless done is
// closed first.
func endOnceWritten(f *os.File, n int64, done <-chan struct{}, end func()) {
	for {
		if fi, err := f.Stat(); err == nil && fi.Size() >= n {
			end()
			return
		}
		select {
		case <-done:
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// TestReceiveCancel: a receive from a slow peer stops when ctx ends (or the
// Sender closes) and returns the exact count; everything it took from the
// socket is in the file, so the stream goes on in the socket at that byte.
func TestReceiveCancel(t *testing.T) {
	for _, m := range receiveMethods {
		for _, how := range []string{"ctx", "close", "ctx-1MiB"} {
			t.Run(string(m)+"/"+how, func(t *testing.T) {
				s := newSender(t, sendfile2.Config{Method: m})
				stream := streamBytes(8<<20, 7)
				dst := dstFile(t, "", nil)
				a, b := tcpPair(t)
				stop := make(chan struct{})
				peer := slowPeer(a, stream, stop)
				defer func() { close(stop); <-peer }()
				// End the receive once part of the stream is in the file,
				// however slowly the machine runs (qemu without KVM).
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				end := cancel
				if how == "close" {
					end = func() { s.Close() }
				}
				received := make(chan struct{})
				defer close(received)
				go endOnceWritten(dst, 64<<10, received, end)
				start := time.Now()
				count := int64(len(stream))
				if how == "ctx-1MiB" {
					// Small enough for URing to link the writes after the
					// receives.
					count = 1 << 20
				}
				n, err := s.Receive(ctx, b, dst, 0, count)
				took := time.Since(start)
				want := context.Canceled
				if how == "close" {
					want = sendfile2.ErrClosed
				}
				if !errors.Is(err, want) || n == 0 || n >= count {
					t.Fatalf("Receive = %d, %v after %v; want part of the stream and %v", n, err, took, want)
				}
				if took > 5*time.Second {
					t.Errorf("Receive returned %v after it was cancelled", took)
				}
				checkFile(t, dst, nil, 0, stream[:n])
				// The next bytes in the socket follow the last one written.
				next := make([]byte, 8192)
				if _, err := io.ReadFull(b, next); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(next, stream[n:n+int64(len(next))]) {
					t.Fatalf("the socket does not resume at byte %d: bytes taken from it were lost", n)
				}
			})
		}
	}
}

// TestReceiveFullDisk: on a full file system, Receive returns ENOSPC and the
// exact count of the bytes written, and those bytes are right.
func TestReceiveFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	type variant struct {
		m         sendfile2.Method
		dontCache bool
	}
	for _, v := range []variant{{sendfile2.URing, false}, {sendfile2.URing, true}, {sendfile2.Copy, false}, {sendfile2.Splice, false}} {
		t.Run(fmt.Sprintf("%s/dontcache=%v", v.m, v.dontCache), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: v.m, DontCache: v.dontCache})
			stream := streamBytes(8<<20, 8)
			dst := dstFile(t, dir, nil)
			defer os.Remove(dst.Name())
			a, b := tcpPair(t)
			peerSend(a, stream)
			n, err := s.Receive(context.Background(), b, dst, 0, int64(len(stream)))
			t.Logf("Receive = %d, %v", n, err)
			if !errors.Is(err, syscall.ENOSPC) || n == 0 || n >= int64(len(stream)) {
				t.Fatalf("Receive = %d, %v; want part of the stream and ENOSPC", n, err)
			}
			checkFile(t, dst, nil, 0, stream[:n])
			if v.dontCache && s.Stats().Fallbacks == 0 {
				t.Error("tmpfs refuses RWF_DONTCACHE, but no fallback was counted")
			}
		})
	}
}

// TestReceiveConcurrent: many receives share one Sender and its buffers,
// each into its own file.
func TestReceiveConcurrent(t *testing.T) {
	for _, m := range receiveMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m, Buffers: 8, BufferSize: 64 << 10})
			dir := t.TempDir()
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for i := range 16 {
				wg.Go(func() {
					stream := streamBytes(2<<20+i*4099, byte(i))
					f, err := os.Create(filepath.Join(dir, fmt.Sprint(i)))
					if err != nil {
						errs <- err
						return
					}
					defer f.Close()
					a, b := tcpPair(t)
					peerSend(a, stream)
					n, err := s.Receive(context.Background(), b, f, int64(i), int64(len(stream)))
					if err != nil || n != int64(len(stream)) {
						errs <- fmt.Errorf("receive %d: %d, %v", i, n, err)
						return
					}
					got, err := os.ReadFile(f.Name())
					if err != nil || !bytes.Equal(got[i:], stream) {
						errs <- fmt.Errorf("receive %d: wrong bytes in the file (%v)", i, err)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if st := s.Stats().Methods[m]; st.Receives != 16 || st.ReceiveErrors != 0 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

// TestReceiveSync: with Config.Sync, Receive returns after fdatasync(2) (for
// URing, IORING_OP_FSYNC with IORING_FSYNC_DATASYNC). A test cannot see
// stable storage; it checks that the receive succeeds, and that no dirty page
// of the file is left, which sync_file_range(2) would otherwise find.
func TestReceiveSync(t *testing.T) {
	for _, m := range receiveMethods {
		for _, count := range []int64{1 << 20, -1} {
			t.Run(fmt.Sprintf("%s/count=%d", m, count), func(t *testing.T) {
				s := newSender(t, sendfile2.Config{Method: m, Sync: true})
				stream := streamBytes(1<<20, 9)
				dst := dstFile(t, "", nil)
				a, b := tcpPair(t)
				peerSend(a, stream)
				n, err := s.Receive(context.Background(), b, dst, 4096, count)
				if err != nil || n != int64(len(stream)) {
					t.Fatalf("Receive = %d, %v", n, err)
				}
				checkFile(t, dst, nil, 4096, stream)
			})
		}
	}
}

// TestReceiveDontCache: with Config.DontCache, the URing receive writes with
// RWF_DONTCACHE (Linux 6.14): the kernel starts writeback at once and drops
// each page when its writeback completes. Right after Receive returns, pages
// still under writeback may be resident; after fdatasync(2) (which Sync does)
// they are gone. Without DontCache the pages stay cached.
func TestReceiveDontCache(t *testing.T) {
	const size = 64 << 20
	pages := size / os.Getpagesize()
	stream := streamBytes(size, 10)
	for _, dontCache := range []bool{false, true} {
		for _, sync := range []bool{false, true} {
			t.Run(fmt.Sprintf("dontcache=%v/sync=%v", dontCache, sync), func(t *testing.T) {
				s := newSender(t, sendfile2.Config{Method: sendfile2.URing, DontCache: dontCache, Sync: sync})
				dst := dstFile(t, "", nil)
				a, b := tcpPair(t)
				peerSend(a, stream)
				if n, err := s.Receive(context.Background(), b, dst, 0, size); err != nil || n != size {
					t.Fatalf("Receive = %d, %v", n, err)
				}
				returned := residentPages(t, dst, size)
				if err := dst.Sync(); err != nil {
					t.Fatal(err)
				}
				synced := residentPages(t, dst, size)
				t.Logf("resident pages of %d: %d when Receive returned, %d after fdatasync", pages, returned, synced)
				if fb := s.Stats().Fallbacks; dontCache && fb != 0 {
					t.Skipf("the file system of %s refuses RWF_DONTCACHE writes", dst.Name())
				}
				switch {
				case !dontCache && synced < pages*9/10:
					t.Errorf("without DontCache only %d of %d pages stayed cached", synced, pages)
				case dontCache && sync && returned > pages/10:
					t.Errorf("with DontCache and Sync %d of %d pages stayed cached", returned, pages)
				case dontCache && synced > pages/10:
					t.Errorf("with DontCache %d of %d pages stayed cached after fdatasync", synced, pages)
				}
				checkFile(t, dst, nil, 0, stream)
			})
		}
	}
}

// TestReceiveAuto: Auto receives with Splice, or with Config.DontCache with
// URing, the one method whose writes carry RWF_DONTCACHE (with Splice and a
// fallback where the Sender has no ring). Stats say which method received;
// what the Config asked for holds: with Sync no page of the range is dirty or
// under writeback when Receive returns (cachestat(2), Linux 6.5), with
// DontCache no page stays cached once written back, and without it they do.
func TestReceiveAuto(t *testing.T) {
	const size = 32 << 20
	pages := size / os.Getpagesize()
	stream := streamBytes(size, 13)
	for _, dontCache := range []bool{false, true} {
		for _, sync := range []bool{false, true} {
			t.Run(fmt.Sprintf("dontcache=%v/sync=%v", dontCache, sync), func(t *testing.T) {
				s := newSender(t, sendfile2.Config{Method: sendfile2.Auto, DontCache: dontCache, Sync: sync})
				want, fallbacks := sendfile2.Splice, int64(0)
				switch {
				case dontCache && s.Method() == sendfile2.URing:
					want = sendfile2.URing
				case dontCache:
					fallbacks = 1 // no method here writes uncached
				}
				dst := dstFile(t, "", nil)
				a, b := tcpPair(t)
				peerSend(a, stream)
				if n, err := s.Receive(context.Background(), b, dst, 0, size); err != nil || n != size {
					t.Fatalf("Receive = %d, %v", n, err)
				}
				var cs unix.Cachestat_t
				err := unix.Cachestat(uint(dst.Fd()), &unix.CachestatRange{Off: 0, Len: size}, &cs, 0)
				switch {
				case err == nil:
					t.Logf("when Receive returned: %d pages cached, %d dirty, %d under writeback", cs.Cache, cs.Dirty, cs.Writeback)
					if sync && cs.Dirty+cs.Writeback != 0 {
						t.Errorf("with Sync, %d pages dirty and %d under writeback when Receive returned", cs.Dirty, cs.Writeback)
					}
				case errors.Is(err, unix.ENOSYS):
					t.Logf("cachestat: %v", err)
				default:
					t.Fatal(err)
				}
				st := s.Stats()
				for m, ms := range st.Methods {
					switch {
					case m == want && (ms.Receives != 1 || ms.Received != size || ms.ReceiveErrors != 0):
						t.Errorf("stats of %s = %+v, want one receive of %d bytes", m, ms, size)
					case m != want && ms.Receives != 0:
						t.Errorf("Auto received with %s, want only %s: %+v", m, want, ms)
					}
				}
				if want == sendfile2.URing && st.Fallbacks != 0 {
					t.Skipf("the file system of %s refuses RWF_DONTCACHE writes", dst.Name())
				}
				if st.Fallbacks != fallbacks {
					t.Errorf("Fallbacks = %d, want %d", st.Fallbacks, fallbacks)
				}
				if err := dst.Sync(); err != nil {
					t.Fatal(err)
				}
				synced := residentPages(t, dst, size)
				t.Logf("resident pages of %d after fdatasync: %d", pages, synced)
				switch {
				case want == sendfile2.URing && dontCache && synced > pages/10:
					t.Errorf("with DontCache %d of %d pages stayed cached after fdatasync", synced, pages)
				case !dontCache && synced < pages*9/10:
					t.Errorf("without DontCache only %d of %d pages stayed cached", synced, pages)
				}
				checkFile(t, dst, nil, 0, stream)
			})
		}
	}
}

func TestReceiveBadInput(t *testing.T) {
	for _, m := range receiveMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			dir := t.TempDir()
			rdonly := dstFile(t, dir, []byte("keep"))
			ro, err := os.Open(rdonly.Name())
			if err != nil {
				t.Fatal(err)
			}
			defer ro.Close()
			app, err := os.OpenFile(filepath.Join(dir, "append"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer app.Close()
			wrong := newWrongEnds(t, dir)
			dirf, pw, udp, uf := wrong.dir, wrong.pipeW, wrong.udp, wrong.unconnected
			good := dstFile(t, "", nil)
			a, b := tcpPair(t)
			if _, err := a.Write([]byte("stream")); err != nil {
				t.Fatal(err)
			}

			tests := []struct {
				name       string
				src        syscall.Conn
				dst        *os.File
				off, count int64
				want       error
			}{
				{"negative offset", b, good, -1, 10, sendfile2.ErrRange},
				{"range past the largest offset", b, good, 1 << 62, 1 << 62, sendfile2.ErrRange},
				{"read-only dst", b, ro, 0, 6, syscall.EBADF},
				{"O_APPEND dst", b, app, 0, 6, syscall.EINVAL},
				{"directory dst", b, dirf, 0, 6, syscall.EISDIR},
				{"pipe dst", b, pw, 0, 6, syscall.ESPIPE},
				{"nil dst", b, nil, 0, 6, os.ErrInvalid},
				{"file src", good, good, 0, 6, syscall.ENOTSOCK},
				{"udp src", udp, good, 0, 6, syscall.EPROTOTYPE},
				{"unconnected src", uf, good, 0, 6, syscall.ENOTCONN},
				{"nil src", nil, good, 0, 6, os.ErrInvalid},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					n, err := s.Receive(context.Background(), tt.src, tt.dst, tt.off, tt.count)
					if n != 0 || !errors.Is(err, tt.want) {
						t.Fatalf("Receive = %d, %v; want 0, an error matching %v", n, err, tt.want)
					}
				})
			}
			if got := contents(t, rdonly); string(got) != "keep" {
				t.Errorf("read-only file changed to %q", got)
			}
			if got := contents(t, good); len(got) != 0 {
				t.Errorf("dst got %q", got)
			}
			// Nothing was taken from the socket.
			if n, err := s.Receive(context.Background(), b, good, 0, 6); n != 6 || err != nil {
				t.Fatalf("Receive = %d, %v", n, err)
			}
			if got := contents(t, good); string(got) != "stream" {
				t.Errorf("dst holds %q, want the whole stream", got)
			}
		})
	}
}

func TestReceiveAfterClose(t *testing.T) {
	for _, m := range []sendfile2.Method{sendfile2.Auto, sendfile2.Copy} {
		s, err := sendfile2.NewSender(sendfile2.Config{Method: m})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		_, b := tcpPair(t)
		if _, err := s.Receive(context.Background(), b, dstFile(t, "", nil), 0, 10); !errors.Is(err, sendfile2.ErrClosed) {
			t.Errorf("%s: Receive after Close = %v, want ErrClosed", m, err)
		}
	}
}

// TestReceiveUnixSocket: the receive paths work on unix stream sockets too.
func TestReceiveUnixSocket(t *testing.T) {
	for _, m := range receiveMethods {
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
			stream := streamBytes(3<<20, 11)
			peerSend(ca, stream)
			dst := dstFile(t, "", nil)
			if n, err := s.Receive(context.Background(), cb.(*net.UnixConn), dst, 0, -1); err != nil || n != int64(len(stream)) {
				t.Fatalf("Receive = %d, %v", n, err)
			}
			checkFile(t, dst, nil, 0, stream)
		})
	}
}

func TestPackageReceive(t *testing.T) {
	stream := streamBytes(300000, 12)
	dst := dstFile(t, "", nil)
	a, b := tcpPair(t)
	peerSend(a, stream)
	if n, err := sendfile2.Receive(context.Background(), b, dst, 5, int64(len(stream))); err != nil || n != int64(len(stream)) {
		t.Fatalf("Receive = %d, %v", n, err)
	}
	checkFile(t, dst, nil, 5, stream)
}

func ExampleSender_Receive() {
	s, err := sendfile2.NewSender(sendfile2.Config{Method: sendfile2.Auto, Sync: true})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	conn, err := ln.Accept()
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	f, err := os.OpenFile("upload", os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	// Write the next 1 MiB of the stream at offset 0; the bytes are on
	// stable storage when Receive returns without error.
	n, err := s.Receive(context.Background(), conn.(*net.TCPConn), f, 0, 1<<20)
	fmt.Println(n, err)
}

// TestReceiveSpliceRefused: where the file system takes no splice into its
// files (EINVAL), a Splice receive writes what its pipe holds and receives
// the rest with Copy, counting one fallback: the file gets every byte, in
// order, whether the refusal comes at the first splice or after some went
// through.
func TestReceiveSpliceRefused(t *testing.T) {
	const size = 4 << 20
	stream := streamBytes(size, 21)
	for _, after := range []int{0, 1, 3} {
		t.Run(fmt.Sprintf("after=%d", after), func(t *testing.T) {
			calls := 0
			s := newTunedSender(t, sendfile2.Config{Method: sendfile2.Splice}, func(tu *sendfile2.Tuning) {
				tu.SpliceWrite = func() error {
					calls++
					if calls > after {
						return unix.EINVAL
					}
					return nil
				}
			})
			dst := dstFile(t, "", nil)
			a, b := tcpPair(t)
			peerSend(a, stream)
			n, err := s.Receive(context.Background(), b, dst, 0, size)
			if err != nil || n != size {
				t.Fatalf("Receive = %d, %v; want %d, nil", n, err, size)
			}
			checkFile(t, dst, nil, 0, stream)
			if f := s.Stats().Fallbacks; f != 1 {
				t.Errorf("%d fallbacks counted, want 1", f)
			}
		})
	}
}
