package sendfile2

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/engine"
)

// NewListener wraps ln so that the conns it accepts send file bodies with s.
// Serve HTTP on it as usual: net/http hands a response body that is a file
// (with a Content-Length, as http.FileServer, http.ServeFile and
// http.ServeContent set it) to the conn's ReadFrom, after writing its first
// 512 bytes through its own buffer for content sniffing, and the wrapped conn
// sends it with s.SendFrom. When the handler's write returns, the kernel holds
// no reference to the file's pages, so the file may be rewritten or truncated
// without the client receiving the new bytes (with a safe method: see
// Method.Safe). Without the wrapper net/http sends with sendfile(2), which
// gives no such guarantee.
//
// Since Go 1.24, net.Listen makes MPTCP listeners on Linux, and the TCP
// sockets they accept cannot send zero-copy: the Sender copies on them,
// safely, and counts a fallback. For zero-copy, listen with a
// net.ListenConfig on which SetMultipathTCP(false) was called.
//
// An accepted conn implements io.ReaderFrom. ReadFrom sends with s when r is,
// or is an *io.LimitedReader around, one of:
//
//   - an *os.File, or any reader that exposes its descriptor through
//     syscall.Conn (as the wrapper (*os.File).WriteTo passes to io.Copy
//     does), open on a regular file: from the file's offset to its end (its
//     size when ReadFrom starts), and the offset ends after the bytes sent,
//     as with (*net.TCPConn).ReadFrom;
//   - an *io.SectionReader whose io.ReaderAt is such a file: from the
//     section's position to its end (or the file's), and the position ends
//     after the bytes sent; the file's own offset is not used.
//
// An *io.LimitedReader bounds the count and has N decreased by the bytes
// sent. A file that shrinks during the send ends it as EOF would. A reader
// that exposes a descriptor is taken to return that descriptor's bytes, as
// (*net.TCPConn).ReadFrom also assumes. Any other reader, or a descriptor
// that is not a regular file (a pipe, a socket), is copied with the conn's
// Write, through a buffer: safe, without zero copy.
//
// io.Copy(conn, file) takes the same path: the conn's SyscallConn returns a
// syscall.RawConn that does not expose the socket to the os package, so
// (*os.File).WriteTo cannot call sendfile(2) on it and falls back to ReadFrom.
// The other direction pays for that: copies from the conn to a file or a
// socket cannot use splice(2) and go through a buffer.
//
// Deadlines set on the conn (SetDeadline, SetWriteDeadline, and so net/http's
// Server.WriteTimeout and ResponseController.SetWriteDeadline) apply to
// ReadFrom: a send still running when the write deadline passes stops, and
// ReadFrom returns an error matching os.ErrDeadlineExceeded (a net.Error
// whose Timeout is true), at once if the deadline has already passed. Close
// stops a ReadFrom in flight, which returns an error matching net.ErrClosed;
// the socket stays open until that send has stopped. Writes and ReadFrom are
// serialized, as on a net.TCPConn. The conn keeps CloseRead and CloseWrite
// when the accepted conn has them; other methods of the accepted conn's type
// (SetNoDelay, for instance) are hidden: set socket options through
// SyscallConn.
//
// The conn sends on the descriptor of the accepted conn, or of the conn
// under it when the accepted conn is a wrapper known to write to it
// unchanged: netutil.LimitListener's, so NewListener(netutil.LimitListener(ln,
// n), s) sends with s (and its conns keep CloseRead and CloseWrite). A
// wrapper of your own can say so by implementing syscall.Conn with the
// socket's SyscallConn. Conns that expose no descriptor (a listener that
// already speaks TLS, for instance) are returned unchanged; the first such
// conn that is not a *tls.Conn is logged, once per listener, with the
// Sender's Logger (Config.Logger). TLS is not in
// scope: a *tls.Conn has no ReadFrom and encrypts into its own buffers,
// which is safe already, so wrapping the TCP listener under tls.NewListener
// gains nothing.
//
// What goes around the Sender, copied through a buffer (safe, without zero
// copy), and what to do:
//
//   - A listener wrapper around NewListener's: netutil.LimitListener(
//     NewListener(ln, s), n) hides the conn's ReadFrom from net/http. Wrap
//     the other way round. ServeContent counts such bodies in
//     Stats.Bypassed (BypassWrappedConn); http.FileServer cannot see them.
//   - Middleware whose ResponseWriter hides ReadFrom: give it a ReadFrom
//     that calls the wrapped writer's, or use ServeContent, which finds a
//     ReadFrom through Unwrap (else counts BypassWriter).
//   - Readers that hide the file's descriptor (http.FileServerFS,
//     http.FS, os.DirFS behind them, embed.FS): counted as
//     BypassNoDescriptor. Use http.FileServer(http.Dir(dir)), or open the
//     file (an *os.Root) and call ServeContent.
//   - HTTP/2 (h2c) frames bodies through buffers: ServeContent counts
//     BypassHTTP2; serve HTTP/1.1 where the Sender should send.
//
// With ServeContent (and ConnContext on the http.Server), a conn also holds
// the response head that net/http writes before the file, and sends it with
// the file, in the same send.
//
// If s is nil, file bodies are copied with Write: safe, without Sender.
// Closing s makes later sends fail with an error matching ErrClosed.
func NewListener(ln net.Listener, s *Sender) net.Listener {
	return &listener{Listener: ln, s: s}
}

