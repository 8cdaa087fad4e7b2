package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/uring"
)

// uringRecv is one receive of the URing engine: IORING_OP_RECV with
// MSG_WAITALL from the socket into registered buffers, IORING_OP_WRITE_FIXED
// from them to the file, up to maxDepth buffers per receive.
//
// Receives land in stream order: they go out as one IOSQE_IO_LINK chain at a
// time, into the buffer being filled and then into new ones, each asking for
// the rest of its buffer with MSG_WAITALL. A receive that completes short (the
// end of the stream, an error, a cancellation) breaks the chain, and the
// kernel cancels the receives linked after it before they take any byte; the
// next chain starts where the short one stopped. Writes go out in stream
// order too, the full buffers at the front of the queue as one linked chain at
// a time: a short or failed write breaks that chain, so the file never holds
// bytes past the first one that failed, and the count returned is exact. A
// buffer goes back to the pool when its bytes are all written.
//
// Buffers are lent for what the socket holds (FIONREAD), never for bytes the
// peer has yet to send: with nothing to read, the receive waits in the
// Engines' Poller holding no buffer for it (the buffers being written go
// back as their writes complete), so a peer that stops in the middle of its
// body holds nothing of the pool. It holds at most the pool's share
// (bufPool.allows); with the pool empty and nothing of its own in flight, it
// takes the bytes with recv(2) and pwrite(2) (copyPart) rather than wait for
// another connection's buffer.
type uringRecv struct {
	*receiver
	d        *driver
	pool     *bufPool
	depth    int
	rwFlags  uint32
	useFsync bool

	queue    []*chunk // buffers lent to this receive, in stream order
	next     int64    // stream position after the last buffer of queue
	received int64    // bytes taken from the socket
	written  int64    // bytes written, contiguous from Off
	recvs    []*request
	writes   int
	fsync    *request
	ended    bool // end of stream, or Count bytes received
	synced   bool
	rerr     error // from the socket
	werr     error // from the file or the ring: stops everything
	batch    []*request
	links    []bool // links[i]: batch[i] is linked to batch[i+1]

	held     atomic.Int64 // buffers lent to this receive and not back in the pool
	dataw    *sockWait    // the wait for bytes to read, made at the first
	waitData bool         // nothing to read: wait for the peer
	woke     bool         // the wait returned: a receive learns what came
}

func (r *receiver) uring() (int64, error) {
	u := &uringRecv{
		receiver: r,
		d:        newDriver(r.e.loop, r.Ctx),
		pool:     r.e.pool,
		depth:    min(r.e.pool.n, maxDepth),
		useFsync: r.e.cfg.Sync && r.e.loop.Probe().Supports(uring.OpFsync),
		dataw:    r.e.dataWait(r.Sock),
	}
	defer u.dataw.close()
	if r.e.cfg.DontCache {
		u.rwFlags = unix.RWF_DONTCACHE
	}
	defer func() {
		for _, c := range u.queue {
			c.retire()
		}
	}()
	for {
		u.batch, u.links = u.batch[:0], u.links[:0]
		u.waitData = false
		u.planWrites()
		if len(u.recvs) == 0 && !u.stopped() && u.planRecvs() {
			continue // received without a buffer: look again
		}
		u.planFsync()
		if len(u.batch) > 0 && !u.submit() {
			continue
		}
		if len(u.recvs) == 0 && u.writes == 0 && u.fsync == nil && !u.waitData {
			return u.result() // nothing in flight, nothing more to submit
		}
		var data <-chan uint32
		if u.waitData {
			c, err := u.dataw.arm()
			if err != nil {
				u.woke = true // cannot wait here: let the RECV wait in the kernel
				continue
			}
			data = c
		}
		evs, _, ready := u.d.nextOr(u.cancel, data)
		u.woke = u.woke || ready
		for _, e := range evs {
			u.handle(e)
		}
		u.giveBack()
	}
}

