package engine

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// sendfile is the Sendfile baseline: UNSAFE, it returns while the socket
// still references the file's pages.
func (t *transfer) sendfile() (int64, error) {
	sw := t.e.roomWait(t.Sock)
	defer sw.close()
	var sent int64
	off := t.Off
	for sent < t.Count {
		n, err := unix.Sendfile(t.Sock, t.File, &off, int(min(t.Count-sent, 1<<30)))
		sent += int64(max(n, 0))
		switch {
		case err == unix.EAGAIN:
			if err := sw.wait(t.Ctx); err != nil {
				return sent, err
			}
		case err == unix.EINTR:
		case err != nil:
			return sent, os.NewSyscallError("sendfile", err)
		case n == 0:
			return sent, shrunk(t.File, t.Off+t.Count, fmt.Errorf("sendfile: end of file at %d", off))
		}
	}
	return sent, nil
}

// splice is the Splice baseline, file to pipe to socket: UNSAFE like
// sendfile.
func (t *transfer) splice() (int64, error) {
	p, pipeSize, err := newPipe()
	if err != nil {
		return 0, err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	sw := t.e.roomWait(t.Sock)
	defer sw.close()
	var sent int64
	off := t.Off
	for sent < t.Count {
		in, err := unix.Splice(t.File, &off, p[1], nil, int(min(t.Count-sent, int64(pipeSize))), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return sent, os.NewSyscallError("splice", err)
		}
		if in == 0 {
			return sent, shrunk(t.File, t.Off+t.Count, fmt.Errorf("splice: end of file at %d", off))
		}
		for in > 0 {
			out, err := unix.Splice(p[0], nil, t.Sock, nil, int(in), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			if out > 0 {
				in -= out
				sent += out
			}
			switch {
			case err == unix.EAGAIN:
				if err := sw.wait(t.Ctx); err != nil {
					return sent, err
				}
			case err == unix.EINTR:
			case err != nil:
				return sent, os.NewSyscallError("splice", err)
			}
		}
	}
	return sent, nil
}

// newPipe makes a non-blocking pipe for splice(2), grown to 1 MiB where the
// process may (F_SETPIPE_SZ), and returns its ends and its size.
func newPipe() ([2]int, int, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return p, 0, os.NewSyscallError("pipe2", err)
	}
	size, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, 1<<20)
	if err != nil {
		size = 64 << 10 // the default
	}
	return p, size, nil
}
