package uring

import (
	"os"

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
