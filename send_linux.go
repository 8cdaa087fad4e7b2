package sendfile2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/engine"
	"github.com/sendfile2/sendfile2/internal/httpconn"
)

// Send sends count bytes of src, starting at offset, to the connected stream
// socket dst, and returns the number of bytes sent; count < 0 sends from
// offset to the end of the file (its size when Send starts). When it returns, the
// kernel holds no reference to src's pages or to any buffer they were copied
// into that the caller could observe: the caller may overwrite, truncate or
// remove the file, and the peer still receives the bytes the file held when
// they were read.
//
// dst is typically a *net.TCPConn or *net.UnixConn; Send uses a duplicate of
// its descriptor, so it neither observes dst's deadlines nor stops when dst is
// closed from another goroutine: use ctx. src must be a regular file, and the
// range must lie within it when Send starts (else an error matching ErrRange,
// and nothing is sent). If the file shrinks during the send, Send returns the
// bytes sent and an error matching io.ErrUnexpectedEOF.
//
// When ctx ends, Send stops as promptly as the method allows and returns the
// bytes sent with context.Cause(ctx); see the package documentation for what
// each method waits for before it returns.
func (s *Sender) Send(ctx context.Context, dst syscall.Conn, src *os.File, offset, count int64) (int64, error) {
	if src == nil {
		return 0, fmt.Errorf("sendfile2: send: nil src: %w", os.ErrInvalid)
	}
	return s.SendFrom(ctx, dst, src, offset, count)
}

// SendFrom is Send for any src that exposes a file descriptor through
// syscall.Conn, such as a type that embeds *os.File. The descriptor must be a
// regular file; SendFrom neither reads nor moves its file offset. As with
// Send, count < 0 sends to the end of the file.
func (s *Sender) SendFrom(ctx context.Context, dst, src syscall.Conn, offset, count int64) (int64, error) {
	return s.send(ctx, dst, nil, src, offset, count)
}

// send sends hdr, then count bytes of src from offset, on a duplicate of
// dst's descriptor, after checking the socket and the range, under a context
// that also ends when the Sender closes.
func (s *Sender) send(ctx context.Context, dst syscall.Conn, hdr []byte, src syscall.Conn, offset, count int64) (int64, error) {
	method, err := s.enter(dst, src, offset, count)
	if err != nil {
		return 0, err
	}
	defer s.leave()
	sock, err := engine.Dup(dst)
	if err != nil {
		return 0, fmt.Errorf("sendfile2: send: dst: %w", err)
	}
	defer unix.Close(sock.FD)
	srcConn, err := src.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("sendfile2: send: src: %w", err)
	}
	var n int64
	err = withFD(srcConn, func(fd int) error {
		st, err := checkRange(fd, offset, count)
		if err != nil {
			return err
		}
		if count < 0 {
			count = st.Size - offset // to the end of the file
		}
		ctx, end := s.sendContext(ctx)
		defer end()
		j := engine.Job{Ctx: ctx, Sock: sock.FD, File: fd, Stat: st, Header: hdr, Off: offset, Count: count}
		n, method, err = s.run(j, method, &sock)
		return err
	})
	return n, s.count(method, err)
}

// sendChecked is send for a socket that was checked once, by a listener's
// conn (see NewListener): it sends on rc's own descriptor, which Control
// keeps open for the whole send, instead of a duplicate, and skips the checks
// of the socket that send makes every time. The conn has checked src too (a
// regular file holding the range, by src.Stat: its fstat(2) just before, or
// the stat a StatedFile's caller made),
// and ctx already ends when the Sender closes (see newConn), so neither is
// done again.
func (s *Sender) sendChecked(ctx context.Context, rc syscall.RawConn, sock *engine.Socket, hdr []byte, src *httpconn.Source) (int64, error) {
	method, err := s.enter(sock, src.File, src.Off, src.Count)
	if err != nil {
		return 0, err
	}
	defer s.leave()
	c := s.checked.Get().(*checkedSend)
	c.s, c.ctx, c.sock, c.hdr, c.src, c.method = s, ctx, sock, hdr, src, method
	cerr := rc.Control(c.onSock)
	n, err := c.n, c.err
	*c = checkedSend{onSock: c.onSock, onFile: c.onFile}
	s.checked.Put(c)
	if err == nil && cerr != nil {
		err = fmt.Errorf("sendfile2: send: dst: %w", cerr)
	}
	return n, err
}

