package uring

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/sys/unix"
)

// ErrClosed is returned by Begin after Close.
var ErrClosed = errors.New("uring: loop closed")

// ErrFull is returned by TryBegin when the Loop is at capacity.
var ErrFull = errors.New("uring: loop at capacity")

// cancelSlots is the number of ASYNC_CANCEL requests that may be in flight at
// once. They have slots of their own so that a Loop full of requests can
// still cancel them.
const cancelSlots = 64

// Config sizes a Loop.
type Config struct {
	// SQEntries is the submission queue size, 256 if zero. A Batch holds at
	// most this many SQEs.
	SQEntries uint32
	// CQEntries is the completion queue size, 4096 if zero. The Loop admits
	// at most (CQEntries-cancelSlots)/2 requests at once, so that the two CQEs
	// each request may post, and one CQE per cancellation, always fit. The
	// one CQE outside that count is a late notification (see Late): if
	// enough come at once, the kernel holds some back as an overflow, which
	// the Loop flushes.
	CQEntries uint32
	// Thread drives the ring from one goroutine locked to its OS thread,
	// the only one that enters the ring (see ringThread), on a ring set up
	// with TaskRun's flags or, where the kernel lacks them, the next ones.
	// Without it, submitters enter the ring themselves and a reaper waits
	// on an eventfd.
	Thread bool
	// TaskRun is the best task-work mode a Thread Loop tries (TaskRunDefer
	// when zero); tests set a lower one to run the fallbacks.
	TaskRun TaskRun
}

// Loop shares one Ring among goroutines. Submitters fill SQEs under a mutex
// and submit them in batches; one reaper goroutine waits on an eventfd through
// Go's netpoller, drains the completion queue, and routes every CQE to the
// Handler of its request.
type Loop struct {
	ring    *Ring
	probe   *Probe
	admit   *semaphore.Weighted // slots for requests
	cancels *semaphore.Weighted // slots kept for ASYNC_CANCEL, never blocked by requests

	mu       sync.Mutex  // guards ring submission, table, closing, closed
	sqRoom   sync.Cond   // on mu: the ring thread consumed SQEs
	thr      *ringThread // thread mode's, nil otherwise
	reapMu   sync.Mutex  // one drain of the completion queue at a time; guards released
	again    atomic.Bool // a poll found reapMu held: its holder drains once more
	released bool        // the ring is unmapped: no more drains
	cqes     []CQE       // drain's scratch, under reapMu
	calls    []call
	table    *table
	closing  bool // no new requests; cancels still go through
	closed   bool // the ring is gone

	efd        *os.File
	efdConn    syscall.RawConn
	idle       chan struct{} // closed when closing and nothing is in flight
	idleOnce   sync.Once
	reaperDone chan struct{}
	closeOnce  sync.Once
	closeErr   error

	capacity int
	inflight atomic.Int64
	stray    atomic.Uint64
	late     atomic.Uint64
	overflow atomic.Uint64

	cancelNotFound, cancelRunning atomic.Uint64
}

// NewLoop sets up a ring, registers an eventfd with it, probes its opcodes,
// and starts the reaper goroutine.
func NewLoop(cfg Config) (*Loop, error) {
	if cfg.SQEntries == 0 {
		cfg.SQEntries = 256
	}
	if cfg.CQEntries == 0 {
		cfg.CQEntries = 4096
	}
	if cfg.Thread {
		return newThreadLoop(cfg)
	}
	ring, err := NewRing(cfg.SQEntries, cfg.CQEntries)
	if err != nil {
		return nil, err
	}
	probe, err := ring.Probe()
	if err != nil {
		ring.Close()
		return nil, err
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		ring.Close()
		return nil, os.NewSyscallError("eventfd", err)
	}
	if err := ring.RegisterEventfd(efd); err != nil {
		unix.Close(efd)
		ring.Close()
		return nil, err
	}
	// A non-blocking descriptor given to os.NewFile is registered with the
	// netpoller, so reading it through RawConn parks the goroutine, not a thread.
	f := os.NewFile(uintptr(efd), "io_uring eventfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		ring.Close()
		return nil, err
	}
	l := newLoop(ring, probe)
	l.efd, l.efdConn = f, rc
	l.reaperDone = make(chan struct{})
	go l.reap()
	return l, nil
}