type listener struct {
	net.Listener
	s      *Sender
	warned sync.Once // of an accepted conn without a socket
}

// Accept waits for the next connection and wraps it.
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w := newConn(c, l.s)
	if w == c && l.s != nil {
		if _, isTLS := c.(*tls.Conn); !isTLS {
			l.warned.Do(func() {
				l.s.logger().Warn("sendfile2: NewListener: the accepted conns expose no socket: their file bodies do not go through the Sender",
					"conn", fmt.Sprintf("%T", c))
			})
		}
	}
	return w, nil
}

// newConn wraps c, keeping its CloseRead and CloseWrite methods if it, or
// the socket under it, has them. It sends on the socket that c is or holds
// (see socketUnder); a conn without one is returned unchanged.
func newConn(c net.Conn, s *Sender) net.Conn {
	sc, under := socketUnder(c)
	if sc == nil {
		return c
	}
	w := &conn{Conn: c, raw: sc, s: s, wsem: make(chan struct{}, 1)}
	w.life, w.kill = context.WithCancelCause(context.Background())
	w.sends = w.life
	if s != nil {
		// Once per conn, not at every send: see sendChecked.
		w.sends, w.unwatch = s.sendContext(w.life)
	}
	w.wctx, w.wcancel = context.WithCancelCause(w.sends)
	for _, x := range []net.Conn{c, under} {
		if cr, ok := x.(interface{ CloseRead() error }); ok && w.closeRead == nil {
			w.closeRead = cr.CloseRead
		}
		if cw, ok := x.(interface{ CloseWrite() error }); ok && w.closeWrite == nil {
			w.closeWrite = cw.CloseWrite
		}
	}
	switch {
	case w.closeRead != nil && w.closeWrite != nil:
		return halfCloseConn{w}
	case w.closeWrite != nil:
		return closeWriteConn{w}
	case w.closeRead != nil:
		return closeReadConn{w}
	}
	return w
}

// socketUnder returns the socket the Sender may send on for c, and the conn
// that holds it when c is a wrapper: c itself when it exposes its descriptor
// (syscall.Conn), else the conn inside a wrapper known to write to it
// unchanged (see innerConn), down to one that exposes its descriptor. It
// returns nil when there is none.
func socketUnder(c net.Conn) (syscall.Conn, net.Conn) {
	for x := c; x != nil; x = innerConn(x) {
		if sc, ok := x.(syscall.Conn); ok {
			return sc, x
		}
	}
	return nil, nil
}

