package engine

import (
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/uring"
)

// uringSend is one send of the URing engine: READ_FIXED into registered
// buffers, then SEND_ZC from them, up to maxDepth chunks in flight. Sends go
// out in stream order, as one IOSQE_IO_LINK chain at a time with
// MSG_WAITALL, so that a chunk never overtakes another. When the chunk at
// the front still has to be read, its READ_FIXED is linked before its
// SEND_ZC in the same submission (a short read breaks the link, and the rest
// is read and sent again). A header is copied into the first buffer, ahead of
// the file's first bytes, and leaves with them in one send.
//
// Buffers are lent for as long as the kernel works on them, not for as long
// as the peer takes: a send takes buffers only for what the socket can take
// now (its send buffer less what it holds unacknowledged), so that a SEND_ZC
// completes instead of waiting in the kernel for the peer; with nothing of
// its own in flight and the socket full, it waits for room in the Engines'
// Poller holding no buffer. It holds at most the pool's share (bufPool.allows),
// counting the buffers whose notification is pending, and when the pool is
// empty it sends the next part with Copy's send(2) rather than wait for
// another connection's buffer (a fallback, counted in poolShort).
//
// The file is safe once every read has completed; the buffers are the
// Sender's and return to its pool with their notifications. On success and
// on errors the send waits for those notifications too. On cancellation it
// cancels what is in flight, waits for the results of reads and sends (not
// for notifications), and returns: the buffers stay parked until the kernel
// lets go of them.
type uringSend struct {
	*transfer
	d     *driver
	pool  *bufPool
	depth int
	hdr   int64 // header bytes, ahead of the range in the stream
	total int64 // header and range

	queue  []*chunk // not yet fully sent, in stream order
	next   int64    // next stream position to give a chunk
	sent   int64
	err    error
	reads  int // requests whose result is pending
	sends  int
	notifs int // notifications pending
	batch  []*request

	held     atomic.Int64 // buffers lent to this send and not back in the pool
	roomw    *sockWait    // the wait for room in the socket, made at the first
	waitRoom bool         // nothing in flight, the socket full: wait for room
	copied   bool         // lend copied a part: nothing to wait for, go round
	sndbuf   int          // SO_SNDBUF, read again when it leaves no room
	woke     bool         // the wait for room returned: lend at least a little
}

func (t *transfer) uring() (int64, error) {
	u := &uringSend{
		transfer: t,
		d:        newDriver(t.e.loop, t.Ctx),
		pool:     t.e.pool,
		depth:    min(t.e.pool.n, maxDepth),
		hdr:      int64(len(t.Header)),
		total:    int64(len(t.Header)) + t.Count,
		roomw:    t.e.roomWait(t.Sock),
	}
	defer u.roomw.close()
	defer func() {
		for _, c := range u.queue {
			c.retire()
		}
	}()
	for {
		if u.err == nil && !u.d.cancelled {
			u.lend()
			u.submit(u.plan())
		}
		if u.err != nil && t.Ctx.Err() != nil {
			u.d.stop(nil) // Begin refused: what is in flight must be cancelled too
		}
		if u.finished() {
			return result(t.Ctx, u.sent, u.total, u.d.cancelled, u.err)
		}
		if u.copied {
			u.copied = false
			if t.Ctx.Err() == nil {
				continue // nothing in flight may be waited for: lend again
			}
		}
		var room <-chan uint32
		if u.waitRoom && !u.d.cancelled {
			c, err := u.roomw.arm()
			if err != nil {
				u.woke = true // cannot wait here: let SEND_ZC wait in the kernel
				continue
			}
			room = c
		}
		evs, _, ready := u.d.nextOr(u.d.cancelLive, room)
		u.woke = u.woke || ready
		for _, e := range evs {
			u.handle(e)
		}
	}
}

// lend lends buffers to the stream still to send: up to what the socket can
// take now beyond what is lent and not yet sent, and up to the send's share
// of the pool. With nothing in flight, it asks to wait for room when the
// socket is full, and copies the next part when the pool is empty.
func (u *uringSend) lend() {
	u.waitRoom = false
	if u.next == u.total || len(u.queue) >= u.depth || !u.pool.allows(u.held.Load()) {
		return // a completion will come; look again then
	}
	idle := len(u.queue) == 0 && u.reads+u.sends == 0
	budget := u.room()
	for _, c := range u.queue {
		budget -= int64(c.n - c.acked)
	}
	if budget <= 0 {
		u.waitRoom = idle
		return
	}
	u.woke = false
	for u.next < u.total && len(u.queue) < u.depth && u.pool.allows(u.held.Load()) && budget > 0 {
		idx, ok := u.pool.tryGet()
		if !ok {
			if idle {
				u.copyPart(budget)
			}
			return // else a completion of this send's will come
		}
		c := u.pool.lend(idx, u.next, int(min(u.total-u.next, int64(u.pool.size), budget)), &u.held)
		if u.next < u.hdr {
			c.filled = copy(c.mem[:c.n], u.Header[u.next:])
		}
		u.next += int64(c.n)
		budget -= int64(c.n)
		u.queue = append(u.queue, c)
		idle = false
	}
}

