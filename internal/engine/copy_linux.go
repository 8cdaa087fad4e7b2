package engine

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// copy is the Copy method: send(2) from a mapping of the file for large
// ranges, pread(2) into a buffer and send(2) for small ones. Safe by
// construction: send(2) copies before it returns.
func (t *transfer) copy() (int64, error) {
	sw := t.e.roomWait(t.Sock)
	defer sw.close()
	if t.Count < t.e.cfg.Tuning.CopyKeepMin {
		return t.copyRead(sw)
	}
	var fm *fileMap
	if t.Off < t.Stat.Size {
		fm = t.e.maps.acquire(t.File, t.Stat, t.Off, false, &t.Readable)
	}
	if fm == nil && t.Count < t.e.cfg.Tuning.CopyMmapMin {
		return t.copyRead(sw)
	}
	// The header goes first, corked with MSG_MORE.
	h, err := sendAllFlags(t.Ctx, sw, t.Header, t.more())
	if err != nil {
		if fm != nil {
			t.e.maps.release(fm)
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
	bp := getCopyBuf(int64(len(t.Header)) + t.Count)
	defer putCopyBuf(bp)
	buf := *bp
	var sent, h int64
	if len(t.Header) > len(buf)/2 {
		n, err := sendAllFlags(t.Ctx, sw, t.Header, t.more())
		if err != nil {
			return int64(n), err
		}
		sent = int64(n)
	} else {
		h = int64(copy(buf, t.Header))
	}
	end := t.Off + t.Count
	for pos := t.Off; pos < end || h > 0; {
		if err := t.Ctx.Err(); err != nil {
			return sent, context.Cause(t.Ctx)
		}
		n, err := unix.Pread(t.File, buf[h:h+min(int64(len(buf))-h, end-pos)], pos)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return sent, os.NewSyscallError("pread", err)
		}
		if n == 0 && pos < end {
			return sent, shrunk(t.File, end, fmt.Errorf("pread: end of file at %d", pos))
		}
		pos += int64(n)
		m, err := sendAll(t.Ctx, sw, buf[:h+int64(n)])
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
	st := t.Stat
	var sent int64
	end := t.Off + t.Count
	for sent < t.Count {
		pos := t.Off + sent
		if pos >= st.Size {
			// Past the size the file had when the send began (a kept
			// mapping of that version holds pos whenever pos is below it).
			t.unmap(fm, nil)
			return sent, shrunk(t.File, end, fmt.Errorf("fstat: end of file at %d", st.Size))
		}
		if sent > 0 {
			fm = t.e.maps.acquire(t.File, st, pos, false, &t.Readable)
		}
		var mem []byte
		var base int64
		if fm != nil {
			base = fm.key.window * copyWindow
			mem = fm.mem[:min(int64(len(fm.mem)), end-base)]
		} else {
			base = pos &^ int64(os.Getpagesize()-1)
			var err error
			if mem, err = mapFile(t.File, base, int(min(end-base, copyWindow))); err != nil {
				return sent, os.NewSyscallError("mmap", err)
			}
		}
		m, err := sendAll(t.Ctx, sw, mem[pos-base:])
		t.unmap(fm, mem)
		fm = nil
		sent += int64(m)
		if err != nil {
			if errors.Is(err, unix.EFAULT) {
				// The kernel could not read the mapping: past the end of a file
				// that shrank. (It fails the copy; no SIGBUS reaches Go.)
				err = shrunk(t.File, end, err)
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
		t.e.maps.release(fm)
	case mem != nil:
		munmap(mem)
	}
}