// conn is an accepted connection whose ReadFrom sends files with a Sender.
type conn struct {
	net.Conn
	raw syscall.Conn // the accepted conn, or the one it wraps: its descriptor is the one the Sender sends on
	s   *Sender

	// CloseRead and CloseWrite of the accepted conn, or of the one it wraps;
	// nil when neither has it.
	closeRead, closeWrite func() error

	// Checked at the first ReadFrom that sends a file, under wsem.
	rc   syscall.RawConn
	sock *engine.Socket

	wsem chan struct{} // held by Write and ReadFrom: one writer at a time

	// Under wsem: hold makes the next Write keep its bytes in held, to go
	// out with the file of the ReadFrom that follows (see ServeContent).
	hold    bool
	held    []byte // nil when nothing is held; else heldBuf[:n]
	heldBuf []byte

	life context.Context // ends with Close, cause net.ErrClosed
	kill context.CancelCauseFunc

	// sends ends with life or when the Sender closes (cause ErrClosed).
	sends   context.Context
	unwatch func() // stops the Sender's Close from ending sends

	mu      sync.Mutex
	wctx    context.Context // child of sends; ends when the write deadline passes, cause os.ErrDeadlineExceeded
	wcancel context.CancelCauseFunc
	timer   *time.Timer // ends wctx at the write deadline
}

// ReadFrom sends r's bytes to the conn, with the Sender when r is a file it
// recognises (see NewListener), else with Write.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if c.s == nil {
		return c.copy(r)
	}
	src, ok := fileSourceOf(r)
	if !ok {
		if hiddenFile(r) {
			c.s.bypass(BypassNoDescriptor)
		}
		return c.copy(r)
	}
	if src.count == 0 {
		return 0, nil
	}
	if err := c.lock(); err != nil {
		return 0, c.opError(err)
	}
	c.mu.Lock()
	ctx := c.wctx
	c.mu.Unlock()
	if ctx.Err() != nil {
		c.unlock()
		return 0, c.opError(context.Cause(ctx))
	}
	// Bytes held from the Write before go out ahead of the file, in the
	// same send; n counts them too.
	hdr := c.held
	c.held = nil
	n, err := c.send(ctx, hdr, src)
	if n == 0 {
		c.held = hdr // not sent: still ahead of whatever comes next
	}
	c.unlock()
	n = max(0, n-int64(len(hdr)))
	if n > 0 {
		src.advance(n)
	}
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, io.ErrUnexpectedEOF):
		// The file shrank after our look at it: the send went up to its new
		// end, as a reader would have.
		return n, nil
	}
	return n, c.opError(sendError{err})
}

// send sends src with the Sender on the conn's own descriptor, checked once
// per conn rather than at every send (see Sender.sendChecked). The caller
// holds wsem.
func (c *conn) send(ctx context.Context, hdr []byte, src fileSource) (int64, error) {
	if c.sock == nil {
		rc, err := c.raw.SyscallConn()
		if err != nil {
			return 0, err
		}
		sock, err := engine.InspectConn(c.raw)
		if err != nil {
			return 0, fmt.Errorf("sendfile2: send: dst: %w", err)
		}
		c.rc, c.sock = rc, &sock
	}
	return c.s.sendChecked(ctx, c.rc, c.sock, hdr, src.file, &src.st, src.off, src.count)
}

// copy copies r to the conn with Write, through a buffer.
func (c *conn) copy(r io.Reader) (int64, error) {
	// writerOnly hides ReadFrom (no recursion) and SyscallConn (so that
	// (*os.File).WriteTo cannot reach the socket).
	return io.Copy(writerOnly{c}, r)
}

type writerOnly struct{ io.Writer }

// Write writes b to the conn, after any ReadFrom in progress.
func (c *conn) Write(b []byte) (int, error) {
	if err := c.lock(); err != nil {
		return 0, c.opError(err)
	}
	defer c.unlock()
	if c.hold {
		c.hold = false
		if len(b) <= maxHeld && c.writable() {
			c.held = append(c.heldBuf[:0], b...)
			c.heldBuf = c.held
			return len(b), nil
		}
	}
	if c.held != nil {
		return c.writeHeld(b)
	}
	return c.Conn.Write(b)
}

// maxHeld bounds the bytes of a held Write: a response head, with the first
// 512 bytes of the body that net/http writes with it.
const maxHeld = 16 << 10

