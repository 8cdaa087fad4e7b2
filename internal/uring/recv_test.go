package uring_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/testutil"
	"github.com/sendfile2/sendfile2/internal/uring"
)

// TestRecvWaitAll: IORING_OP_RECV with MSG_WAITALL completes only when the
// whole length has arrived, and one cancelled after part of it reports the
// bytes it took (sendfile2's Receive counts on both).
func TestRecvWaitAll(t *testing.T) {
	l := newLoop(t)
	a, b := tcpPair(t)
	fd := fdOf(t, b)
	buf := make([]byte, 4096)
	e := make(events, 1)

	submit(t, l, e, func(s *uring.SQE) { s.PrepRecv(fd, unsafe.Pointer(&buf[0]), 10, unix.MSG_WAITALL) })
	a.Write([]byte("01234"))
	select {
	case c := <-e:
		t.Fatalf("RECV MSG_WAITALL of 10 bytes completed after 5: %+v", c)
	case <-time.After(50 * time.Millisecond):
	}
	a.Write([]byte("56789abc"))
	if c := next(t, e); c.Res != 10 || string(buf[:10]) != "0123456789" {
		t.Fatalf("RECV = %+v, %q", c, buf[:10])
	}

	// The 3 bytes "abc" are queued; ask for more and cancel.
	ud := submit(t, l, e, func(s *uring.SQE) { s.PrepRecv(fd, unsafe.Pointer(&buf[0]), 100, unix.MSG_WAITALL) })
	time.Sleep(20 * time.Millisecond)
	if err := l.Cancel(ud, nil); err != nil {
		t.Fatal(err)
	}
	// Before Linux 6.1 the cancelled RECV completes with -ECANCELED and the
	// bytes it took are lost to the count.
	c := next(t, e)
	testutil.RequireFeature(t, "IORING_OP_RECV reporting the bytes it took when cancelled", "6.1",
		c.Res >= 0, fmt.Errorf("cancelled RECV = %+v", c))
	if c.Res != 3 || string(buf[:3]) != "abc" {
		t.Fatalf("cancelled RECV = %+v, %q; want the 3 bytes it took", c, buf[:3])
	}

	// RECV takes no registered buffer (Linux 6.18): IORING_RECVSEND_FIXED_BUF
	// is refused.
	submit(t, l, e, func(s *uring.SQE) {
		s.PrepRecv(fd, unsafe.Pointer(&buf[0]), 100, 0)
		s.Ioprio = uring.RecvsendFixedBuf
	})
	if c := next(t, e); c.Res != -int32(unix.EINVAL) {
		t.Logf("RECV with IORING_RECVSEND_FIXED_BUF = %+v (refused with EINVAL up to Linux 6.18)", c)
	}

	a.Close()
	submit(t, l, e, func(s *uring.SQE) { s.PrepRecv(fd, unsafe.Pointer(&buf[0]), 100, unix.MSG_WAITALL) })
	if c := next(t, e); c.Res != 0 {
		t.Fatalf("RECV at the end of the stream = %+v, want 0", c)
	}
}

// TestFsync: IORING_OP_FSYNC with IORING_FSYNC_DATASYNC of a range completes
// with 0; on a descriptor that is not a file it fails.
func TestFsync(t *testing.T) {
	l := newLoop(t)
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := bytes.Repeat([]byte("x"), 1<<20)
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	e := make(events, 1)
	for _, n := range []uint32{0, 4096} {
		submit(t, l, e, func(s *uring.SQE) { s.PrepFsync(int(f.Fd()), 4096, n, uring.FsyncDatasync) })
		if c := next(t, e); c.Res != 0 {
			t.Fatalf("FSYNC(len %d) = %+v", n, c)
		}
	}
	submit(t, l, e, func(s *uring.SQE) { s.PrepFsync(-1, 0, 0, 0) })
	if c := next(t, e); c.Res != -int32(unix.EBADF) {
		t.Fatalf("FSYNC of fd -1 = %+v, want -EBADF", c)
	}
}