// stopped reports whether the receive takes no more bytes from the socket:
// the end of the stream, an error, or ctx ended. What was received is still
// written, unless the file failed.
func (u *uringRecv) stopped() bool {
	return u.ended || u.rerr != nil || u.werr != nil || u.d.cancelled
}

// add appends q to the batch, linked to the request before it when both are
// of the same kind.
func (u *uringRecv) add(q *request) {
	if len(u.batch) > 0 {
		u.links = append(u.links, u.batch[len(u.batch)-1].kind == q.kind)
	}
	u.batch = append(u.batch, q)
}

// planWrites adds the writes of the full buffers at the front of the queue
// (of every filled one once stopped), when no write is in flight.
func (u *uringRecv) planWrites() {
	if u.writes > 0 || u.werr != nil {
		return
	}
	stopped := u.stopped()
	for _, c := range u.queue {
		if c.reading || c.acked == c.filled || c.filled < c.n && !stopped {
			break
		}
		u.add(&request{kind: reqWrite, c: c, n: c.filled - c.acked, dontcache: u.rwFlags != 0})
	}
}

// planRecvs adds the next chain of receives, for the bytes the socket holds
// now, into new buffers, up to the receive's share of the pool. With nothing
// to read it asks to wait for data, unless woken by the wait: then one
// receive, MSG_DONTWAIT, learns what came (the end of the stream, an error).
// With the pool empty and nothing of its own in flight it receives with
// copyPart and reports true: go round again.
func (u *uringRecv) planRecvs() bool {
	want := int64(math.MaxInt64)
	if u.Count >= 0 {
		want = u.Count - u.next
	}
	avail := u.avail()
	if avail == 0 && !u.woke {
		u.waitData = true
		return false
	}
	peek := avail == 0
	u.woke = false
	take := min(want, max(avail, 1))
	idle := len(u.batch) == 0 && u.writes == 0 // nothing to write before this chain
	for _, c := range u.queue {
		idle = idle && c.acked == 0
	}
	for take > 0 && len(u.queue) < u.depth && u.pool.allows(u.held.Load()) {
		idx, ok := u.pool.tryGet()
		if !ok {
			if len(u.queue) == 0 && u.writes == 0 && len(u.batch) == 0 {
				if u.Ctx.Err() != nil {
					u.d.stop(u.cancel)
				} else {
					u.copyPart(take)
				}
				return true
			}
			break // a completion of this receive's will come
		}
		n := min(take, int64(u.pool.size))
		if peek {
			n = min(want, int64(u.pool.size))
		}
		c := u.pool.lend(idx, u.next, int(n), &u.held)
		u.next += n
		take -= n
		u.queue = append(u.queue, c)
		u.add(&request{kind: reqRecv, c: c, n: c.n, peek: peek})
	}
	if idle && !peek && u.next == u.Count && len(u.batch) > 0 {
		u.linkLastChain()
	}
	return false
}

// avail is the number of bytes the socket holds (FIONREAD). A socket that
// cannot say is taken to hold a buffer's worth: the RECV waits in the kernel.
func (u *uringRecv) avail() int64 {
	n, err := unix.IoctlGetInt(u.Sock, unix.SIOCINQ)
	if err != nil {
		return int64(u.pool.size)
	}
	return int64(n)
}

// copyPart takes what the socket holds, up to want bytes, with recv(2)
// (MSG_DONTWAIT) into a copy buffer and writes it with pwrite(2), for want
// of a registered buffer: the pool's are all lent, to other sends and
// receives. Nothing of this receive is in flight, so the bytes land right
// after the ones before.
func (u *uringRecv) copyPart(want int64) {
	u.fallbacks++
	u.e.poolShort.Add(1)
	bp := getCopyBuf(want)
	defer putCopyBuf(bp)
	buf := *bp
	for want > 0 {
		n, errno := recvDontWait(u.Sock, buf[:min(int64(len(buf)), want)])
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			return
		case errno != 0:
			u.rerr = fmt.Errorf("recv: %w", errno)
			return
		case n == 0:
			u.ended = true
			if u.Count >= 0 {
				u.rerr = unexpectedEOF(u.received, u.Count)
			}
			return
		}
		w, err := pwriteAll(u.File, buf[:n], u.Off+u.received)
		u.received += int64(n)
		u.written += int64(w)
		u.next = u.received
		want -= int64(n)
		if err != nil {
			u.werr = err
			return
		}
		if u.received == u.Count {
			u.ended = true
			return
		}
	}
}