// writable reports whether a Write could still succeed: the conn is open and
// its write deadline has not passed. A Write is held only then, so that it
// never reports success where sending would have failed.
func (c *conn) writable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wctx.Err() == nil
}

// writeHeld sends the held bytes, then b, and returns how many of b's went
// out. The caller holds wsem.
func (c *conn) writeHeld(b []byte) (int, error) {
	held := len(c.held)
	bufs := net.Buffers{c.held, b}
	n, err := bufs.WriteTo(c.Conn)
	if n < int64(held) {
		c.held = c.held[n:]
		return 0, err
	}
	c.held = nil
	return int(n) - held, err
}

// holdWrite makes the next Write hold its bytes, until a ReadFrom of a file
// sends them ahead of the file or release sends them. It reports false if
// the conn is closed.
func (c *conn) holdWrite() bool {
	if c.lock() != nil {
		return false
	}
	c.hold = true
	c.unlock()
	return true
}

// release ends holdWrite, and sends what is still held.
func (c *conn) release() error {
	if c.lock() != nil {
		return nil // closed: nothing is sent any more
	}
	defer c.unlock()
	c.hold = false
	if c.held == nil {
		return nil
	}
	_, err := c.writeHeld(nil)
	return err
}

// heldConn returns the conn under c if NewListener made c, and whether a
// wrapper around it (see innerConn) hides it from net/http.
func heldConn(c net.Conn) (*conn, bool) {
	for x := c; x != nil; x = innerConn(x) {
		switch v := x.(type) {
		case *conn:
			return v, x != c
		case halfCloseConn:
			return v.conn, x != c
		case closeWriteConn:
			return v.conn, x != c
		case closeReadConn:
			return v.conn, x != c
		}
	}
	return nil, false
}

// bypass counts a file body that went around the conn's Sender for reason.
func (c *conn) bypass(reason Bypass) {
	if c.s != nil {
		c.s.bypass(reason)
	}
}

// isFile reports whether r reads a regular file, with or without exposing
// its descriptor.
func isFile(r io.Reader) bool {
	if _, ok := fileSourceOf(r); ok {
		return true
	}
	return hiddenFile(r)
}

func (c *conn) lock() error {
	select {
	case c.wsem <- struct{}{}:
		return nil
	case <-c.life.Done():
		return net.ErrClosed
	}
}

func (c *conn) unlock() { <-c.wsem }

