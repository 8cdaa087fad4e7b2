package engine

import (
	"context"
	"errors"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/epoll"
)

// sockWait waits for room in the send buffer of a socket (or, for a
// receive, for bytes to read) through the Engines' Poller: one epoll instance
// for all the sends of a Sender, none per send. The caller keeps fd open
// until close. A send whose socket the Poller already watches under the same
// number (never the case for the sends of the root package, which use a
// duplicate or a conn's own descriptor one send at a time) waits on an epoll
// instance of its own instead. MsgZC sets w, its own instance, which also
// watches the error queue.
type sockWait struct {
	e      *Engines
	fd     int
	events uint32 // EPOLLOUT, or EPOLLIN|EPOLLRDHUP
	call   int    // the most bytes one send(2) of sendAll takes (Tuning.SendCall)
	watch  *epoll.Watch
	w      *epoll.Waiter
}

// poller returns the Engines' Poller, made at the first wait.
func (e *Engines) poller() (*epoll.Poller, error) {
	e.pollMu.Lock()
	defer e.pollMu.Unlock()
	if e.poll == nil {
		p, err := epoll.NewPoller()
		if err != nil {
			return nil, err
		}
		e.poll = p
	}
	return e.poll, nil
}

// closePoller closes the Poller; every send has returned.
func (e *Engines) closePoller() {
	if e.poll != nil {
		e.poll.Close()
		e.poll = nil
	}
}

func (e *Engines) roomWait(fd int) *sockWait {
	return &sockWait{e: e, fd: fd, events: unix.EPOLLOUT, call: e.cfg.Tuning.SendCall}
}
func (e *Engines) dataWait(fd int) *sockWait {
	return &sockWait{e: e, fd: fd, events: unix.EPOLLIN | unix.EPOLLRDHUP}
}

// arm asks for the next event on the channel it returns, once.
func (sw *sockWait) arm() (<-chan uint32, error) {
	if sw.watch == nil {
		p, err := sw.e.poller()
		if err != nil {
			return nil, err
		}
		sw.watch = p.Watch(sw.fd)
	}
	if err := sw.watch.Arm(sw.events); err != nil {
		return nil, err
	}
	return sw.watch.C(), nil
}

// wait blocks until the socket has room (or data), an error, or ctx ends.
func (sw *sockWait) wait(ctx context.Context) error {
	if sw.w == nil {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		c, err := sw.arm()
		if err == nil {
			select {
			case <-c:
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		if !errors.Is(err, epoll.ErrBusy) {
			return err
		}
		if sw.w, err = epoll.New(sw.fd, sw.events); err != nil {
			return err
		}
	}
	_, err := sw.w.Wait(ctx)
	return err
}

func (sw *sockWait) close() {
	if sw.watch != nil {
		sw.watch.Close()
		sw.watch = nil
	}
	if sw.w != nil {
		sw.w.Close()
	}
}

// sendAll writes p to the socket with send(2), MSG_DONTWAIT and MSG_NOSIGNAL,
// at most sw.call bytes per call (all of what is left when it is zero),
// waiting for room when the buffer is full. send(2) copies p into socket
// buffers before it returns.
func sendAll(ctx context.Context, sw *sockWait, p []byte) (int, error) {
	return sendAllFlags(ctx, sw, p, 0)
}

// sendAllFlags is sendAll with more send(2) flags, such as MSG_MORE.
func sendAllFlags(ctx context.Context, sw *sockWait, p []byte, flags int) (int, error) {
	done := 0
	for done < len(p) {
		k := len(p) - done
		if sw.call > 0 {
			k = min(k, sw.call)
		}
		n, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(sw.fd), uintptr(unsafe.Pointer(&p[done])), uintptr(k),
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

// recvDontWait is recv(2) with MSG_DONTWAIT: it never blocks, whether the
// caller's descriptor is non-blocking or not.
func recvDontWait(fd int, p []byte) (int, syscall.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		uintptr(unix.MSG_DONTWAIT), 0, 0)
	return int(n), errno
}