// linkLastChain links, after a chain of receives that ends the stream with
// nothing to write before it, the writes of every buffer (and the fsync), to
// complete the whole receive in one round trip. A short receive or write
// breaks the chain, and what the kernel cancelled is submitted again as
// usual.
func (u *uringRecv) linkLastChain() {
	u.links = append(u.links, true)
	for i, c := range u.queue {
		if i > 0 {
			u.links = append(u.links, true)
		}
		u.batch = append(u.batch, &request{kind: reqWrite, c: c, n: c.n, dontcache: u.rwFlags != 0})
	}
	if u.useFsync {
		u.links = append(u.links, true)
		u.batch = append(u.batch, &request{kind: reqFsync})
	}
}

// planFsync adds the fsync of the range once everything is written.
func (u *uringRecv) planFsync() {
	if u.useFsync && u.fsync == nil && !u.synced && u.ended && u.rerr == nil && u.werr == nil && !u.d.cancelled &&
		len(u.queue) == 0 && u.writes == 0 && len(u.batch) == 0 {
		u.add(&request{kind: reqFsync})
	}
}

// submit submits the batch. It reports false when ctx ended meanwhile: the
// receive stops receiving, and goes round again to write what it has.
func (u *uringRecv) submit() bool {
	ctx := u.Ctx
	if u.d.cancelled {
		// Still write out what was received.
		ctx = context.WithoutCancel(u.Ctx)
	}
	prep := func(_ int, q *request, sqe *uring.SQE) {
		c := q.c
		switch q.kind {
		case reqRecv:
			c.ref()
			c.reading = true
			flags := uint32(unix.MSG_WAITALL) // the bytes are there: whole buffers
			if q.peek {
				flags = unix.MSG_DONTWAIT // whatever came, or EAGAIN
			}
			sqe.PrepRecv(u.Sock, unsafe.Pointer(&c.mem[c.filled]), uint32(q.n), flags)
		case reqWrite:
			c.ref()
			c.sending = true
			sqe.PrepWriteFixed(u.File, unsafe.Pointer(&c.mem[c.acked]), uint32(q.n), uint64(u.Off+c.pos+int64(c.acked)), c.idx, u.rwFlags)
		case reqFsync:
			// The range written; fdatasync(2) semantics.
			n := uint32(0)
			if u.Count > 0 && u.Count <= math.MaxUint32 {
				n = uint32(u.Count)
			}
			sqe.PrepFsync(u.File, uint64(u.Off), n, uring.FsyncDatasync)
		}
	}
	link := func(i int) bool { return i < len(u.links) && u.links[i] }
	undo := func(q *request, prepared bool) {
		if c := q.c; c != nil && prepared {
			c.reading = c.reading && q.kind != reqRecv
			c.sending = c.sending && q.kind != reqWrite
			c.unref()
		}
	}
	k, err := u.d.submit(ctx, u.batch, prep, link, undo)
	for _, q := range u.batch[:k] {
		switch q.kind {
		case reqRecv:
			u.recvs = append(u.recvs, q)
		case reqWrite:
			u.writes++
		case reqFsync:
			u.fsync = q
		}
	}
	if err == nil {
		return true
	}
	if !u.d.cancelled && u.Ctx.Err() != nil {
		u.d.stop(u.cancel)
		return false
	}
	if u.werr == nil {
		u.werr = err
		u.stopReceiving()
	}
	return true
}

// stopReceiving cancels the receive in flight. Those linked after it
// complete with -ECANCELED; one that the kernel issues before its
// predecessor's CQE reaches us is cancelled when that CQE does.
func (u *uringRecv) stopReceiving() {
	if len(u.recvs) > 0 {
		u.d.cancel(u.recvs[0])
	}
}

