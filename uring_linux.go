package sendfile2

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/uring"
)

// maxDepth bounds the chunks one send keeps in flight, so that one
// connection cannot take every buffer of a shared Sender.
const maxDepth = 8

// inbox carries CQEs from the goroutine that drains the Loop's completion
// queue to the goroutine of a send. push never blocks: a drain must not wait
// for a send that has stopped listening (a cancelled send leaves
// notifications behind).
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
	reqRead reqKind = iota
	reqSend
)

// request is one SQE of a send in flight.
type request struct {
	in        *inbox
	kind      reqKind
	c         *chunk // URing: the buffer it reads into or sends from
	pos       int64  // URingMmap: offset of the data in the range
	n         int    // bytes asked for
	ud        uint64 // for ASYNC_CANCEL
	usage     bool   // sent with IORING_SEND_ZC_REPORT_USAGE
	dontcache bool   // read with RWF_DONTCACHE
	plain     bool   // a copying IORING_OP_SEND (of a header)
	stats     *methodCounters
	tr        *transfer // learns how much the kernel copied
	obs       Observer  // with method and start, for notification latency
	method    Method
	start     time.Time
	seen      bool // its result was processed (the send's goroutine only)

	// Touched only by the goroutine draining the completion queue (one at
	// a time, see uring.Handler).
	res          int32
	copiedEarly  int8 // a notification came before the result: 1 copied, 2 not
	resultPosted bool
}