func newLoop(ring *Ring, probe *Probe) *Loop {
	slots := (int(ring.CQEntries()) - cancelSlots) / 2
	l := &Loop{
		ring:     ring,
		probe:    probe,
		admit:    semaphore.NewWeighted(int64(slots)),
		cancels:  semaphore.NewWeighted(cancelSlots),
		capacity: slots,
		table:    newTable(slots + cancelSlots),
		idle:     make(chan struct{}),
	}
	l.sqRoom.L = &l.mu
	return l
}

// TaskRun is the task-work mode the ring was set up with: TaskRunPlain
// unless Config.Thread.
func (l *Loop) TaskRun() TaskRun {
	if l.thr == nil {
		return TaskRunPlain
	}
	return l.thr.taskRun
}

// Probe is the opcode probe taken when the Loop was created.
func (l *Loop) Probe() *Probe { return l.probe }

// Features is io_uring_params.features.
func (l *Loop) Features() uint32 { return l.ring.Features() }

// Capacity is the number of requests the Loop admits at once.
func (l *Loop) Capacity() int { return l.capacity }

// MaxBatch is the largest number of SQEs one Batch may hold: the submission
// queue's size, less the entry a ring thread keeps for its wake read.
func (l *Loop) MaxBatch() int {
	if l.thr != nil {
		return int(l.ring.SQEntries()) - 1
	}
	return int(l.ring.SQEntries())
}

// InFlight is the number of requests submitted whose last CQE has not arrived.
func (l *Loop) InFlight() int64 { return l.inflight.Load() }

// Overflows is the number of times the completion queue was found
// overflowed (IORING_SQ_CQ_OVERFLOW) and flushed: zero unless late
// notifications (see Late) came on top of a full queue.
func (l *Loop) Overflows() uint64 { return l.overflow.Load() }

// Stray is the number of CQEs that named no live request.
func (l *Loop) Stray() uint64 { return l.stray.Load() }

// Late is the number of notifications that came after a zero-copy send had
// already finished with -ECANCELED and no IORING_CQE_F_MORE, because a request
// it was linked to failed (see table). They carry no data and are dropped.
// Such a notification is not counted among the CQEs the Loop admits requests
// for; if many arrive at once the kernel may hold some back as an overflow,
// which drain flushes.
func (l *Loop) Late() uint64 { return l.late.Load() }

