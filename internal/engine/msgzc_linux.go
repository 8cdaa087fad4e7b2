package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/epoll"
	"github.com/sendfile2/sendfile2/internal/errqueue"
)

// msgzcMaxCalls bounds the zero-copy calls of one send whose notification
// has not come yet, and so the file's pages it pins: msgzcMaxCalls *
// Tuning.MsgZCChunk bytes. Each call also holds a little of
// net.core.optmem_max.
const msgzcMaxCalls = 32

// msgzc is the MsgZC engine: send(2) with MSG_ZEROCOPY from a shared mapping
// of the file, non-blocking, up to msgzcMaxCalls calls awaiting their
// notification. Every successful call pins the file's page-cache pages until
// the kernel posts its notification on the socket's error queue
// (recvmsg(2) with MSG_ERRQUEUE), so the send returns only when every call
// has been notified: on success, on errors and on cancellation. Waiting, for
// room in the socket buffer (EPOLLOUT) or for notifications (EPOLLERR), goes
// through one private epoll instance, edge-triggered, watching only what the
// send waits for at that moment.
//
// ENOBUFS (net.core.optmem_max or RLIMIT_MEMLOCK exhausted) waits for
// notifications and sends again; with none to wait for, the rest of the send
// is copied with send(2) and counted as a fallback.
//
// It sends from the Sender's kept mappings of the file (see fileMaps), one
// window at a time, and takes the next window only once every call from the
// previous one has been notified, so that a window's reference lasts until
// the kernel has let go of its pages.
func (t *transfer) msgzc() (int64, error) {
	if t.Count == 0 {
		return 0, nil
	}
	release, err := lockZCSocket(t.Ctx, t.Sock)
	if err != nil {
		return 0, err
	}
	defer release()
	if err := unix.SetsockoptInt(t.Sock, unix.SOL_SOCKET, unix.SO_ZEROCOPY, 1); err != nil {
		if err == unix.ENOPROTOOPT || err == unix.EOPNOTSUPP || err == unix.EBUSY {
			// Refused for this socket: copying keeps the guarantee.
			t.fallbacks++
			return t.copy()
		}
		return 0, fmt.Errorf("so_zerocopy: %w", os.NewSyscallError("setsockopt", err))
	}
	w, err := epoll.New(t.Sock, unix.EPOLLERR|unix.EPOLLET)
	if err != nil {
		return 0, err
	}
	defer w.Close()
	z := &zcSend{transfer: t, w: w, events: unix.EPOLLERR | unix.EPOLLET, chunk: t.e.cfg.Tuning.MsgZCChunk}
	defer t.e.maps.put(&z.win)
	return z.run()
}

// zcSend is the state of one MsgZC send.
type zcSend struct {
	*transfer
	w      *epoll.Waiter
	events uint32 // registered with w
	chunk  int    // bytes per call

	pos int64  // bytes of the range handed to the kernel
	win window // the mapping of the part of the range being sent

	tr    errqueue.Tracker
	calls [msgzcMaxCalls]zcCall // outstanding calls, oldest first, from head
	head  int

	unattributed uint64 // calls of ranges the tracker refused
	oob          [256]byte
	notes        []errqueue.Notification

	err       error
	cancelled bool
	needRoom  bool // the socket buffer is full: wait for EPOLLOUT
	hold      bool // ENOBUFS: wait for a notification before sending
	fallback  bool // ENOBUFS with nothing outstanding: copy the rest
}

// zcCall is one successful zero-copy call awaiting its notification.
type zcCall struct {
	n  int
	at time.Time // when notifications are timed
}

