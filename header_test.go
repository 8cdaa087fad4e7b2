package sendfile2_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2"
)

// TestSendWithHeader: the header and the range arrive in order, byte-exact,
// for header sizes around and above a buffer and bodies from empty to
// several buffers.
func TestSendWithHeader(t *testing.T) {
	for _, m := range sendfile2.Methods() {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m, BufferSize: 64 << 10})
			for _, hlen := range []int{1, 300, 64 << 10, 100 << 10} {
				for _, blen := range []int{0, 1, 4096, 1<<20 + 3} {
					t.Run(fmt.Sprintf("header=%d/body=%d", hlen, blen), func(t *testing.T) {
						hdr := bytes.Repeat([]byte("H"), hlen)
						f, data := tempFile(t, blen+7)
						a, b := tcpPair(t)
						got := receive(b)
						n, err := s.SendWithHeader(context.Background(), a, hdr, f, 7, int64(blen))
						a.Close()
						if err != nil || n != int64(hlen+blen) {
							t.Fatalf("SendWithHeader = %d, %v; want %d", n, err, hlen+blen)
						}
						want := append(hdr, data[7:]...)
						if r := <-got; !bytes.Equal(r, want) {
							t.Fatalf("received %d bytes, not the %d of header and range", len(r), len(want))
						}
					})
				}
			}
		})
	}
}

// BenchmarkHeader compares a response sent as one SendWithHeader with a
// write(2) of the header followed by Send.
func BenchmarkHeader(b *testing.B) {
	hdr := bytes.Repeat([]byte("h"), 300)
	for _, m := range []sendfile2.Method{sendfile2.URing, sendfile2.URingMmap, sendfile2.Copy} {
		for _, size := range []int{16 << 10, 1 << 20} {
			for _, way := range []string{"together", "write-then-send"} {
				b.Run(fmt.Sprintf("method=%s/size=%s/%s", m, sizeName(size), way), func(b *testing.B) {
					s := newSender(b, sendfile2.Config{Method: m})
					f, _ := tempFile(b, size)
					a, r := tcpPair(b)
					go drain(r)
					b.SetBytes(int64(len(hdr) + size))
					for b.Loop() {
						if way == "together" {
							if _, err := s.SendWithHeader(context.Background(), a, hdr, f, 0, int64(size)); err != nil {
								b.Fatal(err)
							}
							continue
						}
						if _, err := a.Write(hdr); err != nil {
							b.Fatal(err)
						}
						if _, err := s.Send(context.Background(), a, f, 0, int64(size)); err != nil {
							b.Fatal(err)
						}
					}
					a.Close()
				})
			}
		}
	}
}

// TestHeaderAlone: a header with an empty body is not held back for a body
// that never comes (MSG_MORE): when SendWithHeader returns, nothing is left
// unsent in the socket (SIOCOUTQNSD).
func TestHeaderAlone(t *testing.T) {
	for _, m := range sendfile2.Methods() {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m, BufferSize: 64 << 10})
			f, _ := tempFile(t, 10)
			for _, hlen := range []int{300, 4096} { // within the first window: all of it leaves at once
				a, b := tcpPair(t)
				go drain(b)
				hdr := bytes.Repeat([]byte("H"), hlen)
				if n, err := s.SendWithHeader(context.Background(), a, hdr, f, 0, 0); err != nil || n != int64(hlen) {
					t.Fatalf("SendWithHeader = %d, %v", n, err)
				}
				rc, err := a.SyscallConn()
				if err != nil {
					t.Fatal(err)
				}
				var unsent int
				var ierr error
				rc.Control(func(fd uintptr) { unsent, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQNSD) })
				if ierr != nil {
					t.Fatal(ierr)
				}
				if unsent != 0 {
					t.Errorf("header of %d bytes: %d bytes held back in the socket after SendWithHeader returned", hlen, unsent)
				}
			}
		})
	}
}
