package engine

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSendAllVec: a header and a body larger than the socket's buffer go out
// whole and in order, through sendmsg(2)s that stop within the header, at
// its end, and within the body, and the count is the bytes of both.
func TestSendAllVec(t *testing.T) {
	e := New(Config{Tuning: DefaultTuning()})
	defer e.Close()
	for _, tt := range []struct{ hdr, body int }{{100 << 10, 300 << 10}, {17, 300 << 10}, {64 << 10, 0}, {0, 64 << 10}} {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
		peer := os.NewFile(uintptr(fds[1]), "peer")
		data := make([]byte, tt.hdr+tt.body)
		for i := range data {
			data[i] = byte(rand.Uint32())
		}
		got := make(chan []byte)
		go func() {
			var b []byte
			buf := make([]byte, 3000) // reads smaller than the buffer: many partial sends
			for {
				n, err := peer.Read(buf)
				b = append(b, buf[:n]...)
				if err != nil {
					got <- b
					return
				}
			}
		}()
		sw := e.roomWait(fds[0])
		n, err := sendAllVec(context.Background(), sw, data[:tt.hdr], data[tt.hdr:])
		sw.close()
		unix.Close(fds[0])
		b := <-got
		peer.Close()
		if err != nil || n != len(data) {
			t.Fatalf("header %d, body %d: sendAllVec = %d, %v; want %d", tt.hdr, tt.body, n, err, len(data))
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("header %d, body %d: the peer read %d bytes that differ from the %d sent", tt.hdr, tt.body, len(b), len(data))
		}
	}
}