func (z *zcSend) run() (int64, error) {
	// Nothing of this send is outstanding yet, so a notification already
	// queued is someone else's: another user of MSG_ZEROCOPY on the socket,
	// whose notifications could later be taken for this send's. Refuse.
	if _, err := z.drain(); err != nil {
		return 0, err
	}
	if z.unattributed > 0 {
		return 0, errors.New("msg_zerocopy: notifications pending before the send")
	}
	for {
		z.sendSome()
		if z.fallback && z.err == nil && !z.cancelled && z.pos < z.Count {
			if z.err = z.copyRest(); z.err != nil && z.Ctx.Err() != nil {
				z.cancelled, z.err = true, nil
			}
		}
		if z.Ctx.Err() != nil {
			z.cancelled = true
		}
		if z.released() && (z.err != nil || z.cancelled || z.pos == z.Count) {
			break
		}
		if err := z.wait(); err != nil {
			// Cannot wait (epoll_ctl or epoll_wait failed; unreachable in
			// practice): still never return while calls are outstanding.
			if z.err == nil {
				z.err = err
			}
			z.reclaim()
			break
		}
	}
	return result(z.Ctx, z.pos, z.Count, z.cancelled, z.err)
}

// reclaim gets the notifications of the outstanding calls without the
// epoll instance, for when waiting in it failed. It resets the connection
// (SO_LINGER 0, then connect(2) to AF_UNSPEC, which disconnects the socket
// the caller holds too; the send fails anyway), so that the kernel frees
// what it had queued and notifies those calls at once, and no peer can hold
// the rest. Calls whose data a device or queueing discipline still holds
// (a clone of the segment) are notified when it lets go: reclaim waits for
// them in Go's netpoller, through a duplicate of the socket (waitReleased),
// for Tuning.MsgZCReclaim at most. Past that bound it gives up with
// ErrNotReleased: the send fails, and the kernel may still read the file's
// pages, but only to hand them to a connection that is no longer there.
func (z *zcSend) reclaim() {
	if z.released() {
		return
	}
	unix.SetsockoptLinger(z.Sock, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	var unspec unix.RawSockaddrAny // sa_family AF_UNSPEC (0)
	unix.Syscall(unix.SYS_CONNECT, uintptr(z.Sock), uintptr(unsafe.Pointer(&unspec)), unix.SizeofSockaddrInet6)
	if err := z.waitReleased(z.e.cfg.Tuning.MsgZCReclaim); err != nil {
		z.err = errors.Join(z.err, err)
	}
}

// ErrNotReleased is the error of a msgzc send that gave up waiting for its
// notifications after resetting its connection (reclaim): the kernel may
// still read the file's pages it was sending.
var ErrNotReleased = errors.New("msg_zerocopy: calls not notified after the connection was reset")

// waitReleased drains the error queue until every call is notified, waiting
// in between for the socket's next EPOLLERR in Go's netpoller, for bound at
// most. Go registers each descriptor edge-triggered (and reports EPOLLERR
// and EPOLLHUP to writers), so a reset socket, which reports EPOLLHUP for
// good, wakes the wait once, then once per notification queued. The wait is
// a write wait: a read wait fails on an event of EPOLLERR alone
// (docs/KERNEL-FACTS.md, section 4). A socket in blocking mode cannot join
// the netpoller without changing the caller's descriptor: it waits on an
// epoll instance of its own, edge-triggered, instead.
func (z *zcSend) waitReleased(bound time.Duration) error {
	var derr error
	done := func() bool {
		if _, err := z.drain(); err != nil && derr == nil {
			derr = err
		}
		return z.released()
	}
	if done() {
		return derr
	}
	fd, err := unix.FcntlInt(uintptr(z.Sock), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: %d calls: %w", ErrNotReleased, z.tr.Pending(), os.NewSyscallError("fcntl", err))
	}
	f := os.NewFile(uintptr(fd), "msgzc")
	defer f.Close()
	deadline := time.Now().Add(bound)
	if err = f.SetWriteDeadline(deadline); err == nil {
		var rc syscall.RawConn
		if rc, err = f.SyscallConn(); err == nil {
			err = rc.Write(func(uintptr) bool { return done() })
		}
	} else if errors.Is(err, os.ErrNoDeadline) {
		// Not in the netpoller: a blocking socket.
		err = z.waitReleasedEpoll(deadline, done)
	}
	if err != nil {
		return fmt.Errorf("%w: %d calls after %v: %w", ErrNotReleased, z.tr.Pending(), bound, err)
	}
	return derr
}

// waitReleasedEpoll is waitReleased's wait on an epoll instance of its own.
func (z *zcSend) waitReleasedEpoll(deadline time.Time, done func() bool) error {
	w, err := epoll.New(z.Sock, unix.EPOLLERR|unix.EPOLLET)
	if err != nil {
		return err
	}
	defer w.Close()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for !done() {
		if _, err := w.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// sendSome makes calls until the socket buffer is full, the send must wait
// for a notification, or it is done or stopped.
func (z *zcSend) sendSome() {
	for z.err == nil && !z.cancelled && !z.fallback && !z.needRoom && !z.hold && z.pos < z.Count {
		if z.tr.Pending() >= msgzcMaxCalls || !z.tr.CanSend() {
			return // wait for a notification
		}
		if z.Ctx.Err() != nil {
			z.cancelled = true
			return
		}
		p, err := z.next()
		if err != nil {
			z.err = err
			return
		}
		if p == nil {
			return // wait for the notifications of the previous window
		}
		p = p[:min(len(p), z.chunk)]
		n, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(z.Sock), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
			unix.MSG_ZEROCOPY|unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
		switch errno {
		case 0:
			z.sent(int(n))
		case unix.EINTR:
		case unix.EAGAIN:
			z.needRoom = true
		case unix.ENOBUFS:
			// The kernel could not account the call (optmem_max or
			// RLIMIT_MEMLOCK). It took nothing.
			if z.tr.Pending() > 0 {
				z.e.msgzcNoBufs.Add(1)
				z.hold = true
			} else {
				z.fallbacks++
				z.fallback = true
			}
		case unix.EFAULT:
			// The mapping reaches past the end of a file that shrank.
			z.err = shrunk(z.File, z.Off+z.Count, fmt.Errorf("send msg_zerocopy: %w", errno))
		default:
			z.err = fmt.Errorf("send msg_zerocopy: %w", os.NewSyscallError("send", errno))
		}
	}
}

// wait counts what the kernel has released so far, and waits only when that
// was nothing: for a notification, and for room when a call found none.
// Once stopped, it waits for the notifications whatever the context: the
// kernel may still read the file's pages.
func (z *zcSend) wait() error {
	got, err := z.drain()
	if err != nil && z.err == nil {
		z.err = err
	}
	if got > 0 {
		z.hold = false
		return nil
	}
	events := uint32(unix.EPOLLERR | unix.EPOLLET)
	if z.needRoom && z.err == nil && !z.cancelled {
		events |= unix.EPOLLOUT
	}
	if f := z.e.cfg.Tuning.MsgZCWait; f != nil {
		if err := f(int(z.tr.Pending())); err != nil {
			return err
		}
	}
	if events != z.events {
		if err := z.w.Modify(events); err != nil {
			return err
		}
		z.events = events
	}
	ctx := z.Ctx
	if z.err != nil || z.cancelled {
		ctx = context.Background()
	}
	ev, err := z.w.Wait(ctx)
	switch {
	case err != nil && z.Ctx.Err() != nil:
		z.cancelled = true
	case err != nil:
		return err
	}
	if ev&unix.EPOLLOUT != 0 {
		z.needRoom = false
	}
	return nil
}

// released reports whether the kernel holds nothing of this send any more.
// After a range the tracker refused (another MSG_ZEROCOPY user on the
// socket), the count can no longer be trusted: then it also waits until the
// socket's output queue is empty (SIOCOUTQ).
func (z *zcSend) released() bool {
	p := z.tr.Pending()
	if p == 0 {
		return true
	}
	if z.unattributed == 0 || z.unattributed < p {
		return false
	}
	n, err := unix.IoctlGetInt(z.Sock, unix.SIOCOUTQ)
	return err == nil && n == 0
}

// next returns the bytes to send next, from the window that holds them:
// all of the window's rest (the caller takes a chunk of it). When that is
// the next window and calls from this one await their notification, it
// returns nil: the window goes only when the kernel holds none of its pages.
func (z *zcSend) next() ([]byte, error) {
	pos := z.Off + z.pos
	if !z.win.holds(pos) {
		if z.tr.Pending() > 0 {
			return nil, nil
		}
		z.e.maps.put(&z.win)
		w, err := z.e.maps.window(z.File, z.Stat, pos, z.Off+z.Count, &z.Readable)
		if err != nil {
			return nil, err
		}
		z.win = w
	}
	return z.win.mem[pos-z.win.base:], nil
}

// sent records a successful call of n bytes.
func (z *zcSend) sent(n int) {
	z.tr.Sent()
	c := &z.calls[(z.head+int(z.tr.Pending())-1)%msgzcMaxCalls]
	*c = zcCall{n: n}
	if z.e.cfg.Notified != nil {
		c.at = time.Now()
	}
	z.pos += int64(n)
}

// drain reads the error queue until it is empty (recvmsg(2) with
// MSG_ERRQUEUE and MSG_DONTWAIT) and accounts the notifications. It returns
// the number of calls notified.
func (z *zcSend) drain() (uint64, error) {
	var got uint64
	var err error
	for {
		var msg unix.Msghdr
		msg.Control = &z.oob[0]
		msg.SetControllen(len(z.oob))
		_, _, errno := unix.Syscall(unix.SYS_RECVMSG, uintptr(z.Sock), uintptr(unsafe.Pointer(&msg)), unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return got, err
		default:
			return got, fmt.Errorf("recvmsg msg_errqueue: %w", os.NewSyscallError("recvmsg", errno))
		}
		if msg.Flags&unix.MSG_CTRUNC != 0 && err == nil {
			err = fmt.Errorf("recvmsg msg_errqueue: control message truncated at %d bytes", len(z.oob))
		}
		z.notes, _ = errqueue.Parse(z.oob[:msg.Controllen], z.notes[:0])
		for _, n := range z.notes {
			c, terr := z.tr.Notify(n)
			if terr != nil {
				// Not this send's: another user of MSG_ZEROCOPY on the socket.
				z.unattributed += n.Calls()
				if err == nil {
					err = fmt.Errorf("msg_zerocopy notification: %w", terr)
				}
				continue
			}
			got += c
			z.account(c, n.Copied)
		}
	}
}

// account takes the c oldest outstanding calls off the queue. Notifications
// usually come in order; when they do not, the split between zero-copy and
// copied bytes and the latency are approximate, the totals are not.
func (z *zcSend) account(c uint64, copied bool) {
	var bytes int64
	oldest := z.calls[z.head].at
	for range c {
		call := &z.calls[z.head]
		bytes += int64(call.n)
		*call = zcCall{}
		z.head = (z.head + 1) % msgzcMaxCalls
	}
	if z.Usage != nil {
		z.Usage.add(copied, bytes)
	}
	z.usage.add(copied, bytes)
	if f := z.e.cfg.Notified; f != nil {
		f(MsgZC, time.Since(oldest), copied)
	}
}

// copyRest sends the rest of the range with send(2), which copies. Nothing
// is outstanding then: the error queue stays quiet, and next never holds
// back a window.
func (z *zcSend) copyRest() error {
	if z.events != unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLET {
		if err := z.w.Modify(unix.EPOLLOUT | unix.EPOLLERR | unix.EPOLLET); err != nil {
			return err
		}
		z.events = unix.EPOLLOUT | unix.EPOLLERR | unix.EPOLLET
	}
	sw := &sockWait{fd: z.Sock, w: z.w}
	for z.pos < z.Count {
		p, err := z.next()
		if err != nil {
			return err
		}
		// Whole windows at once: send(2) copies, no chunk is needed.
		n, err := sendAll(z.Ctx, sw, p)
		z.pos += int64(n)
		if err != nil {
			if errors.Is(err, unix.EFAULT) {
				err = shrunk(z.File, z.Off+z.Count, err)
			}
			return err
		}
	}
	return nil
}
