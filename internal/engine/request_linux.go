package engine

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/uring"
)

// inbox carries CQEs from the goroutine that drains the Loop's completion
// queue to the goroutine of a send or receive. push never blocks: a drain
// must not wait for a send that has stopped listening (a cancelled send
// leaves notifications behind).
type inbox struct {
	mu   sync.Mutex
	q    []event
	wake chan struct{}
}

type event struct {
	r    *request
	cqe  uring.CQE
	last bool
}

func newInbox() *inbox { return &inbox{wake: make(chan struct{}, 1)} }

func (in *inbox) push(e event) {
	in.mu.Lock()
	in.q = append(in.q, e)
	in.mu.Unlock()
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

func (in *inbox) take(dst []event) []event {
	in.mu.Lock()
	dst = append(dst, in.q...)
	clear(in.q)
	in.q = in.q[:0]
	in.mu.Unlock()
	return dst
}

type reqKind uint8

const (
	reqRead   reqKind = iota // IORING_OP_READ_FIXED from the file into a chunk
	reqSend                  // IORING_OP_SEND_ZC, or a copying IORING_OP_SEND of a header
	reqRecv                  // IORING_OP_RECV from the socket into a chunk
	reqWrite                 // IORING_OP_WRITE_FIXED of a chunk to the file
	reqFsync                 // IORING_OP_FSYNC of the range written
	reqCancel                // IORING_OP_ASYNC_CANCEL of target, handled by the driver
)

// request is one SQE of a send or receive in flight.
type request struct {
	in        *inbox
	kind      reqKind
	c         *chunk // the buffer it reads into, sends from or writes from
	pos       int64  // URingMmap: offset of the data in the stream
	n         int    // bytes asked for
	ud        uint64 // for ASYNC_CANCEL
	usage     bool   // sent with IORING_SEND_ZC_REPORT_USAGE
	dontcache bool   // read or written with RWF_DONTCACHE
	plain     bool   // a copying IORING_OP_SEND (of a header)
	peek      bool   // a RECV with MSG_DONTWAIT, to learn what woke a receive
	seen      bool   // its result was processed (the owner's goroutine only)

	target       *request // reqCancel: the request it cancels
	cancelMisses int      // cancellations that missed it (the driver's)

	// Where the notifications' reports go: the kind's counters and the
	// send's; notified, with kind and start, for the latency.
	counters, send *Usage
	notified       func(Kind, time.Duration, bool)
	kind2          Kind
	start          time.Time

	// Touched only by the goroutine draining the completion queue (one at
	// a time, see uring.Handler).
	res          int32
	copiedEarly  int8 // a notification came before the result: 1 copied, 2 not
	resultPosted bool
}

// HandleCQE runs on the goroutine draining the completion queue. It accounts
// zero-copy usage (also for sends that were abandoned) and drops the
// request's hold on its buffer with its last CQE.
func (r *request) HandleCQE(c uring.CQE, last bool) {
	if c.Notif() && r.notified != nil {
		r.notified(r.kind2, time.Since(r.start), c.Copied())
	}
	if r.kind == reqSend && r.usage {
		switch {
		case c.Notif() && r.resultPosted:
			r.account(c.Copied())
		case c.Notif():
			r.copiedEarly = 2
			if c.Copied() {
				r.copiedEarly = 1
			}
		default:
			r.res, r.resultPosted = c.Res, true
			if r.copiedEarly != 0 {
				r.account(r.copiedEarly == 1)
			}
		}
	}
	// Drop the hold first: once the owner sees its last CQE it may return,
	// and its buffers must be back in the pool by then.
	if last && r.c != nil {
		r.c.unref()
	}
	r.in.push(event{r, c, last})
}

func (r *request) account(copied bool) {
	if r.res <= 0 {
		return
	}
	if r.counters != nil {
		r.counters.add(copied, int64(r.res))
	}
	r.send.add(copied, int64(r.res))
}

// chunk is one registered buffer lent to a send or receive. It goes back to
// the pool when its owner has retired it and no request holds it any more:
// the last notification of its last zero-copy send may arrive after the
// send returned.
//
// A send is a stream: the header, then the file range. A chunk holds the
// stream from pos: header bytes are copied in when the chunk is lent, file
// bytes are read in by READ_FIXED (or, receiving, by RECV).
type chunk struct {
	pool    *bufPool
	idx     uint16
	mem     []byte
	pos     int64 // stream position of mem[0]
	n       int   // bytes of the stream in this chunk
	filled  int   // bytes in mem so far
	acked   int   // bytes the kernel has taken for sending (or written)
	reading bool  // a READ_FIXED (or RECV) is in flight
	sending bool  // a SEND_ZC (or WRITE_FIXED) is in flight
	state   atomic.Int64
	held    *atomic.Int64 // the owner's count of buffers not back in the pool
}

const retired = 1 << 40

// lend takes buffer idx of p for the n bytes of the stream from pos, and
// counts it in held until it is back in the pool.
func (p *bufPool) lend(idx uint16, pos int64, n int, held *atomic.Int64) *chunk {
	held.Add(1)
	return &chunk{pool: p, idx: idx, mem: p.buf(idx), pos: pos, n: n, held: held}
}

func (c *chunk) ref() { c.state.Add(1) }

func (c *chunk) unref() {
	if c.state.Add(-1) == retired {
		c.giveBack()
	}
}

func (c *chunk) retire() {
	if c.state.Add(retired) == retired {
		c.giveBack()
	}
}

func (c *chunk) giveBack() {
	c.held.Add(-1)
	c.pool.put(c.idx)
}

func errnoOf(res int32) syscall.Errno { return syscall.Errno(-res) }

// retryable reports whether res is an error that the kernel returns
// spuriously under load (EAGAIN, EINTR) or that a cancelled link ahead of
// the request caused (ECANCELED): the request is submitted again.
func retryable(res int32) bool {
	e := errnoOf(res)
	return e == unix.EAGAIN || e == unix.EINTR || e == unix.ECANCELED
}
