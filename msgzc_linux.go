package sendfile2

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/epoll"
	"github.com/sendfile2/sendfile2/internal/errqueue"
)

// msgzcChunk is the size of one send(2) with MSG_ZEROCOPY. Each call costs
// a notification and pins its pages; below about 10 KB the copy it saves
// costs less (KERNEL.md, section 4). BenchmarkMsgZCVariants measures it. On
// loopback (2 shared vCPUs, runs swinging by 30% and more), 64 KiB was the
// best or within the noise of the best for 1 MiB and 64 MiB ranges; 256 KiB
// and 1 MiB were slower on 64 MiB ranges in most runs.
var msgzcChunk = 64 << 10

// msgzcMaxCalls bounds the zero-copy calls of one send whose notification
// has not come yet, and so the file's pages it pins: msgzcMaxCalls *
// msgzcChunk bytes. Each call also holds a little of net.core.optmem_max.
const msgzcMaxCalls = 32

// msgzcPread makes MsgZC send from buffers filled by pread(2) instead of
// from a mapping of the file, for BenchmarkMsgZCVariants.
var msgzcPread = false

// msgzcBuffers is the number of pread(2) buffers of that variant, each of
// msgzcChunk bytes.
const msgzcBuffers = 8

// probeMsgZC reports whether TCP sockets accept SO_ZEROCOPY (Linux 4.14).
func probeMsgZC() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	}
	if err != nil {
		return fmt.Errorf("sendfile2: msg_zerocopy probe: %w", os.NewSyscallError("socket", err))
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ZEROCOPY, 1); err != nil {
		return fmt.Errorf("sendfile2: SO_ZEROCOPY on a TCP socket (Linux 4.14+): %w",
			errors.Join(ErrNotSupported, os.NewSyscallError("setsockopt", err)))
	}
	return nil
}

// msgzc is the MsgZC method: send(2) with MSG_ZEROCOPY from a shared mapping
// of the file, non-blocking, up to msgzcMaxCalls calls awaiting their
// notification. Every successful call pins the file's page-cache pages until
// the kernel posts its notification on the socket's error queue
// (recvmsg(2) with MSG_ERRQUEUE), so Send returns only when every call has
// been notified: on success, on errors and on cancellation. Waiting, for room
// in the socket buffer (EPOLLOUT) or for notifications (EPOLLERR), goes
// through one private epoll instance, edge-triggered, watching only what the
// send waits for at that moment.
//
// ENOBUFS (net.core.optmem_max or RLIMIT_MEMLOCK exhausted) waits for
// notifications and sends again; with none to wait for, the rest of the send
// is copied with send(2) and counted as a fallback.
func (t *transfer) msgzc() (int64, error) {
	if t.count == 0 {
		return 0, nil
	}
	release, err := lockZCSocket(t.ctx, t.sock)
	if err != nil {
		return 0, err
	}
	defer release()
	if err := unix.SetsockoptInt(t.sock, unix.SOL_SOCKET, unix.SO_ZEROCOPY, 1); err != nil {
		if err == unix.ENOPROTOOPT || err == unix.EOPNOTSUPP || err == unix.EBUSY {
			// Refused for this socket: copying keeps the guarantee.
			t.s.fallbacks.Add(1)
			return t.copy()
		}
		return 0, fmt.Errorf("so_zerocopy: %w", os.NewSyscallError("setsockopt", err))
	}
	w, err := epoll.New(t.sock, unix.EPOLLERR|unix.EPOLLET)
	if err != nil {
		return 0, err
	}
	defer w.Close()
	z := &zcSend{t: t, w: w, events: unix.EPOLLERR | unix.EPOLLET, stats: t.s.counter(MsgZC), obs: t.s.cfg.Observer}
	defer z.unmap()
	return z.run()
}

