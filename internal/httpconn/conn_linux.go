package httpconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/sendfile2/sendfile2/internal/engine"
)

// Policy is what a Conn asks of the Sender above it: the root implements it.
type Policy interface {
	// Context derives the context of the conn's sends from life, which
	// ends when the conn closes, and returns the function that stops
	// watching the Sender (called at Close).
	Context(life context.Context) (context.Context, func())
	// Send sends hdr, then src, on sock, whose descriptor is rc's: the conn
	// checked both once, and holds its write lock.
	Send(ctx context.Context, rc syscall.RawConn, sock *engine.Socket, hdr []byte, src *Source) (int64, error)
	// HiddenFile counts a file body copied because its reader hid the
	// file's descriptor.
	HiddenFile()
}

// New wraps c, keeping its CloseRead and CloseWrite methods if it, or
// the socket under it, has them. It sends on the socket that c is or holds
// (see socketUnder) with p; a conn without one is returned unchanged. With a
// nil p, file bodies are copied with Write.
func New(c net.Conn, p Policy) net.Conn {
	sc, under := socketUnder(c)
	if sc == nil {
		return c
	}
	w := &Conn{Conn: c, raw: sc, p: p, wsem: make(chan struct{}, 1)}
	w.life, w.kill = context.WithCancelCause(context.Background())
	w.sends = w.life
	if p != nil {
		// Once per conn, not at every send.
		w.sends, w.unwatch = p.Context(w.life)
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

// socketUnder returns the socket the Policy may send on for c, and the conn
// that holds it when c is a wrapper: c itself when it exposes its descriptor
// (syscall.Conn), else the conn inside a wrapper known to write to it
// unchanged (see Inner), down to one that exposes its descriptor. It
// returns nil when there is none.
func socketUnder(c net.Conn) (syscall.Conn, net.Conn) {
	for x := c; x != nil; x = Inner(x) {
		if sc, ok := x.(syscall.Conn); ok {
			return sc, x
		}
	}
	return nil, nil
}

// Conn is an accepted connection whose ReadFrom sends files with a Policy.
type Conn struct {
	net.Conn
	raw syscall.Conn // the accepted conn, or the one it wraps: its descriptor is the one the Policy sends on
	p   Policy       // nil: copy

	// CloseRead and CloseWrite of the accepted conn, or of the one it wraps;
	// nil when neither has it.
	closeRead, closeWrite func() error

	// Checked at the first ReadFrom that sends a file, under wsem.
	rc   syscall.RawConn
	sock *engine.Socket

	// Under wsem: the file of the ReadFrom in progress, and what finds it.
	src   Source
	probe prober

	wsem chan struct{} // held by Write and ReadFrom: one writer at a time

	// Under wsem: hold makes the next Write keep its bytes in held, to go
	// out with the file of the ReadFrom that follows (see ServeContent).
	hold    bool
	held    []byte // nil when nothing is held; else heldBuf[:n]
	heldBuf []byte

	life context.Context // ends with Close, cause net.ErrClosed
	kill context.CancelCauseFunc

	// sends ends with life, or when the Policy's Context ends it (the Sender closes).
	sends   context.Context
	unwatch func() // stops the Sender's Close from ending sends

	mu      sync.Mutex
	wctx    context.Context // child of sends; ends when the write deadline passes, cause os.ErrDeadlineExceeded
	wcancel context.CancelCauseFunc
	timer   *time.Timer // ends wctx at the write deadline
}

// ReadFrom sends r's bytes to the conn, with the Sender when r is a file it
// recognises (see SourceOf), else with Write.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if c.p == nil {
		return c.copy(r)
	}
	if err := c.lock(); err != nil {
		return 0, c.opError(err)
	}
	src := &c.src
	if !c.probe.sourceOf(r, src) {
		c.unlock()
		if HiddenFile(r) {
			c.p.HiddenFile()
		}
		return c.copy(r)
	}
	c.mu.Lock()
	ctx := c.wctx
	c.mu.Unlock()
	if empty := src.Count == 0; empty || ctx.Err() != nil {
		*src = Source{}
		c.unlock()
		if empty {
			return 0, nil
		}
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
	n = max(0, n-int64(len(hdr)))
	if n > 0 {
		src.advance(n)
	}
	*src = Source{} // keeps no reader of the caller's (the prober keeps its file)
	c.unlock()
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

// send sends src with the Policy on the conn's own descriptor, checked once
// per conn rather than at every send. The caller holds wsem.
func (c *Conn) send(ctx context.Context, hdr []byte, src *Source) (int64, error) {
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
	return c.p.Send(ctx, c.rc, c.sock, hdr, src)
}

// copy copies r to the conn with Write, through a buffer.
func (c *Conn) copy(r io.Reader) (int64, error) {
	// WriterOnly hides ReadFrom (no recursion) and SyscallConn (so that
	// (*os.File).WriteTo cannot reach the socket).
	return io.Copy(WriterOnly{c}, r)
}

// Write writes b to the conn, after any ReadFrom in progress.
func (c *Conn) Write(b []byte) (int, error) {
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
func (c *Conn) writable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wctx.Err() == nil
}

// writeHeld sends the held bytes, then b, and returns how many of b's went
// out. The caller holds wsem.
func (c *Conn) writeHeld(b []byte) (int, error) {
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

// HoldWrite makes the next Write hold its bytes, until a ReadFrom of a file
// sends them ahead of the file or Release sends them. It reports false if
// the conn is closed.
func (c *Conn) HoldWrite() bool {
	if c.lock() != nil {
		return false
	}
	c.hold = true
	c.unlock()
	return true
}

// Release ends HoldWrite, and sends what is still held.
func (c *Conn) Release() error {
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

// Find returns the Conn under c if New made c, also inside wrappers that
// embed it (see Embedded), and whether such a wrapper hides it from
// net/http: the wrapper, which net/http holds, has no ReadFrom.
func Find(c net.Conn) (*Conn, bool) {
	// The depth bound stops a wrapper that embeds itself.
	for x, depth := c, 0; x != nil && depth < 16; x, depth = Embedded(x), depth+1 {
		var found *Conn
		switch v := x.(type) {
		case *Conn:
			found = v
		case halfCloseConn:
			found = v.Conn
		case closeWriteConn:
			found = v.Conn
		case closeReadConn:
			found = v.Conn
		default:
			continue
		}
		_, rf := c.(io.ReaderFrom)
		return found, x != c && !rf
	}
	return nil, false
}

// Policy is the Policy that c sends with, nil when it copies.
func (c *Conn) Policy() Policy { return c.p }

func (c *Conn) lock() error {
	select {
	case c.wsem <- struct{}{}:
		return nil
	case <-c.life.Done():
		return net.ErrClosed
	}
}

func (c *Conn) unlock() { <-c.wsem }

// opError dresses err as net.TCPConn dresses the errors of its ReadFrom.
func (c *Conn) opError(err error) error {
	return &net.OpError{Op: "readfrom", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// sendError is an error of a send that net.Error callers can test
// with Timeout.
type sendError struct{ err error }

func (e sendError) Error() string { return e.err.Error() }
func (e sendError) Unwrap() error { return e.err }
func (e sendError) Timeout() bool { return errors.Is(e.err, os.ErrDeadlineExceeded) }

// Close closes the conn and stops a ReadFrom in flight.
func (c *Conn) Close() error {
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
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetDeadline(t); err != nil {
		return err
	}
	c.setWriteDeadline(t)
	return nil
}

// SetWriteDeadline sets the deadline of Write and ReadFrom.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	c.setWriteDeadline(t)
	return nil
}

// setWriteDeadline makes wctx end at t. As with the netpoller's deadlines, a
// ReadFrom in flight observes the change: wctx is replaced only once it has
// ended.
func (c *Conn) setWriteDeadline(t time.Time) {
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
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	rc, err := c.raw.SyscallConn()
	if err != nil {
		return nil, err
	}
	return rawConn{c: c, rc: rc}, nil
}

// rawConn has the methods of syscall.RawConn only: (*os.File).WriteTo looks
// for PollFD and Network to call sendfile(2), and must not find them.
type rawConn struct {
	c  *Conn
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

type halfCloseConn struct{ *Conn }

// CloseRead shuts down the reading side of the connection.
func (c halfCloseConn) CloseRead() error { return c.closeRead() }

// CloseWrite shuts down the writing side of the connection, after sending
// what a Write still holds.
func (c halfCloseConn) CloseWrite() error {
	if err := c.Release(); err != nil {
		return err
	}
	return c.closeWrite()
}

type closeWriteConn struct{ *Conn }

// CloseWrite shuts down the writing side of the connection, after sending
// what a Write still holds.
func (c closeWriteConn) CloseWrite() error {
	if err := c.Release(); err != nil {
		return err
	}
	return c.closeWrite()
}

type closeReadConn struct{ *Conn }

// CloseRead shuts down the reading side of the connection.
func (c closeReadConn) CloseRead() error { return c.closeRead() }