// cancel stops receiving and cancels the fsync when ctx ends. Writes are not
// cancelled: a write to a regular file does not wait for a peer.
func (u *uringRecv) cancel() {
	u.stopReceiving()
	if u.fsync != nil {
		u.d.cancel(u.fsync)
	}
}

// handle takes in one CQE.
func (u *uringRecv) handle(e event) {
	q, res := e.r, e.cqe.Res
	switch q.kind {
	case reqRecv:
		u.recvDone(q, res)
	case reqWrite:
		u.writeDone(q, res)
	case reqFsync:
		u.fsync = nil
		switch {
		case res == 0:
			u.synced = true
		case retryable(res):
		default:
			if u.werr == nil {
				u.werr = fmt.Errorf("fsync: %w", errnoOf(res))
			}
		}
	}
}

func (u *uringRecv) recvDone(q *request, res int32) {
	c := q.c
	u.recvs = slices.DeleteFunc(u.recvs, func(x *request) bool { return x == q })
	c.reading = false
	switch {
	case res > 0:
		c.filled += int(res)
		u.received += int64(res)
		if u.received == u.Count {
			u.ended = true
		}
	case res == 0:
		u.ended = true
		if u.Count >= 0 {
			u.rerr = unexpectedEOF(u.received, u.Count)
		}
	case retryable(res):
	default:
		if u.rerr == nil {
			u.rerr = fmt.Errorf("recv: %w", errnoOf(res))
		}
	}
	if u.d.cancelled || u.werr != nil {
		u.stopReceiving()
	}
}

func (u *uringRecv) writeDone(q *request, res int32) {
	c := q.c
	u.writes--
	c.sending = false
	switch {
	case res > 0:
		// The chain runs in order and stops at a short write: every byte
		// counted here follows the ones before.
		c.acked += int(res)
		u.written += int64(res)
	case res == 0:
		if u.werr == nil {
			u.werr = fmt.Errorf("write fixed: %w", io.ErrShortWrite)
		}
	case errnoOf(res) == unix.EOPNOTSUPP && q.dontcache:
		// RWF_DONTCACHE refused by this file system: write without it.
		if u.rwFlags != 0 {
			u.rwFlags = 0
			u.fallbacks++
		}
	case retryable(res):
		// Linked after a short write: written again.
	default:
		if u.werr == nil {
			u.werr = fmt.Errorf("write fixed: %w", errnoOf(res))
		}
	}
	if u.werr != nil {
		// The file failed: take no more bytes from the socket.
		u.stopReceiving()
	}
}

// giveBack returns to the pool the buffers whose bytes are all written.
// Once no receive is in flight, what a buffer was lent for and did not get
// (a short receive) is given up: it is written as it is and goes back, and
// the next chain starts at the stream's position in new buffers, so that no
// buffer waits for the peer.
func (u *uringRecv) giveBack() {
	if len(u.recvs) == 0 {
		for _, c := range u.queue {
			c.n = c.filled
		}
		u.next = u.received
	}
	stopped := u.stopped()
	for len(u.queue) > 0 {
		c := u.queue[0]
		if c.reading || c.sending || c.acked < c.filled || c.filled < c.n && !stopped {
			break
		}
		u.queue = u.queue[1:]
		c.retire()
	}
}

// result is the count and error the receive returns.
func (u *uringRecv) result() (int64, error) {
	switch {
	case u.werr != nil:
		return u.written, u.werr
	case u.rerr != nil:
		return u.written, u.rerr
	case u.d.cancelled:
		return u.written, context.Cause(u.Ctx)
	case u.written != u.received:
		return u.written, fmt.Errorf("receive: wrote %d of %d bytes received", u.written, u.received)
	case u.e.cfg.Sync && !u.useFsync:
		return u.written, fdatasync(u.File)
	case u.e.cfg.Sync && !u.synced:
		return u.written, errors.New("receive: fsync did not complete")
	}
	return u.written, nil
}
