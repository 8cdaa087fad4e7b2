package engine

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/uring"
)

// ReceivesWithURing reports whether the URing receive can run: the ring has
// registered buffers and IORING_OP_RECV and IORING_OP_WRITE_FIXED.
func (e *Engines) ReceivesWithURing() bool {
	if e.loop == nil || e.pool == nil {
		return false
	}
	p := e.loop.Probe()
	return p.Supports(uring.OpRecv) && p.Supports(uring.OpWriteFixed)
}

// Receive runs j. Its count is always the number of bytes written to the
// file contiguously from j.Off.
func (e *Engines) Receive(j RecvJob) Outcome {
	r := &receiver{e: e, RecvJob: j}
	var n int64
	var err error
	switch j.Kind {
	case URing:
		n, err = r.uring()
	case Splice:
		n, err = r.splice()
	default:
		n, err = r.copy()
	}
	if err == nil && e.cfg.Sync && j.Kind != URing {
		err = fdatasync(j.File)
	}
	return Outcome{N: n, Err: err, Fallbacks: r.fallbacks}
}

// copy is the Copy receive: recv(2) into a buffer until it is full or the
// socket has nothing more for now, then pwrite(2) of the buffer; it waits for
// bytes to read only with nothing left to write, so that a receive that stops
// has written everything it took from the socket.
func (r *receiver) copy() (int64, error) {
	rw := r.e.dataWait(r.Sock)
	defer rw.close()
	bp := getCopyBuf(math.MaxInt64)
	defer putCopyBuf(bp)
	buf := *bp
	var written int64
	for {
		if err := r.Ctx.Err(); err != nil {
			return written, context.Cause(r.Ctx)
		}
		want := len(buf)
		if r.Count >= 0 {
			want = int(min(int64(want), r.Count-written))
		}
		h, ended := 0, false
		var rerr error
	fill:
		for h < want {
			n, errno := recvDontWait(r.Sock, buf[h:want])
			switch {
			case errno == unix.EINTR:
			case errno == unix.EAGAIN:
				if h > 0 {
					break fill // write what we have before waiting
				}
				if err := rw.wait(r.Ctx); err != nil {
					return written, err
				}
			case errno != 0:
				rerr = os.NewSyscallError("recv", errno)
				break fill
			case n == 0:
				ended = true
				break fill
			default:
				h += n
			}
		}
		n, err := pwriteAll(r.File, buf[:h], r.Off+written)
		written += int64(n)
		switch {
		case err != nil:
			return written, err
		case rerr != nil:
			return written, rerr
		case ended && r.Count >= 0 && written < r.Count:
			return written, unexpectedEOF(written, r.Count)
		case ended || written == r.Count:
			return written, nil
		}
	}
}

// splice is the Splice receive, socket to pipe to file with splice(2): the
// socket's pages go into the pipe, and the write to the file is the one
// copy. Like copy, it empties the pipe into the file before it waits, and it
// gives the empty pipe back to the Engines while it waits.
func (r *receiver) splice() (int64, error) {
	rw := r.e.dataWait(r.Sock)
	defer rw.close()
	var p pipe
	have := false // p is this receive's
	var in int64  // bytes in p
	defer func() {
		if have {
			r.e.pipes.put(p, in == 0)
		}
	}()
	var written int64
	for {
		if err := r.Ctx.Err(); err != nil {
			return written, context.Cause(r.Ctx)
		}
		if !have {
			var err error
			if p, err = r.e.pipes.get(); err != nil {
				return written, err
			}
			have = true
		}
		want := int64(p.size)
		if r.Count >= 0 {
			want = min(want, r.Count-written)
		}
		var err error
		in, err = unix.Splice(r.Sock, nil, p.w, nil, int(want), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		switch {
		case err == unix.EINTR:
			in = 0
			continue
		case err == unix.EAGAIN:
			in, have = 0, false
			r.e.pipes.put(p, true)
			if err := rw.wait(r.Ctx); err != nil {
				return written, err
			}
			continue
		case err == unix.EINVAL && written == 0:
			// The socket does not splice: receive with copy.
			in = 0
			r.fallbacks++
			return r.copy()
		case err != nil:
			in = 0
			return written, os.NewSyscallError("splice", err)
		case in == 0:
			if r.Count >= 0 {
				return written, unexpectedEOF(written, r.Count)
			}
			return written, nil
		}
		for in > 0 {
			off := r.Off + written
			out, err := r.spliceOut(p, off, in)
			if out > 0 {
				in -= out
				written += out
			}
			switch {
			case err == unix.EINTR || err == unix.EAGAIN:
			case err == unix.EINVAL:
				// The file system does not splice into its files: write
				// what the pipe holds, then receive the rest with copy.
				n, err := drainPipe(p, in, r.File, off)
				written += n
				in -= n
				if err != nil {
					return written, err
				}
				r.fallbacks++
				rest := &receiver{e: r.e, RecvJob: r.RecvJob}
				rest.Off += written
				if rest.Count >= 0 {
					rest.Count -= written
					if rest.Count == 0 {
						return written, nil
					}
				}
				n, err = rest.copy()
				r.fallbacks += rest.fallbacks
				return written + n, err
			case err != nil:
				return written, os.NewSyscallError("splice", err)
			case out == 0:
				return written, fmt.Errorf("splice: %w", io.ErrShortWrite)
			}
		}
		if written == r.Count {
			return written, nil
		}
	}
}

// spliceOut splices up to n bytes from p to the file at off.
func (r *receiver) spliceOut(p pipe, off, n int64) (int64, error) {
	if hook := r.e.cfg.Tuning.SpliceWrite; hook != nil {
		if err := hook(); err != nil {
			return 0, err
		}
	}
	return unix.Splice(p.r, nil, r.File, &off, int(n), unix.SPLICE_F_MOVE)
}

// drainPipe reads the n bytes p holds and writes them to file at off with
// pwrite(2). It returns how many it wrote.
func drainPipe(p pipe, n int64, file int, off int64) (int64, error) {
	bp := getCopyBuf(n)
	defer putCopyBuf(bp)
	buf := *bp
	var done int64
	for done < n {
		k, err := unix.Read(p.r, buf[:min(int64(len(buf)), n-done)])
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return done, os.NewSyscallError("read", err)
		case k == 0:
			return done, fmt.Errorf("pipe: %w", io.ErrUnexpectedEOF)
		}
		w, err := pwriteAll(file, buf[:k], off+done)
		done += int64(w)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}
