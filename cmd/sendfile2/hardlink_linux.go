package main

import (
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// dirBufs are lockDir's buffers, on the heap: on the stack of a request's
// goroutine, one would make it grow at each request that follows a GC's
// shrinking of it.
var dirBufs = sync.Pool{New: func() any {
	b := make([]byte, 2048) // room for several entries of the longest name
	return &b
}}

// lockDir waits for the lock of the directory d, with getdents(2) on it.
// With drain, it reads d to its end first.
func lockDir(d *os.File, drain bool) error {
	rc, err := d.SyscallConn()
	if err != nil {
		return err
	}
	bp := dirBufs.Get().(*[]byte)
	defer dirBufs.Put(bp)
	buf := *bp
	cerr := rc.Control(func(fd uintptr) {
		for {
			var n int
			n, err = unix.Getdents(int(fd), buf[:])
			if err == syscall.EINTR {
				continue
			}
			if err != nil || n == 0 || !drain {
				return
			}
		}
	})
	if err == nil {
		err = cerr
	}
	return err
}
