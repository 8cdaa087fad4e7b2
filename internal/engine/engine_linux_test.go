package engine_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/engine"
	"github.com/sendfile2/sendfile2/internal/testutil"
)

func TestMain(m *testing.M) {
	_, engine.ThreadByDefault = testutil.URingThread()
	testutil.Main(m, func() error {
		if n := engine.Mappings(); n != 0 {
			return fmt.Errorf("%d memory mappings left", n)
		}
		return nil
	})
}

// socketpair returns a connected pair of unix stream sockets, non-blocking,
// closed at the end of the test.
func socketpair(t *testing.T) (int, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	peer := os.NewFile(uintptr(fds[1]), "peer")
	t.Cleanup(func() { unix.Close(fds[0]); peer.Close() })
	return fds[0], peer
}

func tempFile(t *testing.T, data []byte) (*os.File, *unix.Stat_t) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "src")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	st := new(unix.Stat_t)
	if err := unix.Fstat(int(f.Fd()), st); err != nil {
		t.Fatal(err)
	}
	return f, st
}

// TestSendCopying sends a header and a range with the engines that need
// neither io_uring nor TCP, and checks the bytes the peer reads.
func TestSendCopying(t *testing.T) {
	data := make([]byte, 3<<20)
	rand.Read(data)
	hdr := []byte("HTTP/1.1 200 OK\r\n\r\n")
	for _, tt := range []struct {
		name     string
		kind     engine.Kind
		tune     func(*engine.Tuning)
		readable bool // the Job says the file is readable: no fcntl(2)
	}{
		{"copy/pread", engine.Copy, func(tu *engine.Tuning) { tu.CopyKeepMin, tu.CopyMmapMin = 1<<62, 1<<62 }, false},
		{"copy/mmap", engine.Copy, nil, false},
		{"copy/kept", engine.Copy, func(tu *engine.Tuning) { tu.CopyKeepMin = 0 }, false},
		{"copy/kept/readable", engine.Copy, func(tu *engine.Tuning) { tu.CopyKeepMin = 0 }, true},
		{"sendfile", engine.Sendfile, nil, false},
		{"splice", engine.Splice, nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := engine.Config{BufferSize: 256 << 10, Buffers: 4, Tuning: engine.DefaultTuning()}
			if tt.tune != nil {
				tt.tune(&cfg.Tuning)
			}
			e := engine.New(cfg)
			defer e.Close()
			f, st := tempFile(t, data)
			off, count := int64(4096+17), int64(len(data)-8192)
			want := append(append([]byte{}, hdr...), data[off:off+count]...)
			for range 2 { // the second send of copy/kept finds the mapping
				sock, peer := socketpair(t)
				got := make(chan []byte)
				go func() { b, _ := io.ReadAll(peer); got <- b }()
				out := e.Send(engine.Job{Ctx: context.Background(), Kind: tt.kind, Sock: sock, File: int(f.Fd()), Stat: st, Header: hdr, Off: off, Count: count, Readable: tt.readable})
				unix.Shutdown(sock, unix.SHUT_WR)
				if out.Err != nil || out.N != int64(len(want)) {
					t.Fatalf("Send = %d, %v; want %d", out.N, out.Err, len(want))
				}
				if !bytes.Equal(<-got, want) {
					t.Fatal("the peer read other bytes")
				}
			}
		})
	}
}

// TestReceiveCopying receives a stream into a file at an offset with the
// engines that need no io_uring.
func TestReceiveCopying(t *testing.T) {
	data := make([]byte, 1<<20+5)
	rand.Read(data)
	for _, kind := range []engine.Kind{engine.Copy, engine.Splice} {
		t.Run(fmt.Sprint(kind), func(t *testing.T) {
			e := engine.New(engine.Config{Tuning: engine.DefaultTuning()})
			defer e.Close()
			f, _ := tempFile(t, nil)
			sock, peer := socketpair(t)
			go func() { peer.Write(data); peer.Close() }()
			out := e.Receive(engine.RecvJob{Ctx: context.Background(), Kind: kind, Sock: sock, File: int(f.Fd()), Off: 100, Count: -1})
			if out.Err != nil || out.N != int64(len(data)) {
				t.Fatalf("Receive = %d, %v; want %d", out.N, out.Err, len(data))
			}
			got := make([]byte, len(data))
			if _, err := f.ReadAt(got, 100); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("the file holds other bytes (%v)", err)
			}
		})
	}
}
