package sendfile2

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/epoll"
)

// sockWait waits for room in the send buffer of a socket through a private
// epoll instance, created at the first wait.
type sockWait struct {
	fd int
	w  *epoll.Waiter
}

func (sw *sockWait) wait(ctx context.Context) error {
	if sw.w == nil {
		w, err := epoll.New(sw.fd, unix.EPOLLOUT)
		if err != nil {
			return err
		}
		sw.w = w
	}
	_, err := sw.w.Wait(ctx)
	return err
}

func (sw *sockWait) close() {
	if sw.w != nil {
		sw.w.Close()
	}
}

// sendAll writes p to the socket with send(2), MSG_DONTWAIT and MSG_NOSIGNAL,
// waiting for room when the buffer is full. send(2) copies p into socket
// buffers before it returns.
func sendAll(ctx context.Context, sw *sockWait, p []byte) (int, error) {
	return sendAllFlags(ctx, sw, p, 0)
}

// more is the send(2) flag for a header: MSG_MORE, which holds it back to
// leave with the body, when a body follows.
func (t *transfer) more() int {
	if t.count > 0 {
		return unix.MSG_MORE
	}
	return 0
}

// sendAllFlags is sendAll with more send(2) flags, such as MSG_MORE.
func sendAllFlags(ctx context.Context, sw *sockWait, p []byte, flags int) (int, error) {
	done := 0
	for done < len(p) {
		n, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(sw.fd), uintptr(unsafe.Pointer(&p[done])), uintptr(len(p)-done),
			uintptr(unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL|flags), 0, 0)
		switch errno {
		case 0:
			done += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			if err := sw.wait(ctx); err != nil {
				return done, err
			}
		default:
			return done, os.NewSyscallError("send", errno)
		}
	}
	return done, nil
}

// Copy sends from a mapping of the file rather than from a buffer filled by
// pread(2) from copyKeepMin bytes when the Sender keeps a mapping of the file
// (see fileMaps: from its second send), and from copyMmapMin bytes always:
// below them, mmap(2) and munmap(2) cost more than the copy they save
// (BenchmarkCopyVariants).
var (
	copyKeepMin int64 = 64 << 10
	copyMmapMin int64 = 1 << 20
)

// copyWindow bounds how much of the file Copy maps at once.
const copyWindow = 64 << 20

// copyBufSizes are the sizes of the buffers of Copy's pread(2) path and of
// Receive's copy, smallest first, so that a small send holds a small buffer:
// with a thousand connections each sending a 16 KiB body, that is 16 MiB of
// buffers rather than 256 MiB. copyBufs pools each size.
var (
	copyBufSizes = [...]int{16 << 10, 64 << 10, 256 << 10}
	copyBufs     [len(copyBufSizes)]sync.Pool
)

// getCopyBuf returns a buffer for n bytes: the smallest that holds them, or
// the largest. putCopyBuf gives it back.
func getCopyBuf(n int64) *[]byte {
	i := 0
	for i < len(copyBufSizes)-1 && n > int64(copyBufSizes[i]) {
		i++
	}
	if bp, ok := copyBufs[i].Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, copyBufSizes[i])
	return &b
}

func putCopyBuf(bp *[]byte) {
	for i, size := range copyBufSizes {
		if len(*bp) == size {
			copyBufs[i].Put(bp)
			return
		}
	}
}

// copy is the Copy method: send(2) from a mapping of the file for large
// ranges, pread(2) into a buffer and send(2) for small ones. Safe by
// construction: send(2) copies before it returns.
func (t *transfer) copy() (int64, error) {
	sw := &sockWait{fd: t.sock}
	defer sw.close()
	if t.count < copyKeepMin {
		return t.copyRead(sw)
	}
	var fm *fileMap
	if t.off < t.st.Size {
		fm = t.s.maps.acquire(t.file, t.st, t.off)
	}
	if fm == nil && t.count < copyMmapMin {
		return t.copyRead(sw)
	}
	// The header goes first, corked with MSG_MORE.
	h, err := sendAllFlags(t.ctx, sw, t.hdr, t.more())
	if err != nil {
		if fm != nil {
			t.s.maps.release(fm)
		}
		return int64(h), err
	}
	n, err := t.copyMapped(sw, fm)
	return int64(h) + n, err
}

