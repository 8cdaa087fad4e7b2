package uring

import (
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TaskRun names where the kernel runs a ring's task work (the second half of
// a completion, such as posting a SEND_ZC's CQE), as the ring's setup flags
// decide it.
type TaskRun uint8

const (
	// TaskRunDefer is IORING_SETUP_SINGLE_ISSUER|IORING_SETUP_DEFER_TASKRUN
	// (Linux 6.1): task work waits until the one thread that submits asks
	// for completions (io_uring_enter with IORING_ENTER_GETEVENTS), and
	// runs there, in batches.
	TaskRunDefer TaskRun = iota
	// TaskRunCoop is IORING_SETUP_COOP_TASKRUN|IORING_SETUP_TASKRUN_FLAG
	// (Linux 5.19): task work runs on the submitting thread the next time
	// it enters the kernel, without interrupting it when it runs.
	TaskRunCoop
	// TaskRunPlain is a ring set up with neither: task work interrupts the
	// thread that submitted, wherever it is.
	TaskRunPlain
)

var taskRunNames = [...]string{TaskRunDefer: "defer", TaskRunCoop: "coop", TaskRunPlain: "plain"}

func (t TaskRun) String() string {
	if int(t) < len(taskRunNames) {
		return taskRunNames[t]
	}
	return "taskrun?"
}

// setupFlags are the setup flags of t, with IORING_SETUP_SUBMIT_ALL (5.18,
// older than all of them) for all but TaskRunPlain, which tries it.
func (t TaskRun) setupFlags() []uint32 {
	switch t {
	case TaskRunDefer:
		return []uint32{setupSubmitAll | setupSingleIssuer | setupDeferTaskrun}
	case TaskRunCoop:
		return []uint32{setupSubmitAll | setupCoopTaskrun | setupTaskrunFlag}
	}
	return []uint32{setupSubmitAll, 0}
}

// wakeUD is the user_data of the ring thread's read of its eventfd: slot
// number past any table, generation 0, which the table never gives out.
const wakeUD = uint64(^uint32(0))

// ringThread is what a Loop in thread mode (Config.Thread) adds: one
// goroutine locked to its OS thread that alone enters the ring. Submitters
// write SQEs under the Loop's mutex and leave them unpublished; the thread
// publishes them and submits them in the same io_uring_enter in which it
// waits for completions, so that the kernel's task work runs there, in
// batches, and routes every CQE to its handler, as the reaper does in the
// other mode. To wake it, the thread keeps an IORING_OP_READ of an eventfd
// in its own ring; a submitter writes the eventfd only when the thread said,
// through sleeping, that it is about to wait.
type ringThread struct {
	taskRun TaskRun
	wakefd  int
	wakeBuf *[8]byte // the wake read's buffer, written by the kernel
	armed   bool     // the wake read is in flight (the thread's)
	// sleeping is set by the thread before it looks for work for the last
	// time and waits; the first submitter to clear it writes the eventfd.
	sleeping atomic.Bool
	tasks    []func() // under Loop.mu: to run on the thread (registrations)
	// roomWaiters, under Loop.mu, are submitters waiting for the SQEs
	// before theirs to be submitted: the thread must not wait for a
	// completion in the io_uring_enter that submits them.
	roomWaiters int
	stop        bool // under Loop.mu: release the ring and end
	done        chan struct{}
	withdrawn   []CQE // the results of requests a failed submission withdrew
}

// newThreadLoop starts the ring thread, which sets the ring up (a
// SINGLE_ISSUER ring belongs to the thread that creates it) and then
// drives it.
func newThreadLoop(cfg Config) (*Loop, error) {
	type made struct {
		l   *Loop
		err error
	}
	ch := make(chan made)
	go func() {
		// Never unlocked: when the goroutine ends, so does the thread.
		runtime.LockOSThread()
		l, err := setupThreadLoop(cfg)
		ch <- made{l, err}
		if err == nil {
			l.run()
		}
	}()
	m := <-ch
	return m.l, m.err
}

func setupThreadLoop(cfg Config) (*Loop, error) {
	var ring *Ring
	var err error
	tr := cfg.TaskRun
	for ; tr <= TaskRunPlain; tr++ {
		ring, err = newRing(cfg.SQEntries, cfg.CQEntries, tr.setupFlags())
		if err == nil || tr == TaskRunPlain {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	probe, err := ring.Probe()
	if err != nil {
		ring.Close()
		return nil, err
	}
	// Blocking, so that the ring's read of it waits (the kernel polls it)
	// rather than failing with EAGAIN; a write to an eventfd never waits.
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		ring.Close()
		return nil, os.NewSyscallError("eventfd", err)
	}
	l := newLoop(ring, probe)
	l.thr = &ringThread{taskRun: tr, wakefd: efd, wakeBuf: new([8]byte), done: make(chan struct{})}
	return l, nil
}

// wake wakes the thread if it waits or is about to.
func (t *ringThread) wake() {
	if t.sleeping.Load() && t.sleeping.CompareAndSwap(true, false) {
		t.signal()
	}
}

func (t *ringThread) signal() {
	one := [8]byte{1}
	for {
		_, err := unix.Write(t.wakefd, one[:])
		if err != unix.EINTR {
			return
		}
	}
}

// do runs f on the ring thread and returns its error: io_uring_register(2)
// on a SINGLE_ISSUER ring is refused to other threads.
func (l *Loop) do(f func() error) error {
	res := make(chan error, 1)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.thr.tasks = append(l.thr.tasks, func() { res <- f() })
	l.mu.Unlock()
	l.thr.wake()
	return <-res
}

// run is the ring thread's loop: publish what submitters wrote, submit it
// and wait for completions in one io_uring_enter, deliver them.
func (l *Loop) run() {
	t := l.thr
	defer close(t.done)
	for {
		l.mu.Lock()
		tasks, stop := t.tasks, t.stop
		t.tasks = nil
		l.mu.Unlock()
		for _, f := range tasks {
			f()
		}
		if stop {
			l.finish()
			return
		}
		t.sleeping.Store(true)
		l.mu.Lock()
		if !t.armed {
			t.arm(l.ring)
		}
		atomic.StoreUint32(l.ring.sqTail, l.ring.sqeTail)
		pending := l.ring.Pending()
		wait := uint32(1)
		if len(t.tasks) > 0 || t.stop || t.roomWaiters > 0 {
			wait = 0
		}
		l.mu.Unlock()
		if wait == 0 {
			t.sleeping.Store(false)
		}
		_, err := l.ring.enter(pending, wait, enterGetEvents)
		t.sleeping.Store(false)
		if pending > 0 {
			l.submitted(err)
		}
		l.reapMu.Lock()
		l.drain()
		l.reapMu.Unlock()
	}
}

// arm prepares the wake read. The caller holds Loop.mu; lock keeps an SQE
// free for it.
func (t *ringThread) arm(r *Ring) {
	sqe := r.SQE()
	sqe.Opcode = OpRead
	sqe.Fd = int32(t.wakefd)
	sqe.Addr = uint64(uintptr(unsafe.Pointer(t.wakeBuf)))
	sqe.Len = uint32(len(t.wakeBuf))
	sqe.UserData = wakeUD
	t.armed = true
}

// submitted looks at what the last io_uring_enter left of the published
// SQEs. Submission stops short only on an error (IORING_SETUP_SUBMIT_ALL)
// or for want of memory: it submits the rest again while the kernel takes
// some, then withdraws what is left, and every SQE written since, and
// completes those requests with the error, through their handlers.
func (l *Loop) submitted(err error) {
	t := l.thr
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.sqRoom.Broadcast()
	for {
		published := atomic.LoadUint32(l.ring.sqTail)
		left := published - atomic.LoadUint32(l.ring.sqHead)
		if left == 0 {
			return
		}
		if err == nil || err == unix.EINTR {
			var n int
			n, err = l.ring.enter(left, 0, 0)
			if err == nil && n == 0 {
				err = unix.EAGAIN
			}
			if err == nil || err == unix.EINTR {
				continue
			}
		}
		break
	}
	res := -int32(err.(unix.Errno))
	head := atomic.LoadUint32(l.ring.sqHead)
	for i := head; i != l.ring.sqeTail; i++ {
		ud := l.ring.sqes[i&l.ring.sqMask].UserData
		if ud == wakeUD {
			t.armed = false
			continue
		}
		t.withdrawn = append(t.withdrawn, CQE{UserData: ud, Res: res})
	}
	l.ring.Retract()
}

// finish waits for the wake read to end, then releases the ring. Every
// request has completed (Close waited for it).
func (l *Loop) finish() {
	t := l.thr
	if t.armed {
		t.signal()
		for t.armed {
			l.ring.enter(0, 1, enterGetEvents)
			l.reapMu.Lock()
			l.drain()
			l.reapMu.Unlock()
		}
	}
	l.reapMu.Lock()
	l.released = true
	l.closeErr = l.ring.Close()
	l.reapMu.Unlock()
	unix.Close(t.wakefd)
}