// room is what the socket can take now: its send buffer less the bytes it
// holds unacknowledged (SO_SNDBUF, SIOCOUTQ; docs/ARCHITECTURE.md, "Who may
// hold what, for how long"). Below a third of the buffer it is 0: the
// kernel reports the socket writable (EPOLLOUT) from a third free, so a wait
// for room never wakes to find none. After such a wake it is at least one
// buffer's worth up to that third, and a socket that cannot say lets the
// SEND_ZC find out.
func (u *uringSend) room() int64 {
	outq, err := unix.IoctlGetInt(u.Sock, unix.SIOCOUTQ)
	if err != nil {
		return int64(u.pool.size)
	}
	free := int64(u.sndbuf - outq)
	if u.sndbuf == 0 || free < int64(u.sndbuf/3) {
		// The kernel grows the buffer as the connection goes (TCP's
		// autotuning): look again before counting no room.
		if u.sndbuf, err = unix.GetsockoptInt(u.Sock, unix.SOL_SOCKET, unix.SO_SNDBUF); err != nil {
			return int64(u.pool.size)
		}
		free = int64(u.sndbuf - outq)
	}
	sndbuf := u.sndbuf
	if free < int64(sndbuf/3) {
		free = 0
	}
	if u.woke {
		free = max(free, min(int64(u.pool.size), int64(sndbuf/3)), 4096)
	}
	return free
}

// copyPart sends the next part of the stream with Copy's send(2) (from a
// pread(2) buffer or a mapping of the file), for want of a registered
// buffer: the pool's are all lent, to other sends and receives. The part is
// what the socket takes now, at least a buffer's worth; copy waits for room
// holding no registered buffer. Nothing of this send is in flight, so the
// bytes follow the ones before in the stream.
func (u *uringSend) copyPart(budget int64) {
	n := min(u.total-u.next, max(budget, int64(u.pool.size)))
	part := &transfer{e: u.e, Job: u.Job}
	if u.next < u.hdr {
		part.Header = u.Header[u.next:]
		part.Off, part.Count = u.Off, max(0, n-(u.hdr-u.next))
	} else {
		part.Header = nil
		part.Off, part.Count = u.Off+u.next-u.hdr, n
	}
	sent, err := part.copy()
	u.copied = true
	u.fallbacks++
	u.e.poolShort.Add(1)
	u.next += sent
	u.sent += sent
	if err != nil {
		if u.Ctx.Err() != nil {
			u.d.stop(nil)
		} else {
			u.err = err
		}
	}
}

// plan fills the batch to submit and returns the length of the chain at
// its start. With no send in flight, the chunks at the front go out as one
// chain, which the first one's read may lead; the reads of the other chunks
// follow, independent.
func (u *uringSend) plan() int {
	u.batch = u.batch[:0]
	if u.sends == 0 && u.err == nil {
		usage := !u.e.noReportUsage.Load()
		for i, c := range u.queue {
			if c.sending || c.reading || i == u.depth {
				break
			}
			lead := c.filled < c.n
			if lead && i > 0 {
				break
			}
			if lead {
				u.batch = append(u.batch, u.readRequest(c))
			}
			u.batch = append(u.batch, u.sendRequest(&request{kind: reqSend, c: c, n: c.n - c.acked, usage: usage}))
		}
	}
	chain := len(u.batch)
	for _, c := range u.queue {
		if !c.reading && !c.sending && c.filled < c.n {
			u.batch = append(u.batch, u.readRequest(c))
		}
	}
	return chain
}

// readRequest marks c as reading and returns the READ_FIXED request for the
// rest of it.
func (u *uringSend) readRequest(c *chunk) *request {
	c.reading = true
	return &request{kind: reqRead, c: c, n: c.n - c.filled}
}