// RegisterBuffers registers fixed buffers; see Ring.RegisterBuffers.
func (l *Loop) RegisterBuffers(bufs [][]byte) error {
	if l.thr != nil {
		return l.do(func() error { return l.ring.RegisterBuffers(bufs) })
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ring.RegisterBuffers(bufs)
}

// UnregisterBuffers drops the fixed buffers. Call it only when no request
// that uses them is in flight.
func (l *Loop) UnregisterBuffers() error {
	if l.thr != nil {
		return l.do(l.ring.UnregisterBuffers)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ring.UnregisterBuffers()
}

// Batch is a set of SQEs submitted together: IOSQE_IO_LINK chains must lie
// within one Batch. It holds the Loop's submission lock from Begin to Submit.
type Batch struct {
	l        *Loop
	reserved int
	added    int
	admit    *semaphore.Weighted
}

// Begin reserves room for n requests, waiting (or until ctx ends) while the
// Loop is at capacity, and locks the submission queue. Every Begin that
// returns nil error must be followed by Submit. n must not exceed MaxBatch.
func (l *Loop) Begin(ctx context.Context, n int) (Batch, error) {
	if n <= 0 || n > l.MaxBatch() || n > l.Capacity() {
		return Batch{}, errors.New("uring: batch size out of range")
	}
	if err := l.admit.Acquire(ctx, int64(n)); err != nil {
		return Batch{}, err
	}
	return l.lock(n)
}

// TryBegin is Begin that does not wait: when the Loop is at capacity it
// returns ErrFull.
func (l *Loop) TryBegin(n int) (Batch, error) {
	if n <= 0 || n > l.MaxBatch() || n > l.Capacity() {
		return Batch{}, errors.New("uring: batch size out of range")
	}
	if !l.admit.TryAcquire(int64(n)) {
		return Batch{}, ErrFull
	}
	return l.lock(n)
}

// lock locks the submission queue for a batch of n admitted requests.
func (l *Loop) lock(n int) (Batch, error) {
	l.mu.Lock()
	l.waitSQ(n)
	if l.closing {
		l.mu.Unlock()
		l.admit.Release(int64(n))
		return Batch{}, ErrClosed
	}
	return Batch{l: l, reserved: n, admit: l.admit}, nil
}

// waitSQ waits, in thread mode, until the submission queue has room for n
// SQEs besides the one the ring thread keeps for its wake read: the SQEs
// written before wait there for the thread to submit them. The caller holds
// mu, and looks at closing or closed after it: they may have changed.
func (l *Loop) waitSQ(n int) {
	if l.thr == nil {
		return
	}
	for !l.closed && l.ring.SQFree() < uint32(n)+1 {
		l.thr.roomWaiters++
		l.thr.wake()
		l.sqRoom.Wait()
		l.thr.roomWaiters--
	}
}

// Add returns a zeroed SQE whose CQEs go to h, and the request's user_data
// (for ASYNC_CANCEL).
func (b *Batch) Add(h Handler) (*SQE, uint64) {
	if b.added == b.reserved {
		panic("uring: Batch.Add past the size given to Begin")
	}
	sqe := b.l.ring.SQE()
	if sqe == nil {
		panic("uring: submission queue full inside a batch")
	}
	ud := b.l.table.alloc(h)
	sqe.UserData = ud
	b.added++
	return sqe, ud
}

// Submit submits the batch with io_uring_enter(2) and unlocks the queue. On
// error, the requests the kernel did not take are withdrawn: their handlers are
// never called. It returns how many of the batch's requests, in the order
// added, the kernel took; those will complete through their handlers.
//
// Requests that the kernel completes inside io_uring_enter (a send that finds
// room in the socket buffer) have their CQEs in the queue when it returns:
// Submit delivers them itself, on the caller's goroutine, rather than leave
// them to the reaper, whose wake-up through the eventfd and the netpoller
// costs two goroutine switches before the submitter sees the result. The
// eventfd is quiet for the length of the io_uring_enter, so that those CQEs
// do not wake the reaper for nothing; CQEs that others' requests post
// meanwhile are delivered by the same look at the queue.
//
// In thread mode Submit hands the batch to the ring thread and returns
// without entering the kernel: it returns len(batch), nil, and the requests
// that the thread's io_uring_enter does not take complete through their
// handlers with the error as their result, and no IORING_CQE_F_MORE.
func (b *Batch) Submit() (int, error) {
	if b.l.thr != nil {
		return b.handOff(), nil
	}
	n, err := b.submit()
	if b.added > 0 {
		b.l.poll()
	}
	return n, err
}

func (b *Batch) handOff() int {
	l := b.l
	if unused := b.reserved - b.added; unused > 0 {
		b.admit.Release(int64(unused))
	}
	l.inflight.Add(int64(b.added))
	l.mu.Unlock()
	if b.added > 0 {
		l.thr.wake()
	}
	return b.added
}

func (b *Batch) submit() (int, error) {
	l := b.l
	defer l.mu.Unlock()
	if unused := b.reserved - b.added; unused > 0 {
		b.admit.Release(int64(unused))
	}
	if b.added == 0 {
		return 0, nil
	}
	l.inflight.Add(int64(b.added))
	var err error
	l.ring.QuietEventfd(true) // under mu: one submitter at a time
	for l.ring.Pending() > 0 {
		var n int
		n, err = l.ring.Submit()
		if err != nil || n == 0 {
			break
		}
	}
	l.ring.QuietEventfd(false) // Submit looks at the queue next (poll)
	left := int(l.ring.Pending())
	if left == 0 {
		return b.added, nil
	}
	if err == nil {
		err = os.NewSyscallError("io_uring_enter", unix.EAGAIN)
	}
	// Withdraw what the kernel did not consume: the last `left` SQEs.
	tail := l.ring.sqeTail
	for i := range left {
		sqe := &l.ring.sqes[(tail-uint32(left)+uint32(i))&l.ring.sqMask]
		l.table.release(sqe.UserData)
	}
	l.ring.Retract()
	b.admit.Release(int64(left))
	l.inflight.Add(-int64(left))
	return b.added - left, err
}

// Cancel submits IORING_OP_ASYNC_CANCEL (Linux 5.5) for the request ud. It
// does not wait: the target completes through its own handler (with
// -ECANCELED, or normally if it finished first). h, if not nil, gets the
// cancellation's own CQE: 0 when the kernel found the target and cancelled
// it; -ENOENT when it did not find it: it had completed, or it is not in a
// place cancellation looks at, such as a request linked behind one still in
// flight, which is issued when that one completes; -EALREADY when the target
// runs in an io-wq worker and may not stop. Those two are counted
// (CancelsMissed). Cancellations have slots of their own, so Cancel works
// while the Loop is at capacity or closing.
func (l *Loop) Cancel(ud uint64, h Handler) error {
	return l.cancel(ud, nil, h)
}

// CancelAfter is Cancel submitted behind an IORING_OP_TIMEOUT of d
// (IORING_TIMEOUT_ETIME_SUCCESS, Linux 5.16), linked: the kernel tries the
// cancellation d from now, and nobody waits meanwhile. It is for trying
// again after a cancellation that missed its target.
func (l *Loop) CancelAfter(ud uint64, d time.Duration, h Handler) error {
	ts := &Timespec{Sec: int64(d / time.Second), Nsec: int64(d % time.Second)}
	return l.cancel(ud, ts, h)
}

func (l *Loop) cancel(ud uint64, after *Timespec, h Handler) error {
	n := int64(1)
	if after != nil {
		n = 2
	}
	l.cancels.Acquire(context.Background(), n)
	l.mu.Lock()
	l.waitSQ(int(n))
	if l.closed {
		l.mu.Unlock()
		l.cancels.Release(n)
		return ErrClosed
	}
	b := Batch{l: l, reserved: int(n), admit: l.cancels}
	if after != nil {
		// The handler keeps ts until the timeout's CQE: in thread mode the
		// kernel reads it after Submit has returned.
		sqe, _ := b.Add(cancelDone{l: l, ts: after})
		sqe.PrepTimeout(after, TimeoutEtimeSuccess)
		sqe.Flags |= SQEIOLink
	}
	sqe, _ := b.Add(cancelDone{l: l, h: h})
	sqe.PrepCancel(ud)
	_, err := b.Submit()
	runtime.KeepAlive(after) // read by the kernel in Submit
	return err
}

// CancelsMissed is the number of cancellations that did not find their
// target (-ENOENT) and that found it running in an io-wq worker
// (-EALREADY).
func (l *Loop) CancelsMissed() (notFound, running uint64) {
	return l.cancelNotFound.Load(), l.cancelRunning.Load()
}

// cancelDone returns a cancellation's slot (or that of the timeout before
// it) to the cancel reserve, counts the cancellations that missed, and
// hands the CQE to h.
type cancelDone struct {
	l  *Loop
	h  Handler
	ts *Timespec
}

func (c cancelDone) HandleCQE(cqe CQE, last bool) {
	c.l.cancels.Release(1)
	switch cqe.Res { // never the result of the timeout before one
	case -int32(unix.ENOENT):
		c.l.cancelNotFound.Add(1)
	case -int32(unix.EALREADY):
		c.l.cancelRunning.Add(1)
	}
	if c.h != nil {
		c.h.HandleCQE(cqe, last)
	}
}

type call struct {
	h    Handler
	c    CQE
	last bool
}

func (l *Loop) reap() {
	defer close(l.reaperDone)
	var buf [8]byte
	for {
		err := l.efdConn.Read(func(fd uintptr) bool {
			_, err := unix.Read(int(fd), buf[:])
			return err != unix.EAGAIN
		})
		if err != nil {
			return // the eventfd was closed by Close
		}
		l.reapMu.Lock()
		l.drainUnlock()
	}
}

// poll delivers the CQEs already in the completion queue, unless another
// goroutine is delivering them now: that one then drains once more after it
// is done (again), so that a CQE that signalled nothing (Submit quiets the
// eventfd) is not left in the queue with nobody to look.
func (l *Loop) poll() {
	l.again.Store(true)
	if l.reapMu.TryLock() {
		l.drainUnlock()
	}
}

// drainUnlock drains, unlocks reapMu, which the caller holds, and drains
// again while a poll found it held meanwhile.
func (l *Loop) drainUnlock() {
	for {
		l.again.Store(false)
		if !l.released {
			l.drain()
		}
		if !l.unlockReap() {
			return
		}
	}
}

// unlockReap unlocks reapMu and reports whether the caller holds it again,
// to drain once more for a poll that found it held meanwhile.
func (l *Loop) unlockReap() bool {
	l.reapMu.Unlock()
	return l.again.Load() && l.reapMu.TryLock()
}

// drain delivers every available CQE, including ones the kernel had to hold
// back after an overflow. The caller holds reapMu.
func (l *Loop) drain() {
	if l.thr != nil && len(l.thr.withdrawn) > 0 {
		l.deliver(l.thr.withdrawn)
		clear(l.thr.withdrawn)
		l.thr.withdrawn = l.thr.withdrawn[:0]
	}
	for {
		cqes := l.ring.Reap(l.cqes[:0])
		l.cqes = cqes
		if len(cqes) == 0 {
			if !l.ring.Overflowed() {
				return
			}
			l.overflow.Add(1)
			l.ring.FlushOverflow()
			continue
		}
		l.deliver(cqes)
	}
}

// deliver routes cqes to their handlers, then counts the requests they
// finished out.
func (l *Loop) deliver(cqes []CQE) {
	done, finished := 0, 0
	calls := l.calls[:0]
	l.mu.Lock()
	for _, c := range cqes {
		if c.UserData == wakeUD && l.thr != nil {
			l.thr.armed = false
			continue
		}
		h, fin, late := l.table.complete(c)
		if h == nil {
			if late {
				l.late.Add(1)
			} else {
				l.stray.Add(1)
			}
			continue
		}
		calls = append(calls, call{h, c, fin})
		if fin {
			if _, ok := h.(cancelDone); !ok {
				done++
			}
			finished++
		}
	}
	l.mu.Unlock()
	l.calls = calls
	for i := range calls {
		calls[i].h.HandleCQE(calls[i].c, calls[i].last)
		calls[i] = call{}
	}
	// Count the finished requests out before their slots are admitted
	// again, so that InFlight never shows more than the Loop admits.
	idle := finished > 0 && l.inflight.Add(-int64(finished)) == 0
	if done > 0 {
		l.admit.Release(int64(done))
	}
	if idle {
		l.mu.Lock()
		closing := l.closing
		l.mu.Unlock()
		if closing {
			l.idleOnce.Do(func() { close(l.idle) })
		}
	}
}

// Close refuses new batches, waits until every request in flight has posted
// its last CQE (for zero-copy sends, the notification), then stops the reaper
// and releases the ring. Requests that never complete (a send to a peer that
// never reads) keep Close waiting: cancel them first.
func (l *Loop) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closing = true
		l.mu.Unlock()
		if l.inflight.Load() == 0 {
			l.idleOnce.Do(func() { close(l.idle) })
		}
		<-l.idle
		l.mu.Lock()
		l.closed = true
		if l.thr != nil {
			l.thr.stop = true
		}
		l.mu.Unlock()
		if l.thr != nil {
			l.thr.signal()
			<-l.thr.done
			return
		}
		l.efd.Close()
		<-l.reaperDone
		l.reapMu.Lock()
		l.released = true
		l.closeErr = l.ring.Close()
		l.reapMu.Unlock()
	})
	return l.closeErr
}
