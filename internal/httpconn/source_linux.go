package httpconn

import (
	"io"
	"os"
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
	RawConn    syscall.RawConn // File's
	Stat       unix.Stat_t     // the file's fstat(2), or a StatedFile's Stat
	Off, Count int64
	Readable   bool // File is known open for reading (see engine.Job)

	// What advance moves: the section reader's position, or else the
	// file's offset; and the limited reader's limit.
	section *io.SectionReader
	limited *io.LimitedReader
}

// advance moves the reader past n bytes sent, as (*net.TCPConn).ReadFrom
// would leave it.
func (s *Source) advance(n int64) {
	switch {
	case s.section != nil:
		s.section.Seek(n, io.SeekCurrent)
	case s.RawConn != nil:
		seekTo(s.RawConn, s.Off+n)
	}
	if s.limited != nil {
		s.limited.N -= n
	}
}

// StatedFile reads a range of File, as its SectionReader does, for a caller
// that has just made File's fstat(2), or a stat(2) of a name that it made
// sure leads to File's inode, and gives it in Stat: ReadFrom then sends it
// without a look of its own. serve's lean path, which stats every name before
// it takes a file it keeps open, sends through it.
type StatedFile struct {
	io.SectionReader
	File *os.File
	Stat unix.Stat_t
}

// SourceOf returns the file range that reading r to EOF would return.
func SourceOf(r io.Reader) (Source, bool) {
	p := prober{once: true}
	var src Source
	ok := p.sourceOf(r, &src)
	return src, ok
}

// prober looks at the files of a conn's sends. What the RawConn.Control it
// makes needs is in its fields, and the function Control runs is bound once,
// so that a look allocates nothing; it keeps the RawConn of the last
// *os.File, which a keep-alive conn often sends again. One goroutine at a
// time uses it.
type prober struct {
	file     *os.File
	rc       syscall.RawConn // file's
	readable bool            // file is open for reading (fcntl(2), once)
	once     bool            // for one look (SourceOf): keeps nothing, asks no fcntl(2)
	known    bool            // the file looked at last is file

	fstat  func(fd uintptr) // p.look, bound once
	stat   bool             // in: look makes the fstat
	offset bool             // in: look reads the offset too
	flags  bool             // in: look asks fcntl(2) whether the file is readable
	st     unix.Stat_t      // out
	off    int64            // out
	ok     bool             // out
}

// sourceOf sets *src to the file range that reading r to EOF would return,
// and reports whether r reads one.
func (p *prober) sourceOf(r io.Reader, src *Source) bool {
	*src = Source{}
	limit := int64(1<<63 - 1)
	lr, _ := r.(*io.LimitedReader)
	if lr != nil {
		if lr.N <= 0 {
			return true
		}
		limit, r = lr.N, lr.R
	}
	switch v := r.(type) {
	case *StatedFile:
		_, base, _ := v.Outer()
		pos, err := v.Seek(0, io.SeekCurrent)
		if err != nil || base < 0 || v.Stat.Mode&unix.S_IFMT != unix.S_IFREG {
			return false
		}
		rc, ok := p.regularFile(v.File, false, false)
		if !ok {
			return false
		}
		off := base + pos
		*src = Source{File: v.File, RawConn: rc, Stat: v.Stat, Off: off, Count: max(0, min(limit, v.Size()-pos, v.Stat.Size-off)), section: &v.SectionReader}
		src.Readable = p.readable
	case *io.SectionReader:
		// Read returns ReadAt(p, base+pos) up to base+Size.
		ra, base, _ := v.Outer()
		f, ok := ra.(syscall.Conn)
		if !ok || base < 0 {
			return false
		}
		pos, err := v.Seek(0, io.SeekCurrent)
		if err != nil {
			return false
		}
		rc, ok := p.regularFile(f, true, false)
		if !ok {
			return false
		}
		off := base + pos
		*src = Source{File: f, RawConn: rc, Stat: p.st, Off: off, Count: max(0, min(limit, v.Size()-pos, p.st.Size-off)), section: v}
		src.Readable = p.known && p.readable
	case syscall.Conn:
		// Read returns the bytes from the file's offset, and moves it.
		rc, ok := p.regularFile(v, true, true)
		if !ok {
			return false
		}
		*src = Source{File: v, RawConn: rc, Stat: p.st, Off: p.off, Count: max(0, min(limit, p.st.Size-p.off))}
		src.Readable = p.known && p.readable
	default:
		return false
	}
	src.limited = lr
	return true
}

// regularFile returns f's RawConn if f is a regular file, with its fstat(2)
// in p.st and, when offset is set, its offset (lseek(2)) in p.off. Without
// stat, it looks at nothing (the caller knows), but whether f is readable
// the first time it sees f.
func (p *prober) regularFile(f syscall.Conn, stat, offset bool) (syscall.RawConn, bool) {
	rc, err := p.rawConn(f)
	if err != nil {
		return nil, false
	}
	if !stat && !p.flags {
		return rc, true
	}
	if p.fstat == nil {
		p.fstat = p.look
	}
	p.stat, p.offset, p.ok = stat, offset, false
	if rc.Control(p.fstat) != nil || !p.ok {
		return nil, false
	}
	return rc, true
}

// look is what regularFile runs under Control.
func (p *prober) look(fd uintptr) {
	if p.stat && (unix.Fstat(int(fd), &p.st) != nil || p.st.Mode&unix.S_IFMT != unix.S_IFREG) {
		return
	}
	if p.offset {
		var err error
		if p.off, err = unix.Seek(int(fd), 0, io.SeekCurrent); err != nil {
			return
		}
	}
	if p.flags {
		// An open file's access mode never changes.
		fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		p.readable = err == nil && fl&unix.O_PATH == 0 && fl&unix.O_ACCMODE != unix.O_WRONLY
	}
	p.ok = true
}

// rawConn returns f's RawConn, the one kept if f is the *os.File it is of;
// p.flags says whether look must ask fcntl(2) for p.readable, and p.known
// whether f is p.file.
func (p *prober) rawConn(f syscall.Conn) (syscall.RawConn, error) {
	of, isFile := f.(*os.File)
	p.flags, p.known = false, isFile && !p.once
	if isFile && of != nil && of == p.file {
		return p.rc, nil
	}
	rc, err := f.SyscallConn()
	if err == nil && isFile && !p.once {
		p.file, p.rc, p.readable, p.flags = of, rc, false, true
	}
	return rc, err
}

// seekTo sets the offset of the file behind rc.
func seekTo(rc syscall.RawConn, off int64) {
	rc.Control(func(fd uintptr) { unix.Seek(int(fd), off, io.SeekStart) })
}
