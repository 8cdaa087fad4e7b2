package engine

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/uring"
)

// mmapSend is one send of the URingMmap engine: SEND_ZC straight from a
// shared mapping of the file, chunks linked in order. The kernel pins the
// file's page-cache pages until each notification, so the send waits for
// every notification before it returns, also on errors and cancellation.
// A header leads the first chain as a copying IORING_OP_SEND with MSG_MORE.
// Its requests are bounded by no pool, so it never waits for room in the
// Loop, which other sends' stalled peers may hold: it waits for its own
// requests, or, with none in flight, copies a window's worth with send(2).
//
// It sends from the Sender's kept mappings of the file (see fileMaps), one
// window of copyWindow bytes at a time, and takes the next window only with
// nothing of its own in flight: a SEND_ZC holds an address in the window
// until its result, and the pages until its notification, so the window's
// reference (which keeps the mapping from being unmapped) lasts until then.
type mmapSend struct {
	*transfer
	d      *driver
	w      window // the mapping of the part of the range being sent
	hdr    int64
	total  int64
	chunk  int64 // bytes per SEND_ZC
	window int64 // bytes pinned at most

	pos      int64 // next stream position to send: header, then range
	sent     int64
	pinned   int64 // bytes whose notification is pending
	sends    int
	notifs   int
	err      error
	hold     bool // wait for every notification before sending again
	depth    int  // chunks per chain; 1 after an ENOMEM
	alone    bool // the last chain went in with nothing of this send pinned
	copyRest bool // not even one chunk could be pinned: copy what is left
	full     bool // the Loop was at capacity: wait for this send's own CQEs, or copy
}

func (t *transfer) uringMmap() (int64, error) {
	m := &mmapSend{
		transfer: t,
		d:        newDriver(t.e.loop, t.Ctx),
		hdr:      int64(len(t.Header)),
		total:    int64(len(t.Header)) + t.Count,
		chunk:    int64(t.e.cfg.BufferSize),
		window:   int64(t.e.cfg.BufferSize) * maxDepth,
		depth:    maxDepth,
	}
	// Never wait for room in the Loop, which other sends' stalled peers may
	// hold: wait for this send's own requests, or copy a part.
	m.d.try = true
	// Nothing is in flight when the loop ends: the window may go.
	defer t.e.maps.put(&m.w)
	for {
		if m.sends == 0 && m.err == nil && !m.d.cancelled && !m.hold && !m.copyRest && m.pos < m.total && m.pinned < m.window && m.mapped() {
			m.submit(m.plan())
		}
		if m.full && m.sends == 0 && m.notifs == 0 && m.err == nil && !m.d.cancelled && t.Ctx.Err() == nil {
			// The Loop is full of other sends' requests: copy a window's
			// worth, which needs no slot, rather than wait for them.
			m.full = false
			m.fallbacks++
			m.e.poolShort.Add(1)
			m.copyPart(m.window)
			continue
		}
		if m.err != nil && !m.d.cancelled && t.Ctx.Err() != nil {
			m.d.stop(nil) // what is in flight must be cancelled too
		}
		if m.sends == 0 && m.notifs == 0 && (m.err != nil || m.d.cancelled || m.pos == m.total || m.copyRest) {
			break
		}
		for _, e := range m.d.next(m.d.cancelLive) {
			m.handle(e)
		}
		m.full = false
		m.hold = m.hold && m.notifs > 0
	}
	if m.copyRest && m.err == nil && !m.d.cancelled && m.pos < m.total {
		m.copyTheRest()
	}
	return result(t.Ctx, m.sent, m.total, m.d.cancelled, m.err)
}

// mapped makes sure that the window of the file that holds the next bytes
// of the range is mapped, and reports whether it is. It lets the previous
// window go only with nothing of this send in flight; until then it holds
// the send (false), which waits for its requests' CQEs.
func (m *mmapSend) mapped() bool {
	off := m.Off + max(m.pos-m.hdr, 0)
	if m.Count == 0 || m.w.holds(off) {
		return true
	}
	if m.sends > 0 || m.notifs > 0 {
		m.hold = true
		return false
	}
	m.e.maps.put(&m.w)
	m.w, m.err = m.e.maps.window(m.File, m.Stat, off, m.Off+m.Count, &m.Readable)
	return m.err == nil
}

// at returns the address of the stream position p of the range, in the
// window.
func (m *mmapSend) at(p int64) unsafe.Pointer {
	return unsafe.Pointer(&m.w.mem[m.Off+p-m.hdr-m.w.base])
}

// windowEnd is the stream position where the window ends.
func (m *mmapSend) windowEnd() int64 {
	return m.hdr + m.w.base + int64(len(m.w.mem)) - m.Off
}