// zcSend is the state of one MsgZC send.
type zcSend struct {
	t      *transfer
	w      *epoll.Waiter
	events uint32 // registered with w
	stats  *methodCounters
	obs    Observer

	pos    int64 // bytes of the range handed to the kernel
	mem    []byte
	memOff int64 // file offset of mem[0]

	tr    errqueue.Tracker
	calls [msgzcMaxCalls]zcCall // outstanding calls, oldest first, from head
	head  int

	unattributed uint64 // calls of ranges the tracker refused
	oob          [256]byte
	notes        []errqueue.Notification

	bufs *zcBufs // the pread(2) variant
}

// zcCall is one successful zero-copy call awaiting its notification.
type zcCall struct {
	n  int
	at time.Time // when the Observer wants latencies
}

func (z *zcSend) run() (int64, error) {
	t := z.t
	var (
		err       error
		cancelled bool
		needRoom  bool // the socket buffer is full: wait for EPOLLOUT
		hold      bool // ENOBUFS: wait for a notification before sending
		fallback  bool // ENOBUFS with nothing outstanding: copy the rest
	)
	if msgzcPread {
		b, err := newZCBufs()
		if err != nil {
			return 0, err
		}
		z.bufs = b
		defer b.release()
	}
	// Nothing of this send is outstanding yet, so a notification already
	// queued is someone else's: another user of MSG_ZEROCOPY on the socket,
	// whose notifications could later be taken for this send's. Refuse.
	if _, err = z.drain(); err == nil && z.unattributed > 0 {
		err = errors.New("msg_zerocopy: notifications pending before the send")
	}
	if err != nil {
		return 0, err
	}
	for {
		for err == nil && !cancelled && !fallback && !needRoom && !hold && z.pos < t.count {
			if z.tr.Pending() >= msgzcMaxCalls || !z.tr.CanSend() {
				break // wait for a notification
			}
			if t.ctx.Err() != nil {
				cancelled = true
				break
			}
			p, buf, ok, perr := z.next()
			if perr != nil {
				err = perr
				break
			}
			if !ok {
				break // every pread buffer is still lent to the kernel
			}
			n, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(t.sock), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
				unix.MSG_ZEROCOPY|unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
			switch errno {
			case 0:
				z.sent(int(n), buf)
			case unix.EINTR:
			case unix.EAGAIN:
				needRoom = true
			case unix.ENOBUFS:
				// The kernel could not account the call (optmem_max or
				// RLIMIT_MEMLOCK). It took nothing.
				if z.tr.Pending() > 0 {
					t.s.msgzcNoBufs.Add(1)
					hold = true
				} else {
					t.s.fallbacks.Add(1)
					fallback = true
				}
			case unix.EFAULT:
				// The mapping reaches past the end of a file that shrank.
				err = shrunk(t.file, t.off+t.count, fmt.Errorf("send msg_zerocopy: %w", errno))
			default:
				err = fmt.Errorf("send msg_zerocopy: %w", os.NewSyscallError("send", errno))
			}
		}
		if fallback && err == nil && !cancelled && z.pos < t.count {
			if err = z.copyRest(); err != nil && t.ctx.Err() != nil {
				cancelled, err = true, nil
			}
		}
		if t.ctx.Err() != nil {
			cancelled = true
		}
		if z.released() && (err != nil || cancelled || z.pos == t.count) {
			break
		}
		// Count what the kernel has released so far; wait only when that
		// was nothing.
		got, derr := z.drain()
		if derr != nil && err == nil {
			err = derr
		}
		if got > 0 {
			hold = false
			continue
		}
		events := uint32(unix.EPOLLERR | unix.EPOLLET)
		if needRoom && err == nil && !cancelled {
			events |= unix.EPOLLOUT
		}
		if events != z.events {
			if merr := z.w.Modify(events); merr != nil {
				return z.pos, merr // cannot wait; unreachable in practice
			}
			z.events = events
		}
		// Once stopped, wait for the notifications whatever the context:
		// the kernel may still read the file's pages.
		ctx := t.ctx
		if err != nil || cancelled {
			ctx = context.Background()
		}
		ev, werr := z.w.Wait(ctx)
		switch {
		case werr != nil && t.ctx.Err() != nil:
			cancelled = true
		case werr != nil:
			return z.pos, werr // cannot wait; unreachable in practice
		}
		if ev&unix.EPOLLOUT != 0 {
			needRoom = false
		}
	}
	if cancelled {
		err = context.Cause(t.ctx)
	}
	if err == nil && z.pos != t.count {
		err = fmt.Errorf("sent %d of %d bytes", z.pos, t.count)
	}
	return z.pos, err
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
	n, err := unix.IoctlGetInt(z.t.sock, unix.SIOCOUTQ)
	return err == nil && n == 0
}