// checkedSend is what one sendChecked's two nested RawConn.Control calls
// share. The functions they run are bound once, when the Sender's pool
// makes it, so that a send allocates nothing for them.
type checkedSend struct {
	s      *Sender
	ctx    context.Context
	sock   *engine.Socket
	hdr    []byte
	src    *httpconn.Source
	method Method
	n      int64
	err    error

	onSock, onFile func(fd uintptr)
}

func newCheckedSend() any {
	c := &checkedSend{}
	c.onSock, c.onFile = c.withSock, c.withFile
	return c
}

// withSock runs under the socket's Control: it sends under the file's, which
// holds a reference on the file's descriptor for the whole send.
func (c *checkedSend) withSock(sfd uintptr) {
	c.sock.FD = int(sfd)
	if cerr := c.src.RawConn.Control(c.onFile); c.err == nil && cerr != nil {
		c.err = cerr
	}
	c.err = c.s.count(c.method, c.err)
	c.sock.FD = -1
}

func (c *checkedSend) withFile(fd uintptr) {
	src := c.src
	j := engine.Job{Ctx: c.ctx, Sock: c.sock.FD, File: int(fd), Stat: &src.Stat, Header: c.hdr, Off: src.Off, Count: src.Count, Readable: src.Readable}
	c.n, c.method, c.err = c.s.run(j, c.method, c.sock)
}

// withFD runs f with the descriptor of rc. Control holds a reference on it
// for the whole call, so that a concurrent Close cannot let the number be
// reused under f.
func withFD(rc syscall.RawConn, f func(fd int) error) error {
	var err error
	cerr := rc.Control(func(fd uintptr) { err = f(int(fd)) })
	if err == nil {
		err = cerr
	}
	return err
}

// count counts a send with method that ended with err (run counted its
// bytes), and returns err with the package's prefix and the method.
func (s *Sender) count(method Method, err error) error {
	c := s.counters.of(method)
	c.sends.Add(1)
	if err != nil {
		c.errors.Add(1)
		if errors.Is(err, engine.ErrNotReleased) {
			return fmt.Errorf("sendfile2: send (%s): %w: %w", method, ErrNotReleased, err)
		}
		return fmt.Errorf("sendfile2: send (%s): %w", method, err)
	}
	return nil
}

// enter registers a send with the Sender, unless it is closed or the
// arguments are wrong, and returns the method to start with. leave ends it.
func (s *Sender) enter(dst any, src syscall.Conn, offset, count int64) (Method, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", fmt.Errorf("sendfile2: send: %w", ErrClosed)
	}
	s.sends.Add(1)
	method := s.method
	s.mu.Unlock()
	s.inFlight.Add(1)
	var err error
	switch {
	case offset < 0:
		err = fmt.Errorf("sendfile2: send: offset %d, count %d: %w", offset, count, ErrRange)
	case isNil(src) || isNil(dst):
		err = fmt.Errorf("sendfile2: send: nil src or dst: %w", os.ErrInvalid)
	}
	if err != nil {
		s.leave()
		return "", err
	}
	return method, nil
}

func (s *Sender) leave() {
	s.inFlight.Add(-1)
	s.sends.Done()
}

// run is the policy around the engines for one send: the method for this
// socket and route, a copy where the socket refuses zero copy, a demotion
// where the kernel refuses the method, and what the route learns. It
// returns the bytes sent, the method that sent its end, and the error. It
// counts the bytes under the method that sent them (a send that probes a
// route sends its first part zero-copy); the caller counts the send.
func (s *Sender) run(j engine.Job, method Method, sock *engine.Socket) (int64, Method, error) {
	if j.Count == 0 && len(j.Header) == 0 {
		return 0, method, nil
	}
	if j.Ctx.Err() != nil {
		// Done before the send began: send nothing. The copying paths look
		// at ctx only when they wait for room in the socket.
		return 0, method, context.Cause(j.Ctx)
	}
	var fallbacks int64
	defer func() { s.fallbacks.Add(fallbacks) }()
	if kindOf(method).ZeroCopy() && !sock.TCP() {
		// Zero-copy send is TCP's; other stream sockets copy anyway.
		fallbacks++
		method = Copy
	}
	if s.cfg.Method != Auto {
		return s.runPart(j, method, trial{}, &fallbacks)
	}
	// A probe of a route sends at most probeSend bytes; the rest of the
	// send goes by what the route knows after it, perhaps after more probes.
	var sent int64
	for {
		size := int64(len(j.Header)) + j.Count
		m, p := s.routes.choose(method, sock, size)
		part, rest, split := j, j, false
		if p.counted && size-probeSend >= smallSend {
			// A rest under smallSend would copy, and count as small.
			part, rest, split = splitJob(j, probeSend)
		}
		n, m, err := s.runPart(part, m, p, &fallbacks)
		sent += n
		if !split || err != nil {
			return sent, m, err
		}
		if j.Ctx.Err() != nil {
			return sent, m, context.Cause(j.Ctx)
		}
		// The rest starts from the method that sent the part: a socket
		// that refused zero copy, or a method demoted, is not tried again.
		j, method = rest, m
	}
}