// opError dresses err as net.TCPConn dresses the errors of its ReadFrom.
func (c *conn) opError(err error) error {
	return &net.OpError{Op: "readfrom", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// sendError is an error of Sender.SendFrom that net.Error callers can test
// with Timeout.
type sendError struct{ err error }

func (e sendError) Error() string { return e.err.Error() }
func (e sendError) Unwrap() error { return e.err }
func (e sendError) Timeout() bool { return errors.Is(e.err, os.ErrDeadlineExceeded) }

// Close closes the conn and stops a ReadFrom in flight.
func (c *conn) Close() error {
	c.kill(net.ErrClosed)
	if c.unwatch != nil {
		c.unwatch()
	}
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// SetDeadline sets the read and write deadlines of the conn; the write
// deadline applies to ReadFrom too.
func (c *conn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetDeadline(t); err != nil {
		return err
	}
	c.setWriteDeadline(t)
	return nil
}

// SetWriteDeadline sets the deadline of Write and ReadFrom.
func (c *conn) SetWriteDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	c.setWriteDeadline(t)
	return nil
}

// setWriteDeadline makes wctx end at t. As with the netpoller's deadlines, a
// ReadFrom in flight observes the change: wctx is replaced only once it has
// ended.
func (c *conn) setWriteDeadline(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		if !c.timer.Stop() {
			<-c.wctx.Done() // the timer fired: let its cancel finish
		}
		c.timer = nil
	}
	d := time.Until(t)
	if c.wctx.Err() != nil {
		if c.life.Err() != nil || !t.IsZero() && d <= 0 {
			return // closed, or still past
		}
		c.wctx, c.wcancel = context.WithCancelCause(c.sends)
	}
	switch {
	case t.IsZero():
	case d <= 0:
		c.wcancel(os.ErrDeadlineExceeded)
	default:
		cancel := c.wcancel
		c.timer = time.AfterFunc(d, func() { cancel(os.ErrDeadlineExceeded) })
	}
}

// SyscallConn returns a raw view of the socket for socket options. Unlike
// the accepted conn's, it does not expose the socket to the os package, so
// that io.Copy(conn, file) cannot bypass ReadFrom with sendfile(2).
func (c *conn) SyscallConn() (syscall.RawConn, error) {
	rc, err := c.raw.SyscallConn()
	if err != nil {
		return nil, err
	}
	return rawConn{c: c, rc: rc}, nil
}

// rawConn has the methods of syscall.RawConn only: (*os.File).WriteTo looks
// for PollFD and Network to call sendfile(2), and must not find them.
type rawConn struct {
	c  *conn
	rc syscall.RawConn
}

func (r rawConn) Control(f func(fd uintptr)) error   { return r.rc.Control(f) }
func (r rawConn) Read(f func(fd uintptr) bool) error { return r.rc.Read(f) }
func (r rawConn) Write(f func(fd uintptr) bool) error {
	if err := r.c.lock(); err != nil {
		return err
	}
	defer r.c.unlock()
	return r.rc.Write(f)
}

type halfCloseConn struct{ *conn }

// CloseRead shuts down the reading side of the connection.
func (c halfCloseConn) CloseRead() error { return c.closeRead() }

// CloseWrite shuts down the writing side of the connection, after sending
// what a Write still holds.
func (c halfCloseConn) CloseWrite() error {
	if err := c.release(); err != nil {
		return err
	}
	return c.closeWrite()
}

type closeWriteConn struct{ *conn }

// CloseWrite shuts down the writing side of the connection, after sending
// what a Write still holds.
func (c closeWriteConn) CloseWrite() error {
	if err := c.release(); err != nil {
		return err
	}
	return c.closeWrite()
}

type closeReadConn struct{ *conn }

// CloseRead shuts down the reading side of the connection.
func (c closeReadConn) CloseRead() error { return c.closeRead() }

// fileSource is the file range behind a reader that ReadFrom recognises.
type fileSource struct {
	file       syscall.Conn
	st         unix.Stat_t // the file's fstat(2)
	off, count int64
	advance    func(n int64) // moves the reader past n bytes sent
}

// fileSourceOf returns the file range that reading r to EOF would return,
// and how to move r past it, as (*net.TCPConn).ReadFrom would leave it.
func fileSourceOf(r io.Reader) (fileSource, bool) {
	limit := int64(1<<63 - 1)
	lr, _ := r.(*io.LimitedReader)
	if lr != nil {
		if lr.N <= 0 {
			return fileSource{advance: func(int64) {}}, true
		}
		limit, r = lr.N, lr.R
	}
	var src fileSource
	switch v := r.(type) {
	case *io.SectionReader:
		// Read returns ReadAt(p, base+pos) up to base+Size.
		ra, base, _ := v.Outer()
		f, ok := ra.(syscall.Conn)
		if !ok || base < 0 {
			return fileSource{}, false
		}
		pos, err := v.Seek(0, io.SeekCurrent)
		if err != nil {
			return fileSource{}, false
		}
		st, _, ok := regularFile(f, false)
		if !ok {
			return fileSource{}, false
		}
		off := base + pos
		src = fileSource{file: f, st: st, off: off, count: max(0, min(limit, v.Size()-pos, st.Size-off))}
		src.advance = func(n int64) { v.Seek(n, io.SeekCurrent) }
	case syscall.Conn:
		// Read returns the bytes from the file's offset, and moves it.
		st, off, ok := regularFile(v, true)
		if !ok {
			return fileSource{}, false
		}
		src = fileSource{file: v, st: st, off: off, count: max(0, min(limit, st.Size-off))}
		src.advance = func(n int64) { seekTo(v, off+n) }
	default:
		return fileSource{}, false
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
