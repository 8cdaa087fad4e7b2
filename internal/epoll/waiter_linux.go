package epoll

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Waiter waits for events on one descriptor.
type Waiter struct {
	f  *os.File
	rc syscall.RawConn
	ep int
	fd int // the descriptor watched
}

// New returns a Waiter for the events (EPOLLOUT, EPOLLERR, ...) of fd,
// level-triggered. EPOLLERR and EPOLLHUP are always reported. It wraps
// epoll_create1(2) and epoll_ctl(2).
func New(fd int, events uint32) (*Waiter, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(ep)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	// Non-blocking, so that os.NewFile registers it with the netpoller.
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(ep)
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(ep), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Waiter{f: f, rc: rc, ep: ep, fd: fd}, nil
}

// Modify replaces the events watched, as New takes them; add EPOLLET for
// edge-triggered events, which Wait reports once per change of the
// descriptor's state instead of for as long as they hold. The events ready
// at the moment of the change are reported once either way. It wraps
// epoll_ctl(2) with EPOLL_CTL_MOD.
func (w *Waiter) Modify(events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(w.fd)}
	if err := unix.EpollCtl(w.ep, unix.EPOLL_CTL_MOD, w.fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// Wait blocks until one of the events is ready or ctx ends, and returns the
// ready events. The goroutine parks in the netpoller meanwhile.
func (w *Waiter) Wait(ctx context.Context) (uint32, error) {
	if err := ctx.Err(); err != nil {
		return 0, context.Cause(ctx)
	}
	stop := context.AfterFunc(ctx, func() { w.f.SetReadDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			w.f.SetReadDeadline(time.Time{})
		}
	}()
	var events [1]unix.EpollEvent
	var ready uint32
	var werr error
	err := w.rc.Read(func(fd uintptr) bool {
		n, err := unix.EpollWait(int(fd), events[:], 0)
		switch {
		case err == unix.EINTR:
			return false
		case err != nil:
			werr = os.NewSyscallError("epoll_wait", err)
			return true
		case n == 0:
			return false
		}
		ready = events[0].Events
		return true
	})
	if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil {
		return 0, context.Cause(ctx)
	}
	if err != nil {
		return 0, err
	}
	return ready, werr
}

// Close releases the epoll instance.
func (w *Waiter) Close() error { return w.f.Close() }