// sendRequest readies r to report the kernel's usage and the notification's
// latency.
func (t *transfer) sendRequest(r *request) *request {
	r.counters, r.send = t.Usage, &t.usage
	if f := t.e.cfg.Notified; f != nil {
		r.notified, r.kind2, r.start = f, t.Kind, time.Now()
	}
	return r
}

// submit submits the batch in one io_uring_enter, its first chain requests
// linked in order. Those the kernel took hold their chunk until their last
// CQE.
func (u *uringSend) submit(chain int) {
	rwFlags := uint32(0)
	if u.e.cfg.DontCache && !u.e.noDontCache.Load() {
		rwFlags = unix.RWF_DONTCACHE
	}
	usage := uint16(0)
	if !u.e.noReportUsage.Load() {
		usage = uring.SendZCReportUsage
	}
	prep := func(_ int, r *request, sqe *uring.SQE) {
		c := r.c
		c.ref()
		c.sending = c.sending || r.kind == reqSend
		if r.kind == reqRead {
			r.dontcache = rwFlags != 0
			sqe.PrepReadFixed(u.File, unsafe.Pointer(&c.mem[c.filled]), uint32(r.n), uint64(u.Off+c.pos+int64(c.filled)-u.hdr), c.idx, rwFlags)
		} else {
			sqe.PrepSendZC(u.Sock, unsafe.Pointer(&c.mem[c.acked]), uint32(r.n), unix.MSG_WAITALL|unix.MSG_NOSIGNAL,
				uring.RecvsendFixedBuf|usage, c.idx)
		}
	}
	undo := func(r *request, prepared bool) {
		if r.kind == reqRead {
			r.c.reading = false
		} else {
			r.c.sending = false
		}
		if prepared {
			r.c.unref()
		}
	}
	if f := u.e.cfg.Tuning.URingSubmit; f != nil {
		if err := f(u.sends); err != nil { // as if Begin refused
			for _, r := range u.batch {
				undo(r, false)
			}
			u.err = err
			return
		}
	}
	if len(u.batch) == 0 {
		return
	}
	k, err := u.d.submit(u.Ctx, u.batch, prep, func(i int) bool { return i < chain-1 }, undo)
	for _, r := range u.batch[:k] {
		if r.kind == reqRead {
			u.reads++
		} else {
			u.sends++
		}
	}
	u.err = err
}

// finished reports whether the send is over: everything sent and released,
// or stopped with nothing left that the file or this send must wait for.
func (u *uringSend) finished() bool {
	if u.reads > 0 || u.sends > 0 {
		return false
	}
	return u.d.cancelled || u.notifs == 0 && (u.err != nil || u.next == u.total && len(u.queue) == 0)
}

// handle takes in one CQE.
func (u *uringSend) handle(e event) {
	if e.cqe.Notif() {
		u.notifs--
		return
	}
	e.r.seen = true
	if e.r.kind == reqRead {
		u.readDone(e.r, e.cqe.Res)
	} else {
		u.sendDone(e.r, e.cqe)
	}
}

func (u *uringSend) readDone(r *request, res int32) {
	c := r.c
	u.reads--
	c.reading = false
	switch {
	case res > 0:
		c.filled += int(res)
	case res == 0:
		if u.err == nil {
			u.err = shrunk(u.File, u.Off+u.Count, fmt.Errorf("read fixed: end of file at %d", u.Off+c.pos+int64(c.filled)-u.hdr))
		}
	case errnoOf(res) == unix.EOPNOTSUPP && r.dontcache:
		// RWF_DONTCACHE refused here: read without it.
		if !u.e.noDontCache.Swap(true) {
			u.fallbacks++
		}
	case retryable(res):
	default:
		if u.err == nil {
			u.err = fmt.Errorf("read fixed: %w", errnoOf(res))
		}
	}
}

func (u *uringSend) sendDone(r *request, cqe uring.CQE) {
	c, res := r.c, cqe.Res
	u.sends--
	c.sending = false
	if cqe.More() {
		u.notifs++
	}
	switch {
	case res >= 0:
		c.acked += int(res)
		u.sent += int64(res)
		if c.acked == c.n {
			// Sends complete in order: c is the front of the queue.
			u.queue = u.queue[1:]
			c.retire()
		}
	case errnoOf(res) == unix.EINVAL && r.usage && !u.e.noReportUsage.Load():
		u.e.noReportUsage.Store(true) // before Linux 6.2
	case retryable(res):
	default:
		if u.err == nil {
			u.err = fmt.Errorf("send zc: %w", errnoOf(res))
		}
	}
}