// next returns the bytes to send next: from the mapping, or from a pread(2)
// buffer, which is then -1 or its index. ok is false when the pread variant
// has no free buffer.
func (z *zcSend) next() (p []byte, buf int, ok bool, err error) {
	t := z.t
	if z.bufs != nil {
		return z.bufs.next(z)
	}
	pos := t.off + z.pos
	if z.mem == nil || pos >= z.memOff+int64(len(z.mem)) {
		if err := z.mapAt(pos); err != nil {
			return nil, -1, false, err
		}
	}
	rest := z.mem[pos-z.memOff:]
	return rest[:min(int64(len(rest)), int64(msgzcChunk))], -1, true, nil
}

// mapAt maps the window of the range that starts at file offset pos. The
// previous window may go: the pages that calls still pin stay pinned.
func (z *zcSend) mapAt(pos int64) error {
	z.unmap()
	base := pos &^ int64(os.Getpagesize()-1)
	n := min(z.t.off+z.t.count-base, copyWindow)
	mem, err := mmap(z.t.file, base, int(n), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return os.NewSyscallError("mmap", err)
	}
	z.mem, z.memOff = mem, base
	return nil
}

func (z *zcSend) unmap() {
	if z.mem != nil {
		munmap(z.mem)
		z.mem = nil
	}
}

// sent records a successful call of n bytes.
func (z *zcSend) sent(n, buf int) {
	z.tr.Sent()
	c := &z.calls[(z.head+int(z.tr.Pending())-1)%msgzcMaxCalls]
	*c = zcCall{n: n}
	if z.obs != nil {
		c.at = time.Now()
	}
	z.pos += int64(n)
	if z.bufs != nil {
		z.bufs.sent(buf, n, z.tr.Calls())
	}
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
		_, _, errno := unix.Syscall(unix.SYS_RECVMSG, uintptr(z.t.sock), uintptr(unsafe.Pointer(&msg)), unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
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
	if copied {
		z.stats.copied.Add(bytes)
		z.t.copied.Add(bytes)
	} else {
		z.stats.zeroCopy.Add(bytes)
		z.t.zc.Add(bytes)
	}
	if z.obs != nil {
		z.obs.Notified(MsgZC, time.Since(oldest), copied)
	}
}

// copyRest sends the rest of the range with send(2), which copies. Nothing
// is outstanding then: the error queue stays quiet.
func (z *zcSend) copyRest() error {
	t := z.t
	if z.events != unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLET {
		if err := z.w.Modify(unix.EPOLLOUT | unix.EPOLLERR | unix.EPOLLET); err != nil {
			return err
		}
		z.events = unix.EPOLLOUT | unix.EPOLLERR | unix.EPOLLET
	}
	sw := &sockWait{fd: t.sock, w: z.w}
	for z.pos < t.count {
		z.bufs = nil // nothing outstanding: its buffers are free; send from a mapping
		p, _, _, err := z.next()
		if err != nil {
			return err
		}
		// Whole windows at once: send(2) copies, no chunk is needed.
		p = z.mem[t.off+z.pos-z.memOff:]
		n, err := sendAll(t.ctx, sw, p)
		z.pos += int64(n)
		if err != nil {
			if errors.Is(err, unix.EFAULT) {
				err = shrunk(t.file, t.off+t.count, err)
			}
			return err
		}
	}
	return nil
}

// zcSockets serializes the MsgZC sends on one socket: the notifications of a
// socket go to whichever send reads its error queue, so two sends at once
// could not tell theirs apart. Keyed by the socket's inode number.
var zcSockets = struct {
	sync.Mutex
	m map[uint64]*zcSocket
}{m: map[uint64]*zcSocket{}}

type zcSocket struct {
	sem  chan struct{}
	refs int
}

func lockZCSocket(ctx context.Context, fd int) (func(), error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, os.NewSyscallError("fstat", err)
	}
	zcSockets.Lock()
	s := zcSockets.m[st.Ino]
	if s == nil {
		s = &zcSocket{sem: make(chan struct{}, 1)}
		zcSockets.m[st.Ino] = s
	}
	s.refs++
	zcSockets.Unlock()
	unref := func() {
		zcSockets.Lock()
		if s.refs--; s.refs == 0 {
			delete(zcSockets.m, st.Ino)
		}
		zcSockets.Unlock()
	}
	select {
	case s.sem <- struct{}{}:
		return func() { <-s.sem; unref() }, nil
	case <-ctx.Done():
		unref()
		return nil, context.Cause(ctx)
	}
}