// copyRead sends the header and the range through a pread(2) buffer; a
// header that fits shares the buffer, and the send, with the first bytes of
// the file.
func (t *transfer) copyRead(sw *sockWait) (int64, error) {
	bp := getCopyBuf(int64(len(t.hdr)) + t.count)
	defer putCopyBuf(bp)
	buf := *bp
	var sent, h int64
	if len(t.hdr) > len(buf)/2 {
		n, err := sendAllFlags(t.ctx, sw, t.hdr, t.more())
		if err != nil {
			return int64(n), err
		}
		sent = int64(n)
	} else {
		h = int64(copy(buf, t.hdr))
	}
	end := t.off + t.count
	for pos := t.off; pos < end || h > 0; {
		if err := t.ctx.Err(); err != nil {
			return sent, context.Cause(t.ctx)
		}
		n, err := unix.Pread(t.file, buf[h:h+min(int64(len(buf))-h, end-pos)], pos)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return sent, os.NewSyscallError("pread", err)
		}
		if n == 0 && pos < end {
			return sent, shrunk(t.file, end, fmt.Errorf("pread: end of file at %d", pos))
		}
		pos += int64(n)
		m, err := sendAll(t.ctx, sw, buf[:h+int64(n)])
		sent += int64(m)
		h = 0
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// copyMapped sends the range from mappings of the file: the Sender's kept
// mappings (see fileMaps), starting with fm if it is not nil, else mappings
// of its own, one per window. It releases fm.
func (t *transfer) copyMapped(sw *sockWait, fm *fileMap) (int64, error) {
	st := t.st
	var sent int64
	end := t.off + t.count
	for sent < t.count {
		pos := t.off + sent
		if pos >= st.Size {
			// Past the size the file had when the send began (a kept
			// mapping of that version holds pos whenever pos is below it).
			t.unmap(fm, nil)
			return sent, shrunk(t.file, end, fmt.Errorf("fstat: end of file at %d", st.Size))
		}
		if sent > 0 {
			fm = t.s.maps.acquire(t.file, st, pos)
		}
		var mem []byte
		var base int64
		if fm != nil {
			base = fm.key.window * copyWindow
			mem = fm.mem[:min(int64(len(fm.mem)), end-base)]
		} else {
			base = pos &^ int64(os.Getpagesize()-1)
			var err error
			if mem, err = mmap(t.file, base, int(min(end-base, copyWindow)), unix.PROT_READ, unix.MAP_SHARED); err != nil {
				return sent, os.NewSyscallError("mmap", err)
			}
		}
		m, err := sendAll(t.ctx, sw, mem[pos-base:])
		t.unmap(fm, mem)
		fm = nil
		sent += int64(m)
		if err != nil {
			if errors.Is(err, unix.EFAULT) {
				// The kernel could not read the mapping: past the end of a file
				// that shrank. (It fails the copy; no SIGBUS reaches Go.)
				err = shrunk(t.file, end, err)
			}
			return sent, err
		}
	}
	t.unmap(fm, nil)
	return sent, nil
}

// unmap gives back a kept mapping fm, or unmaps mem, which copyMapped mapped
// for itself.
func (t *transfer) unmap(fm *fileMap, mem []byte) {
	switch {
	case fm != nil:
		t.s.maps.release(fm)
	case mem != nil:
		munmap(mem)
	}
}

// sendfile is the Sendfile baseline: UNSAFE, it returns while the socket
// still references the file's pages.
func (t *transfer) sendfile() (int64, error) {
	sw := &sockWait{fd: t.sock}
	defer sw.close()
	var sent int64
	off := t.off
	for sent < t.count {
		n, err := unix.Sendfile(t.sock, t.file, &off, int(min(t.count-sent, 1<<30)))
		sent += int64(max(n, 0))
		switch {
		case err == unix.EAGAIN:
			if err := sw.wait(t.ctx); err != nil {
				return sent, err
			}
		case err == unix.EINTR:
		case err != nil:
			return sent, os.NewSyscallError("sendfile", err)
		case n == 0:
			return sent, shrunk(t.file, t.off+t.count, fmt.Errorf("sendfile: end of file at %d", off))
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
	sw := &sockWait{fd: t.sock}
	defer sw.close()
	var sent int64
	off := t.off
	for sent < t.count {
		in, err := unix.Splice(t.file, &off, p[1], nil, int(min(t.count-sent, int64(pipeSize))), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return sent, os.NewSyscallError("splice", err)
		}
		if in == 0 {
			return sent, shrunk(t.file, t.off+t.count, fmt.Errorf("splice: end of file at %d", off))
		}
		for in > 0 {
			out, err := unix.Splice(p[0], nil, t.sock, nil, int(in), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			if out > 0 {
				in -= out
				sent += out
			}
			switch {
			case err == unix.EAGAIN:
				if err := sw.wait(t.ctx); err != nil {
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
