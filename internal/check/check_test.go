//go:build linux

package check_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/check"
	"github.com/sendfile2/sendfile2/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// copySend is safe: pread(2) into a buffer, then write(2), which copies the
// data into the socket before it returns.
func copySend(ctx context.Context, dst syscall.Conn, src *os.File, offset, count int64) (int64, error) {
	w, ok := dst.(io.Writer)
	if !ok {
		return 0, fmt.Errorf("copy: %T is no io.Writer", dst)
	}
	buf := make([]byte, 64<<10)
	var sent int64
	for sent < count {
		if err := ctx.Err(); err != nil {
			return sent, err
		}
		n, err := src.ReadAt(buf[:min(int64(len(buf)), count-sent)], offset+sent)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			sent += int64(m)
			if werr != nil {
				return sent, werr
			}
		}
		if err != nil && (err != io.EOF || sent < count) {
			return sent, err
		}
	}
	return sent, nil
}

// ackSend is safe the way the zero-copy methods are: after write(2) it waits
// until the peer has acknowledged every byte (SIOCOUTQ is 0). It returns only
// if the whole file fits in the receive window of a receiver that does not
// read, which is what Run's socket buffers must allow. The ticker stands in
// for the notification a real method waits for.
func ackSend(ctx context.Context, dst syscall.Conn, src *os.File, offset, count int64) (int64, error) {
	n, err := copySend(ctx, dst, src, offset, count)
	if err != nil {
		return n, err
	}
	rc, err := dst.SyscallConn()
	if err != nil {
		return n, err
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		var outq int
		var qerr error
		if err := rc.Control(func(fd uintptr) { outq, qerr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
			return n, err
		}
		if qerr != nil {
			return n, os.NewSyscallError("ioctl SIOCOUTQ", qerr)
		}
		if outq == 0 {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, context.Cause(ctx)
		case <-tick.C:
		}
	}
}

// sendfileSend is sendfile(2): unsafe, it returns while socket buffers still
// reference the file's pages.
func sendfileSend(ctx context.Context, dst syscall.Conn, src *os.File, offset, count int64) (int64, error) {
	out, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	in, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	if d, ok := dst.(interface{ SetWriteDeadline(time.Time) error }); ok {
		stop := context.AfterFunc(ctx, func() { d.SetWriteDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	var sent int64
	var serr error
	cerr := in.Control(func(infd uintptr) {
		serr = out.Write(func(outfd uintptr) bool {
			for sent < count {
				off := offset + sent
				n, err := unix.Sendfile(int(outfd), int(infd), &off, int(min(count-sent, 1<<30)))
				if n > 0 {
					sent += int64(n)
				}
				switch {
				case err == unix.EAGAIN:
					return false
				case err == unix.EINTR:
				case err != nil:
					serr = os.NewSyscallError("sendfile", err)
					return true
				case n == 0:
					serr = io.ErrUnexpectedEOF
					return true
				}
			}
			return true
		})
	})
	if cerr != nil {
		return sent, cerr
	}
	return sent, serr
}

func TestSafeMethods(t *testing.T) {
	for _, tc := range []struct {
		name string
		send check.SendFunc
	}{
		{"copy", copySend},
		{"ack", ackSend},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := check.Options{Dir: t.TempDir()}
			out := check.Run(t.Context(), tc.send, opts)
			if out.Err != nil {
				t.Fatal(out.Err)
			}
			per := int64(check.DefaultRounds * check.DefaultSize)
			for _, s := range check.Scenarios() {
				so := out.PerScenario[s]
				if so.CorruptedBytes != 0 || so.BytesChecked != per {
					t.Errorf("%s: %d of %d bytes corrupted, want 0 of %d", s, so.CorruptedBytes, so.BytesChecked, per)
				}
			}
			if out.BytesChecked != int64(len(check.Scenarios()))*per || out.CorruptedBytes != 0 {
				t.Errorf("in all: %d of %d bytes corrupted, want 0 of %d", out.CorruptedBytes, out.BytesChecked, int64(len(check.Scenarios()))*per)
			}
			if !out.Safe() {
				t.Errorf("Safe() = false for %+v", out)
			}
		})
	}
}

// TestSendfileCorrupts proves that the check can fail: on this kernel
// sendfile(2) corrupts data in both scenarios. If it ever stops doing so, the
// check no longer tells safe from unsafe, and this test fails.
func TestSendfileCorrupts(t *testing.T) {
	out := check.Run(t.Context(), sendfileSend, check.Options{Dir: t.TempDir()})
	if out.Err != nil {
		t.Fatal(out.Err)
	}
	for _, s := range check.Scenarios() {
		so := out.PerScenario[s]
		t.Logf("sendfile, %s: %d of %d bytes corrupted", s, so.CorruptedBytes, so.BytesChecked)
		if so.CorruptedBytes == 0 {
			t.Errorf("sendfile, %s: no byte of %d corrupted; the check cannot tell an unsafe method", s, so.BytesChecked)
		}
	}
	if out.Safe() {
		t.Error("Safe() = true for sendfile")
	}
}

func TestFailures(t *testing.T) {
	errBoom := errors.New("boom")
	for _, tc := range []struct {
		name      string
		send      check.SendFunc
		want      error // matched with errors.Is; nil: any error
		corrupted bool  // whether bytes must count as corrupted
	}{
		{
			name: "error",
			send: func(context.Context, syscall.Conn, *os.File, int64, int64) (int64, error) { return 0, errBoom },
			want: errBoom,
		},
		{
			name: "never returns",
			send: func(ctx context.Context, _ syscall.Conn, _ *os.File, _, _ int64) (int64, error) {
				<-ctx.Done()
				return 0, ctx.Err()
			},
			want: check.ErrSendTimeout,
		},
		{
			name: "ignores ctx until the conn closes",
			send: func(_ context.Context, dst syscall.Conn, _ *os.File, _, _ int64) (int64, error) {
				_, err := dst.(io.Reader).Read(make([]byte, 1))
				return 0, err
			},
			want: check.ErrSendTimeout,
		},
		{
			name: "short count",
			send: func(ctx context.Context, dst syscall.Conn, src *os.File, offset, count int64) (int64, error) {
				n, err := copySend(ctx, dst, src, offset, count/2)
				return n, err
			},
		},
		{
			name: "claims more than it sent",
			send: func(ctx context.Context, dst syscall.Conn, src *os.File, offset, count int64) (int64, error) {
				_, err := copySend(ctx, dst, src, offset, count/2)
				return count, err
			},
			corrupted: true,
		},
		{
			name: "sends more than asked",
			send: func(ctx context.Context, dst syscall.Conn, src *os.File, offset, count int64) (int64, error) {
				n, err := copySend(ctx, dst, src, offset, count)
				if err == nil {
					_, err = dst.(io.Writer).Write([]byte{0})
				}
				return n, err
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := check.Options{Rounds: 2, Size: 64 << 10, Timeout: 200 * time.Millisecond, Dir: t.TempDir()}
			out := check.Run(t.Context(), tc.send, opts)
			t.Logf("Err: %v", out.Err)
			if out.Err == nil {
				t.Fatalf("no error; outcome %+v", out)
			}
			if tc.want != nil && !errors.Is(out.Err, tc.want) {
				t.Errorf("error %v, want one matching %v", out.Err, tc.want)
			}
			if got := out.CorruptedBytes > 0; got != tc.corrupted {
				t.Errorf("%d bytes corrupted, want some: %v", out.CorruptedBytes, tc.corrupted)
			}
			if out.Safe() {
				t.Error("Safe() = true")
			}
		})
	}
}

func TestCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	send := func(ctx context.Context, _ syscall.Conn, _ *os.File, _, _ int64) (int64, error) {
		cancel()
		<-ctx.Done()
		return 0, ctx.Err()
	}
	out := check.Run(ctx, send, check.Options{Dir: t.TempDir()})
	if !errors.Is(out.Err, context.Canceled) {
		t.Errorf("error %v, want one matching context.Canceled", out.Err)
	}
}

// TestHeldBackCapacity measures how many bytes the connections Run makes take
// while the receiver does not read, and fails if a file of DefaultSize does not
// fit twice over into what the receiver acknowledges, right after the sender
// first met a full buffer. It then keeps writing as long as the socket becomes
// writable again within a moment, and logs where the queues settle.
func TestHeldBackCapacity(t *testing.T) {
	send, recv, err := check.HeldBackPair(t.Context(), check.DefaultSize)
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	defer recv.Close()
	ioctl := func(c syscall.Conn, req uint) int {
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var ierr error
		if err := rc.Control(func(fd uintptr) { v, ierr = unix.IoctlGetInt(int(fd), req) }); err != nil || ierr != nil {
			t.Fatal(err, ierr)
		}
		return v
	}
	src, err := send.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	var total int
	var werr error
	// fill writes until EAGAIN; with wait, until the socket stays full for
	// 200ms.
	fill := func(wait bool) {
		if err := src.Control(func(fd uintptr) {
			for {
				n, err := unix.Write(int(fd), buf)
				if n > 0 {
					total += n
				}
				switch {
				case err == unix.EAGAIN:
					if !wait {
						return
					}
					pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
					if n, err := unix.Poll(pfd, 200); err != nil && err != unix.EINTR {
						werr = err
						return
					} else if n == 0 {
						return
					}
				case err != nil && err != unix.EINTR:
					werr = err
					return
				}
			}
		}); err != nil || werr != nil {
			t.Fatal(err, werr)
		}
	}
	fill(false)
	inq, outq := ioctl(recv, unix.SIOCINQ), ioctl(send, unix.SIOCOUTQ)
	t.Logf("first full: sender wrote %d bytes; receiver queue (acknowledged) %d, sender queue %d", total, inq, outq)
	if inq < 2*check.DefaultSize {
		t.Errorf("the receiver acknowledged %d bytes, want at least %d (twice DefaultSize)", inq, 2*check.DefaultSize)
	}
	fill(true)
	inq, outq = ioctl(recv, unix.SIOCINQ), ioctl(send, unix.SIOCOUTQ)
	t.Logf("settled: sender wrote %d bytes; receiver queue (acknowledged) %d, sender queue %d", total, inq, outq)
}
