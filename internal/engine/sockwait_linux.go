package engine

import (
	"context"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/epoll"
)

// sockWait waits for room in the send buffer of a socket through a private
// epoll instance, created at the first wait.
type sockWait struct {
	fd int
	w  *epoll.Waiter
}

func (sw *sockWait) wait(ctx context.Context) error {
	if sw.w == nil {
		w, err := epoll.New(sw.fd, unix.EPOLLOUT)
		if err != nil {
			return err
		}
		sw.w = w
	}
	_, err := sw.w.Wait(ctx)
	return err
}

func (sw *sockWait) close() {
	if sw.w != nil {
		sw.w.Close()
	}
}

// sendAll writes p to the socket with send(2), MSG_DONTWAIT and MSG_NOSIGNAL,
// waiting for room when the buffer is full. send(2) copies p into socket
// buffers before it returns.
func sendAll(ctx context.Context, sw *sockWait, p []byte) (int, error) {
	return sendAllFlags(ctx, sw, p, 0)
}

// sendAllFlags is sendAll with more send(2) flags, such as MSG_MORE.
func sendAllFlags(ctx context.Context, sw *sockWait, p []byte, flags int) (int, error) {
	done := 0
	for done < len(p) {
		n, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(sw.fd), uintptr(unsafe.Pointer(&p[done])), uintptr(len(p)-done),
			uintptr(unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL|flags), 0, 0)
		switch errno {
		case 0:
			done += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			if err := sw.wait(ctx); err != nil {
				return done, err
			}
		default:
			return done, os.NewSyscallError("send", errno)
		}
	}
	return done, nil
}

// readWait waits until a socket has bytes to read (or its end, or an error)
// through a private epoll instance, created at the first wait, so that the
// caller's deadlines on the socket are never touched.
type readWait struct {
	fd int
	w  *epoll.Waiter
}

func (rw *readWait) wait(ctx context.Context) error {
	if rw.w == nil {
		w, err := epoll.New(rw.fd, unix.EPOLLIN|unix.EPOLLRDHUP)
		if err != nil {
			return err
		}
		rw.w = w
	}
	_, err := rw.w.Wait(ctx)
	return err
}

func (rw *readWait) close() {
	if rw.w != nil {
		rw.w.Close()
	}
}

// recvDontWait is recv(2) with MSG_DONTWAIT: it never blocks, whether the
// caller's descriptor is non-blocking or not.
func recvDontWait(fd int, p []byte) (int, syscall.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		uintptr(unix.MSG_DONTWAIT), 0, 0)
	return int(n), errno
}
