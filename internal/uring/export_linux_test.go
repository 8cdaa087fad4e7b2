package uring

import (
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Mmap allocates size bytes of anonymous memory outside the Go heap, suitable
// for registered buffers.
func Mmap(size int) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	return b, nil
}

// HoldDrain takes the completion queue's drain, as a goroutine that drains it
// does, and returns what that goroutine does once it has found the queue
// empty: let go of it.
func HoldDrain(l *Loop) (release func()) {
	l.reapMu.Lock()
	return func() {
		if l.unlockReap() {
			l.drainUnlock()
		}
	}
}

// Asleep reports whether l's ring thread has said that it waits, or is
// about to, in io_uring_enter for a completion.
func Asleep(l *Loop) bool { return l.thr != nil && l.thr.sleeping.Load() }

// DeferAlone is io_uring_setup's error for IORING_SETUP_DEFER_TASKRUN
// without IORING_SETUP_SINGLE_ISSUER.
func DeferAlone() error {
	r, err := newRing(8, 16, []uint32{setupDeferTaskrun})
	if r != nil {
		r.Close()
	}
	return err
}

// OtherThread sets up a ring with tr's flags on a thread of its own and
// returns the errors of io_uring_register(2) (IORING_REGISTER_PROBE) and
// io_uring_enter(2) (IORING_ENTER_GETEVENTS) called on it from the
// caller's thread; setup is the error of setting it up.
func OtherThread(tr TaskRun) (setup, register, enter error) {
	made, done := make(chan *Ring), make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		r, err := newRing(8, 16, tr.setupFlags())
		if err != nil {
			setup = err
			close(made)
			return
		}
		made <- r
		<-done
		r.Close()
		close(made)
	}()
	r := <-made
	if r == nil {
		return setup, nil, nil
	}
	runtime.LockOSThread() // not the ring's thread
	defer runtime.UnlockOSThread()
	var p probeBuf
	register = r.register(registerProbe, unsafe.Pointer(&p), probeOpsLen)
	_, enter = r.enter(0, 0, enterGetEvents)
	close(done)
	<-made
	return nil, register, enter
}