// plan returns the next chain: the header's copying send if it is still to
// go, then chunks of the range, as long as the pinned bytes and the mapped
// window allow.
func (m *mmapSend) plan() []*request {
	m.alone = m.pinned == 0
	usage := !m.e.noReportUsage.Load()
	var sq []*request
	end := m.total
	if m.Count > 0 {
		end = m.windowEnd()
	}
	for p := m.pos; p < end && m.pinned+(p-m.pos) < m.window && len(sq) < m.depth; {
		if p < m.hdr {
			// The header: a copying send, corked, leading the chain.
			sq = append(sq, &request{kind: reqSend, pos: p, n: int(m.hdr - p), plain: true})
			p = m.hdr
			continue
		}
		n := min(m.chunk, end-p)
		sq = append(sq, m.sendRequest(&request{kind: reqSend, pos: p, n: int(n), usage: usage}))
		p += n
	}
	return sq
}

// submit submits the chain sq in one io_uring_enter.
func (m *mmapSend) submit(sq []*request) {
	usage := uint16(0)
	if sq[len(sq)-1].usage {
		usage = uring.SendZCReportUsage
	}
	prep := func(_ int, r *request, sqe *uring.SQE) {
		if r.plain {
			sqe.PrepSend(m.Sock, unsafe.Pointer(&m.Header[r.pos]), uint32(r.n), uint32(unix.MSG_WAITALL|unix.MSG_NOSIGNAL|m.more()))
		} else {
			sqe.PrepSendZC(m.Sock, m.at(r.pos), uint32(r.n), unix.MSG_WAITALL|unix.MSG_NOSIGNAL, usage, 0)
		}
	}
	k, err := m.d.submit(m.Ctx, sq, prep, func(i int) bool { return i < len(sq)-1 }, func(*request, bool) {})
	for _, r := range sq[:k] {
		if !r.plain {
			m.pinned += int64(r.n)
		}
	}
	m.sends += k
	if k > 0 {
		m.pos = sq[k-1].pos + int64(sq[k-1].n)
	}
	if errors.Is(err, uring.ErrFull) {
		m.full = true
		return
	}
	m.err = err
}

// handle takes in one CQE.
func (m *mmapSend) handle(e event) {
	r, res := e.r, e.cqe.Res
	if e.last && !r.plain {
		m.pinned -= int64(r.n)
	}
	if e.cqe.Notif() {
		m.notifs--
		return
	}
	m.sends--
	r.seen = true
	if e.cqe.More() {
		m.notifs++
	}
	switch {
	case res >= 0:
		m.sent += int64(res)
		if int64(res) < int64(r.n) && m.pos > r.pos+int64(res) {
			// Short: the chain broke here; send the rest again.
			m.pos = r.pos + int64(res)
		}
	case errnoOf(res) == unix.EINVAL && r.usage && !m.e.noReportUsage.Load():
		m.e.noReportUsage.Store(true)
		m.pos = min(m.pos, r.pos)
	case retryable(res):
		m.pos = min(m.pos, r.pos)
	case errnoOf(res) == unix.ENOMEM && !(m.alone && m.depth == 1):
		// Pages pinned past RLIMIT_MEMLOCK (without CAP_IPC_LOCK). The
		// kernel charges a chain's pages when it is submitted and fails the
		// whole chain, whose requests still post notifications: retrying it
		// as it was would spin. Send one chunk per chain from here on, once
		// every notification of this send has released its pages.
		m.pos = min(m.pos, r.pos)
		m.depth = 1
		m.hold = true
	case errnoOf(res) == unix.ENOMEM:
		// Not one chunk fits, with nothing of this send pinned that a
		// notification would release (other sends, or the pages of a failed
		// chain that the kernel releases later, may hold the limit). Copy
		// the rest, which pins nothing, once every notification has come.
		m.pos = min(m.pos, r.pos)
		m.copyRest = true
	case errnoOf(res) == unix.EFAULT:
		if m.err == nil {
			m.err = shrunk(m.File, m.Off+m.Count, fmt.Errorf("send zc: %w", errnoOf(res)))
		}
	default:
		if m.err == nil {
			m.err = fmt.Errorf("send zc: %w", errnoOf(res))
		}
	}
}

// copyTheRest sends what is left with send(2), which copies and pins
// nothing.
func (m *mmapSend) copyTheRest() {
	m.fallbacks++
	m.copyPart(m.total - m.pos)
}

// copyPart sends up to n bytes of the stream from pos with send(2), waiting
// for room in the Poller. Nothing of this send is in flight.
func (m *mmapSend) copyPart(n int64) {
	sw := m.e.roomWait(m.Sock)
	defer sw.close()
	end := min(m.total, m.pos+n)
	if m.pos < m.hdr {
		k, err := sendAllFlags(m.Ctx, sw, m.Header[m.pos:], m.more())
		m.sent, m.pos, m.err = m.sent+int64(k), m.pos+int64(k), err
	}
	for m.err == nil && m.pos < end && m.mapped() {
		k, err := sendAll(m.Ctx, sw, m.w.mem[m.Off+m.pos-m.hdr-m.w.base:][:min(end, m.windowEnd())-m.pos])
		m.sent, m.pos = m.sent+int64(k), m.pos+int64(k)
		if errors.Is(err, unix.EFAULT) {
			err = shrunk(m.File, m.Off+m.Count, err)
		}
		m.err = err
	}
}