// HandleCQE runs on the goroutine draining the completion queue. It accounts zero-copy usage (also
// for sends that were abandoned) and drops the request's hold on its buffer
// with its last CQE.
func (r *request) HandleCQE(c uring.CQE, last bool) {
	if c.Notif() && r.obs != nil {
		r.obs.Notified(r.method, time.Since(r.start), c.Copied())
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
	// Drop the hold first: once the send sees its last CQE it may return,
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
	if copied {
		r.stats.copied.Add(int64(r.res))
		r.tr.copied.Add(int64(r.res))
	} else {
		r.stats.zeroCopy.Add(int64(r.res))
		r.tr.zc.Add(int64(r.res))
	}
}

// chunk is one registered buffer lent to a send. It goes back to the pool
// when the send has retired it and no request holds it any more: the last
// notification of its last zero-copy send may arrive after the send returned.
//
// A send is a stream: the header, then the file range. A chunk holds the
// stream from pos: header bytes are copied in when the chunk is lent, file
// bytes are read in by READ_FIXED.
type chunk struct {
	pool    *bufPool
	idx     uint16
	mem     []byte
	pos     int64 // stream position of mem[0]
	n       int   // bytes of the stream in this chunk
	filled  int   // bytes in mem so far
	acked   int   // bytes the kernel has taken for sending
	reading bool  // a READ_FIXED is in flight
	sending bool  // a SEND_ZC is in flight
	state   atomic.Int64
}

const retired = 1 << 40

func (c *chunk) ref() { c.state.Add(1) }

func (c *chunk) unref() {
	if c.state.Add(-1) == retired {
		c.pool.put(c.idx)
	}
}

func (c *chunk) retire() {
	if c.state.Add(retired) == retired {
		c.pool.put(c.idx)
	}
}

func errnoOf(res int32) syscall.Errno { return syscall.Errno(-res) }

// retryable errors of a send or read are spurious under load (KERNEL.md,
// section 2): submit again.
func retryable(res int32) bool {
	e := errnoOf(res)
	return e == unix.EAGAIN || e == unix.EINTR
}

// uring is the URing method: READ_FIXED into registered buffers, then
// SEND_ZC from them, up to maxDepth chunks in flight. Sends go out in stream
// order, as one IOSQE_IO_LINK chain at a time with MSG_WAITALL, so that a
// chunk never overtakes another. When the chunk at the front still has to be
// read, its READ_FIXED is linked before its SEND_ZC in the same submission (a
// short read breaks the link, and the rest is read and sent again). A header
// is copied into the first buffer, ahead of the file's first bytes, and leaves
// with them in one send.
//
// The file is safe once every read has completed; the buffers are the
// Sender's and return to its pool with their notifications. On success and on
// errors Send waits for those notifications too. On cancellation it cancels
// what is in flight, waits for the results of reads and sends (not for
// notifications), and returns: the buffers stay parked until the kernel lets
// go of them.
func (t *transfer) uring() (int64, error) {
	s, pool := t.s, t.s.pool
	in := newInbox()
	stats := s.counter(URing)
	depth := min(pool.n, maxDepth)
	hdr := int64(len(t.hdr))
	total := hdr + t.count
	var (
		queue     []*chunk // not yet fully sent, in stream order
		next      int64    // next stream position to give a chunk
		sent      int64
		err       error
		cancelled bool
		reads     int // requests whose result is pending
		sends     int
		notifs    int // notifications pending
		live      = map[*request]struct{}{}
		evs       []event
		batch     []*request
	)
	defer func() {
		for _, c := range queue {
			c.retire()
		}
	}()
	for {
		if err == nil && !cancelled {
			// Lend buffers to the stream still to send.
			for next < total && len(queue) < depth {
				idx, ok := pool.tryGet()
				if !ok {
					if len(queue) > 0 || reads+sends+notifs > 0 {
						break // a completion will come; look again then
					}
					if idx, err = pool.get(t.ctx); err != nil {
						break
					}
				}
				c := &chunk{pool: pool, idx: idx, mem: pool.buf(idx), pos: next, n: int(min(total-next, int64(pool.size)))}
				if next < hdr {
					c.filled = copy(c.mem[:c.n], t.hdr[next:])
				}
				next += int64(c.n)
				queue = append(queue, c)
			}
			batch = batch[:0]
			// With no send in flight, the chunks at the front go out as one
			// chain; the first one's read may lead it.
			if sends == 0 && err == nil {
				usage := uring.SendZCReportUsage
				if s.noReportUsage.Load() {
					usage = 0
				}
				for i, c := range queue {
					if c.sending || c.reading || i == depth {
						break
					}
					lead := c.filled < c.n
					if lead && i > 0 {
						break
					}
					if lead {
						batch = append(batch, t.readRequest(in, c))
					}
					batch = append(batch, t.sendRequest(&request{in: in, kind: reqSend, c: c, n: c.n - c.acked, usage: usage != 0, stats: stats}))
				}
			}
			chain := len(batch)
			for _, c := range queue {
				if !c.reading && !c.sending && c.filled < c.n {
					batch = append(batch, t.readRequest(in, c))
				}
			}
			if len(batch) > 0 {
				k, serr := t.submitURing(batch, chain, live)
				for _, r := range batch[:k] {
					if r.kind == reqRead {
						reads++
					} else {
						sends++
					}
				}
				err = serr
			}
		}
		if err != nil && t.ctx.Err() != nil {
			cancelled = true
		}
		// Done: everything sent and released, or stopped and nothing left
		// that the file or this send must wait for.
		if reads == 0 && sends == 0 {
			if cancelled {
				break
			}
			if notifs == 0 && (err != nil || next == total && len(queue) == 0) {
				break
			}
		}
		if !in.wait(t.ctx, cancelled) {
			cancelled = true
			t.cancelLive(live)
			continue
		}
		evs = in.take(evs[:0])
		for _, e := range evs {
			r, c, res := e.r, e.r.c, e.cqe.Res
			if e.last {
				delete(live, r)
			}
			if e.cqe.Notif() {
				notifs--
				continue
			}
			r.seen = true
			switch r.kind {
			case reqRead:
				reads--
				c.reading = false
				switch {
				case res > 0:
					c.filled += int(res)
				case res == 0:
					if err == nil {
						err = shrunk(t.file, t.off+t.count, fmt.Errorf("read fixed: end of file at %d", t.off+c.pos+int64(c.filled)-hdr))
					}
				case errnoOf(res) == unix.EOPNOTSUPP && r.dontcache:
					// RWF_DONTCACHE refused here: read without it.
					if !s.noDontCache.Swap(true) {
						s.fallbacks.Add(1)
					}
				case retryable(res) || errnoOf(res) == unix.ECANCELED:
				default:
					if err == nil {
						err = fmt.Errorf("read fixed: %w", errnoOf(res))
					}
				}
			case reqSend:
				sends--
				c.sending = false
				if e.cqe.More() {
					notifs++
				}
				switch {
				case res >= 0:
					c.acked += int(res)
					sent += int64(res)
					if c.acked == c.n {
						// Sends complete in order: c is the front of the queue.
						queue = queue[1:]
						c.retire()
					}
				case errnoOf(res) == unix.EINVAL && r.usage && !s.noReportUsage.Load():
					s.noReportUsage.Store(true) // before Linux 6.2
				case retryable(res) || errnoOf(res) == unix.ECANCELED:
				default:
					if err == nil {
						err = fmt.Errorf("send zc: %w", errnoOf(res))
					}
				}
			}
		}
		clear(evs)
	}
	return t.result(sent, total, cancelled, err)
}

// cancelLive asks the kernel to cancel the requests whose result has not
// come yet; each still completes through its handler.
func (t *transfer) cancelLive(live map[*request]struct{}) {
	for r := range live {
		if !r.seen {
			t.s.loop.Cancel(r.ud)
		}
	}
}

// result is what a send returns: the bytes sent and its error, the cause of
// the cancellation if it was cancelled, or an error for a short count.
func (t *transfer) result(sent, total int64, cancelled bool, err error) (int64, error) {
	if cancelled {
		err = context.Cause(t.ctx)
	}
	if err == nil && sent != total {
		err = fmt.Errorf("sent %d of %d bytes", sent, total)
	}
	return sent, err
}

// readRequest marks c as reading and returns the READ_FIXED request for the
// rest of it.
func (t *transfer) readRequest(in *inbox, c *chunk) *request {
	c.reading = true
	return &request{in: in, kind: reqRead, c: c, n: c.n - c.filled}
}

// submitURing submits batch in one io_uring_enter: its first chain requests
// linked in order, the rest independent. It returns how many the kernel took;
// those are live and hold their chunk until their last CQE.
func (t *transfer) submitURing(batch []*request, chain int, live map[*request]struct{}) (int, error) {
	s := t.s
	hdr := int64(len(t.hdr))
	rwFlags := uint32(0)
	if s.cfg.DontCache && !s.noDontCache.Load() {
		rwFlags = unix.RWF_DONTCACHE
	}
	usage := uint16(0)
	if !s.noReportUsage.Load() {
		usage = uring.SendZCReportUsage
	}
	b, err := s.loop.Begin(t.ctx, len(batch))
	if err != nil {
		for _, r := range batch {
			r.c.reading, r.c.sending = false, false
		}
		return 0, err
	}
	for i, r := range batch {
		c := r.c
		c.ref()
		c.sending = c.sending || r.kind == reqSend
		sqe, ud := b.Add(r)
		r.ud = ud
		if r.kind == reqRead {
			r.dontcache = rwFlags != 0
			sqe.PrepReadFixed(t.file, unsafe.Pointer(&c.mem[c.filled]), uint32(r.n), uint64(t.off+c.pos+int64(c.filled)-hdr), c.idx, rwFlags)
		} else {
			sqe.PrepSendZC(t.sock, unsafe.Pointer(&c.mem[c.acked]), uint32(r.n), unix.MSG_WAITALL|unix.MSG_NOSIGNAL,
				uring.RecvsendFixedBuf|usage, c.idx)
		}
		if i < chain-1 {
			sqe.Flags |= uring.SQEIOLink
		}
	}
	k, err := b.Submit()
	for i, r := range batch {
		if i < k {
			live[r] = struct{}{}
			continue
		}
		if r.kind == reqRead {
			r.c.reading = false
		} else {
			r.c.sending = false
		}
		r.c.unref()
	}
	return k, err
}

// sendRequest readies r for the Observer, if there is one.
func (t *transfer) sendRequest(r *request) *request {
	r.tr = t
	if obs := t.s.cfg.Observer; obs != nil {
		r.obs, r.method, r.start = obs, t.method, time.Now()
	}
	return r
}

// wait blocks until events arrive, or until ctx ends while the operation is
// not cancelled yet: then it returns false.
func (in *inbox) wait(ctx context.Context, cancelled bool) bool {
	if cancelled {
		<-in.wake
		return true
	}
	select {
	case <-in.wake:
		return true
	case <-ctx.Done():
		return false
	}
}

func countNotLive(rs []*request, live map[*request]struct{}) int {
	n := 0
	for _, r := range rs {
		if _, ok := live[r]; !ok {
			n++
		}
	}
	return n
}

// uringMmap is the URingMmap method: SEND_ZC straight from a shared mapping
// of the file, chunks linked in order. The kernel pins the file's page-cache
// pages until each notification, so Send waits for every notification before
// it returns, also on errors and cancellation.
func (t *transfer) uringMmap() (int64, error) {
	s := t.s
	in := newInbox()
	stats := s.counter(URingMmap)
	page := int64(os.Getpagesize())
	base := t.off &^ (page - 1)
	var data []byte
	if t.count > 0 {
		mem, err := mmap(t.file, base, int(t.off+t.count-base), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return 0, os.NewSyscallError("mmap", err)
		}
		defer munmap(mem)
		data = mem[t.off-base:]
	}
	hdr := int64(len(t.hdr))
	total := hdr + t.count
	chunk := int64(s.cfg.BufferSize)
	window := chunk * maxDepth // bytes pinned at most
	var (
		pos       int64 // next stream position to send: header, then range
		sent      int64
		pinned    int64 // bytes whose notification is pending
		sends     int
		notifs    int
		err       error
		cancelled bool
		hold      bool       // wait for every notification before sending again
		depth     = maxDepth // chunks per chain; 1 after an ENOMEM
		alone     bool       // the last chain went in with nothing of this send pinned
		copyRest  bool       // not even one chunk could be pinned: copy what is left
		live      = map[*request]struct{}{}
		evs       []event
	)
	for {
		if sends == 0 && err == nil && !cancelled && !hold && !copyRest && pos < total && pinned < window {
			alone = pinned == 0
			usage := uint16(uring.SendZCReportUsage)
			if s.noReportUsage.Load() {
				usage = 0
			}
			var sq []*request
			for p := pos; p < total && pinned+(p-pos) < window && len(sq) < depth; {
				if p < hdr {
					// The header: a copying send, corked, leading the chain.
					sq = append(sq, &request{in: in, kind: reqSend, pos: p, n: int(hdr - p), plain: true})
					p = hdr
					continue
				}
				n := min(chunk, total-p)
				sq = append(sq, t.sendRequest(&request{in: in, kind: reqSend, pos: p, n: int(n), usage: usage != 0, stats: stats}))
				p += n
			}
			b, berr := s.loop.Begin(t.ctx, len(sq))
			if berr != nil {
				err = berr
			} else {
				for i, r := range sq {
					sqe, ud := b.Add(r)
					r.ud = ud
					if r.plain {
						sqe.PrepSend(t.sock, unsafe.Pointer(&t.hdr[r.pos]), uint32(r.n), uint32(unix.MSG_WAITALL|unix.MSG_NOSIGNAL|t.more()))
					} else {
						sqe.PrepSendZC(t.sock, unsafe.Pointer(&data[r.pos-hdr]), uint32(r.n), unix.MSG_WAITALL|unix.MSG_NOSIGNAL, usage, 0)
					}
					if i < len(sq)-1 {
						sqe.Flags |= uring.SQEIOLink
					}
				}
				k, serr := b.Submit()
				for _, r := range sq[:k] {
					live[r] = struct{}{}
					if !r.plain {
						pinned += int64(r.n)
					}
				}
				sends += k
				if k > 0 {
					pos = sq[k-1].pos + int64(sq[k-1].n)
				}
				err = serr
			}
		}
		if err != nil && !cancelled && t.ctx.Err() != nil {
			cancelled = true
		}
		if sends == 0 && notifs == 0 && (err != nil || cancelled || pos == total || copyRest) {
			break
		}
		if !in.wait(t.ctx, cancelled) {
			cancelled = true
			t.cancelLive(live)
			continue
		}
		evs = in.take(evs[:0])
		for _, e := range evs {
			r, res := e.r, e.cqe.Res
			if e.last {
				delete(live, r)
				if !r.plain {
					pinned -= int64(r.n)
				}
			}
			if e.cqe.Notif() {
				notifs--
				continue
			}
			sends--
			r.seen = true
			if e.cqe.More() {
				notifs++
			}
			asked := int64(r.n)
			switch {
			case res >= 0:
				sent += int64(res)
				if int64(res) < asked && pos > r.pos+int64(res) {
					// Short: the chain broke here; send the rest again.
					pos = r.pos + int64(res)
				}
			case errnoOf(res) == unix.EINVAL && r.usage && !s.noReportUsage.Load():
				s.noReportUsage.Store(true)
				pos = min(pos, r.pos)
			case retryable(res) || errnoOf(res) == unix.ECANCELED:
				pos = min(pos, r.pos)
			case errnoOf(res) == unix.ENOMEM && !(alone && depth == 1):
				// Pages pinned past RLIMIT_MEMLOCK (without CAP_IPC_LOCK).
				// The kernel charges a chain's pages when it is submitted
				// and fails the whole chain, whose requests still post
				// notifications: retrying it as it was would spin. Send
				// one chunk per chain from here on, once every
				// notification of this send has released its pages.
				pos = min(pos, r.pos)
				depth = 1
				hold = true
			case errnoOf(res) == unix.ENOMEM:
				// Not one chunk fits, with nothing of this send pinned
				// that a notification would release (other sends, or
				// the pages of a failed chain that the kernel releases
				// later, may hold the limit). Copy the rest, which pins
				// nothing, once every notification has come.
				pos = min(pos, r.pos)
				copyRest = true
			case errnoOf(res) == unix.EFAULT:
				if err == nil {
					err = shrunk(t.file, t.off+t.count, fmt.Errorf("send zc: %w", errnoOf(res)))
				}
			default:
				if err == nil {
					err = fmt.Errorf("send zc: %w", errnoOf(res))
				}
			}
		}
		clear(evs)
		hold = hold && notifs > 0
	}
	if copyRest && err == nil && !cancelled && pos < total {
		s.fallbacks.Add(1)
		sw := &sockWait{fd: t.sock}
		defer sw.close()
		if pos < hdr {
			n, herr := sendAllFlags(t.ctx, sw, t.hdr[pos:], t.more())
			sent, pos, err = sent+int64(n), pos+int64(n), herr
		}
		if err == nil {
			n, cerr := sendAll(t.ctx, sw, data[pos-hdr:])
			sent += int64(n)
			if errors.Is(cerr, unix.EFAULT) {
				cerr = shrunk(t.file, t.off+t.count, cerr)
			}
			err = cerr
		}
	}
	return t.result(sent, total, cancelled, err)
}