// probeSend is the most a probe of a route sends zero-copy, unless less
// than smallSend would be left: what the route learns is in its first
// notification; a send of 64 MiB need not pay for zero copy in full where
// the kernel copies.
const probeSend = 1 << 20

// splitJob splits j after its first n bytes, header first, and reports
// whether anything is left after them.
func splitJob(j engine.Job, n int64) (head, rest engine.Job, split bool) {
	h := int64(len(j.Header))
	if h+j.Count <= n {
		return j, engine.Job{}, false
	}
	head, rest = j, j
	if h >= n {
		head.Header, head.Count = j.Header[:n], 0
		rest.Header = j.Header[n:]
		return head, rest, true
	}
	head.Count = n - h
	rest.Header, rest.Off, rest.Count = nil, j.Off+head.Count, j.Count-head.Count
	return head, rest, true
}

// runPart sends j with method, copying where the socket refuses zero copy
// and demoting where the kernel refuses the method, ends the route's trial
// p with what the notifications said, and counts the bytes.
func (s *Sender) runPart(j engine.Job, method Method, p trial, fallbacks *int64) (int64, Method, error) {
	try := func(m Method) engine.Outcome {
		j.Kind, j.Usage = kindOf(m), &s.counters.of(m).usage
		out := s.eng.Send(j)
		*fallbacks += out.Fallbacks
		return out
	}
	out := try(method)
	if out.N == 0 && kindOf(method).ZeroCopy() && errors.Is(out.Err, unix.EOPNOTSUPP) {
		// This socket cannot send zero-copy: a TCP socket accepted from an
		// MPTCP listener (Go's default since 1.24) lacks the kernel's
		// SOCK_SUPPORT_ZC. Copy, which keeps the guarantee.
		*fallbacks++
		method = Copy
		out = try(method)
	}
	if out.N == 0 && out.Err != nil {
		if next, ok := s.demote(method, out.Err); ok {
			method = next
			out = try(method)
		}
	}
	// Only the zero-copy send that ran to its end teaches the route.
	p.end(out.Err == nil && kindOf(method).ZeroCopy(), out.ZeroCopy, out.Copied)
	s.counters.of(method).bytes.Add(out.N)
	return out.N, method, out.Err
}

// isNil reports whether an interface holds nil or a nil pointer. The types
// that sends usually get are told without reflection.
func isNil(v any) bool {
	switch p := v.(type) {
	case nil:
		return true
	case *os.File:
		return p == nil
	case *net.TCPConn:
		return p == nil
	case *net.UnixConn:
		return p == nil
	case *engine.Socket:
		return p == nil
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// checkRange checks that fd is a regular file that holds [off, off+count),
// or just off when count < 0, and returns its fstat(2).
func checkRange(fd int, off, count int64) (*unix.Stat_t, error) {
	st := new(unix.Stat_t)
	if err := unix.Fstat(fd, st); err != nil {
		return nil, fmt.Errorf("src: %w", os.NewSyscallError("fstat", err))
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		return nil, fmt.Errorf("src is a directory: %w", unix.EISDIR)
	default:
		return nil, fmt.Errorf("src is not a regular file (mode %#o): %w", st.Mode&unix.S_IFMT, unix.ESPIPE)
	}
	if off > st.Size || count >= 0 && count > st.Size-off {
		return nil, fmt.Errorf("range [%d, %d) past the end of a %d-byte file: %w", off, off+count, st.Size, ErrRange)
	}
	return st, nil
}

// Send sends with a Sender shared by the whole program, created with the
// default Config on first use; see Sender.Send.
func Send(ctx context.Context, dst syscall.Conn, src *os.File, offset, count int64) (int64, error) {
	s, err := shared()
	if err != nil {
		return 0, err
	}
	return s.Send(ctx, dst, src, offset, count)
}