// zcBufs are the pread(2) buffers of the MsgZC variant that does not map
// the file, in anonymous memory outside the Go heap. A buffer is lent to the
// kernel from its first call until every call up to its last one has been
// notified: notifications may come out of order, so the tracker must know
// where the send's calls start (errqueue.Tracker.NotifiedBelow), and until it
// does, the send waits for all of them before it reuses a buffer.
type zcBufs struct {
	mem  []byte
	end  [msgzcBuffers]uint64 // calls made up to the buffer's last one; 0 if unused
	cur  int                  // buffer being sent from, or -1
	fill int                  // bytes read into cur
	done int                  // bytes of cur sent
}

func newZCBufs() (*zcBufs, error) {
	mem, err := mmap(-1, 0, msgzcBuffers*msgzcChunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	return &zcBufs{mem: mem, cur: -1}, nil
}

func (b *zcBufs) buf(i int) []byte { return b.mem[i*msgzcChunk : (i+1)*msgzcChunk] }

// next returns the unsent bytes of the current buffer, or reads the range's
// next bytes into a free buffer; ok is false when none is free.
func (b *zcBufs) next(z *zcSend) ([]byte, int, bool, error) {
	t := z.t
	if b.cur >= 0 && b.done < b.fill {
		return b.buf(b.cur)[b.done:b.fill], b.cur, true, nil
	}
	b.cur = -1
	for i, end := range b.end {
		if end == 0 || z.tr.NotifiedBelow(end) {
			b.cur = i
			break
		}
	}
	if b.cur < 0 {
		return nil, -1, false, nil
	}
	p := b.buf(b.cur)[:min(int64(msgzcChunk), t.count-z.pos)]
	for {
		n, err := unix.Pread(t.file, p, t.off+z.pos)
		switch {
		case err == unix.EINTR || err == unix.EAGAIN:
			continue
		case err != nil:
			return nil, -1, false, os.NewSyscallError("pread", err)
		case n == 0:
			return nil, -1, false, shrunk(t.file, t.off+t.count, fmt.Errorf("pread: end of file at %d", t.off+z.pos))
		}
		b.fill, b.done = n, 0
		return b.buf(b.cur)[:n], b.cur, true, nil
	}
}

// sent records a call of n bytes from buffer i, the calls-th of the send.
func (b *zcBufs) sent(i, n int, calls uint64) {
	b.end[i] = calls
	b.done += n
}

func (b *zcBufs) release() {
	if b.mem != nil {
		munmap(b.mem)
		b.mem = nil
	}
}
