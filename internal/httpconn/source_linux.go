package httpconn

import (
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// IsFile reports whether r reads a regular file, with or without exposing
// its descriptor.
func IsFile(r io.Reader) bool {
	if _, ok := SourceOf(r); ok {
		return true
	}
	return HiddenFile(r)
}

// Source is the file range behind a reader that ReadFrom recognises.
type Source struct {
	File       syscall.Conn
	Stat       unix.Stat_t // the file's fstat(2)
	Off, Count int64
	advance    func(n int64) // moves the reader past n bytes sent
}

// SourceOf returns the file range that reading r to EOF would return,
// and how to move r past it, as (*net.TCPConn).ReadFrom would leave it.
func SourceOf(r io.Reader) (Source, bool) {
	limit := int64(1<<63 - 1)
	lr, _ := r.(*io.LimitedReader)
	if lr != nil {
		if lr.N <= 0 {
			return Source{advance: func(int64) {}}, true
		}
		limit, r = lr.N, lr.R
	}
	var src Source
	switch v := r.(type) {
	case *io.SectionReader:
		// Read returns ReadAt(p, base+pos) up to base+Size.
		ra, base, _ := v.Outer()
		f, ok := ra.(syscall.Conn)
		if !ok || base < 0 {
			return Source{}, false
		}
		pos, err := v.Seek(0, io.SeekCurrent)
		if err != nil {
			return Source{}, false
		}
		st, _, ok := regularFile(f, false)
		if !ok {
			return Source{}, false
		}
		off := base + pos
		src = Source{File: f, Stat: st, Off: off, Count: max(0, min(limit, v.Size()-pos, st.Size-off))}
		src.advance = func(n int64) { v.Seek(n, io.SeekCurrent) }
	case syscall.Conn:
		// Read returns the bytes from the file's offset, and moves it.
		st, off, ok := regularFile(v, true)
		if !ok {
			return Source{}, false
		}
		src = Source{File: v, Stat: st, Off: off, Count: max(0, min(limit, st.Size-off))}
		src.advance = func(n int64) { seekTo(v, off+n) }
	default:
		return Source{}, false
	}
	if lr != nil {
		advance := src.advance
		src.advance = func(n int64) { advance(n); lr.N -= n }
	}
	return src, true
}

// regularFile returns the fstat(2) of the file behind f and, when offset is
// set, its offset (lseek(2)), if f is a regular file.
func regularFile(f syscall.Conn, offset bool) (st unix.Stat_t, off int64, ok bool) {
	rc, err := f.SyscallConn()
	if err != nil {
		return st, 0, false
	}
	cerr := rc.Control(func(fd uintptr) {
		if unix.Fstat(int(fd), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			return
		}
		if offset {
			if off, err = unix.Seek(int(fd), 0, io.SeekCurrent); err != nil {
				return
			}
		}
		ok = true
	})
	return st, off, ok && cerr == nil
}

// seekTo sets the offset of the file behind f.
func seekTo(f syscall.Conn, off int64) {
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.Seek(int(fd), off, io.SeekStart) })
	}
}
