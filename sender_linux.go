package sendfile2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/uring"
)

// Sender sends file ranges to sockets. One Sender serves many goroutines and
// connections at once: they share its io_uring ring and its registered
// buffers. Create one per program (or use the package-level Send) and Close
// it when done.
type Sender struct {
	cfg    Config
	method Method
	loop   *uring.Loop // nil for methods without io_uring
	pool   *bufPool    // registered buffers of URing
	maps   fileMaps    // Copy's mappings of the files it sends

	ctx     context.Context // cancelled by Close
	cancel  context.CancelCauseFunc
	closing atomic.Bool // set by Close before it cancels ctx

	mu     sync.Mutex
	closed bool
	sends  sync.WaitGroup

	noReportUsage atomic.Bool // the kernel refused IORING_SEND_ZC_REPORT_USAGE
	noDontCache   atomic.Bool // the kernel or file system refused RWF_DONTCACHE

	demotions   atomic.Int64
	inFlight    atomic.Int64
	fallbacks   atomic.Int64
	msgzcNoBufs atomic.Int64 // ENOBUFS from send(MSG_ZEROCOPY), sent again after notifications

	routesMu      sync.Mutex
	routes        map[routeKey]*route // Auto's adaptivity: see adapt
	adaptSwitches atomic.Int64
	adaptedSends  atomic.Int64
	smallSends    atomic.Int64
	probingSends  atomic.Int64
	counters      [len(methodIndex)]methodCounters
}

// methodIndex orders the concrete methods for the counters.
var methodIndex = [...]Method{URing, URingMmap, MsgZC, Copy, Sendfile, Splice}

type methodCounters struct {
	sends, errors, bytes, zeroCopy, copied atomic.Int64

	receives, receiveErrors, received atomic.Int64
}

func (s *Sender) counter(m Method) *methodCounters {
	for i, k := range methodIndex {
		if k == m {
			return &s.counters[i]
		}
	}
	panic("sendfile2: no counters for method " + string(m))
}

// NewSender returns a Sender configured by cfg. With Method Auto it picks
// URing where the kernel has io_uring with IORING_OP_SEND_ZC and
// IORING_OP_READ_FIXED (and the registered buffers can be pinned), and Copy
// otherwise. An explicit method the kernel lacks gives an error matching
// ErrNotSupported.
func NewSender(cfg Config) (*Sender, error) {
	if cfg.Method == "" {
		cfg.Method = Auto
	}
	if _, err := ParseMethod(string(cfg.Method)); err != nil {
		return nil, err
	}
	if cfg.BufferSize == 0 {
		cfg.BufferSize = defaultBufferSize
	}
	if cfg.Buffers == 0 {
		cfg.Buffers = defaultBuffers
	}
	if cfg.BufferSize < 4096 || cfg.BufferSize > 1<<30 || cfg.BufferSize%4096 != 0 {
		return nil, fmt.Errorf("sendfile2: buffer size %d: want a multiple of 4096 from 4 KiB to 1 GiB", cfg.BufferSize)
	}
	if cfg.Buffers < 1 || cfg.Buffers > 4096 {
		return nil, fmt.Errorf("sendfile2: %d buffers: want 1 to 4096", cfg.Buffers)
	}
	s := &Sender{cfg: cfg, method: cfg.Method}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	switch cfg.Method {
	case Auto:
		// The best safe method the kernel offers: io_uring, else
		// MSG_ZEROCOPY, else copying. Each probe is the real operation.
		if err := s.setupURing(true); err == nil {
			s.method = URing
		} else if probeMsgZC() == nil {
			s.method = MsgZC
		} else {
			s.method = Copy
		}
	case URing:
		if err := s.setupURing(true); err != nil {
			return nil, err
		}
	case URingMmap:
		if err := s.setupURing(false); err != nil {
			return nil, err
		}
	case MsgZC:
		if err := probeMsgZC(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// setupURing creates the ring and, when buffers is set, the registered
// buffer pool.
func (s *Sender) setupURing(buffers bool) error {
	loop, err := uring.NewLoop(uring.Config{})
	if err != nil {
		return fmt.Errorf("sendfile2: io_uring: %w", memlock(notSupported(err)))
	}
	p := loop.Probe()
	for _, op := range []uint8{uring.OpSendZC, uring.OpReadFixed} {
		if !p.Supports(op) {
			loop.Close()
			return fmt.Errorf("sendfile2: io_uring lacks IORING_OP_%s (Linux 6.0+): %w", uring.OpName(op), ErrNotSupported)
		}
	}
	if buffers {
		pool, err := newBufPool(loop, s.cfg.Buffers, s.cfg.BufferSize)
		if err != nil {
			loop.Close()
			return fmt.Errorf("sendfile2: registered buffers: %w", memlock(err))
		}
		s.pool = pool
	}
	s.loop = loop
	return nil
}

// notSupported marks errno values that mean "not here" (ENOSYS, EPERM from a
// seccomp filter or kernel.io_uring_disabled, EOPNOTSUPP) as ErrNotSupported.
func notSupported(err error) error {
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) {
		return errors.Join(ErrNotSupported, err)
	}
	return err
}

// memlock names RLIMIT_MEMLOCK in an ENOMEM from io_uring: without
// CAP_IPC_LOCK the kernel charges to that limit the memory io_uring pins (its
// rings, registered buffers, the pages of a zero-copy send from a mapping),
// and a low limit is the usual cause.
func memlock(err error) error {
	var rl unix.Rlimit
	if !errors.Is(err, unix.ENOMEM) || unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl) != nil || rl.Cur == unix.RLIM_INFINITY {
		return err
	}
	return fmt.Errorf("RLIMIT_MEMLOCK is %d bytes, and without CAP_IPC_LOCK the memory io_uring pins counts against it: %w", rl.Cur, err)
}

// Method is the method the Sender uses: its configured one, or what Auto
// resolved to.
func (s *Sender) Method() Method {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.method
}

// demote replaces Auto's method m, which failed with err before sending
// anything for a reason that says "not here" (EPERM or ENOSYS: io_uring or
// MSG_ZEROCOPY refused by a seccomp filter or a sysctl after the Sender was
// made), with the next one in Auto's order, once. It reports the method to
// retry with.
func (s *Sender) demote(m Method, err error) (Method, bool) {
	if s.cfg.Method != Auto || !(errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS)) {
		return m, false
	}
	next := Copy
	if m == URing && probeMsgZC() == nil {
		next = MsgZC
	}
	if m == Copy || m == next {
		return m, false
	}
	s.mu.Lock()
	if s.method == m {
		s.method = next
		s.demotions.Add(1)
		s.logger().Warn("sendfile2: method demoted", "from", m, "to", next, "err", err)
	}
	next = s.method
	s.mu.Unlock()
	return next, true
}

func (s *Sender) logger() *slog.Logger {
	if s.cfg.Logger != nil {
		return s.cfg.Logger
	}
	return slog.Default()
}

// Stats returns the Sender's counters.
func (s *Sender) Stats() Stats {
	st := Stats{
		Method:    s.Method(),
		Demotions: s.demotions.Load(),
		InFlight:  s.inFlight.Load(),
		Fallbacks: s.fallbacks.Load(),
		Methods:   map[Method]MethodStats{},
		Adaptive: AdaptiveStats{
			Switches:      s.adaptSwitches.Load(),
			CopyingRoutes: s.copyingRoutes(),
			CopiedRoute:   s.adaptedSends.Load(),
			Small:         s.smallSends.Load(),
			Probing:       s.probingSends.Load(),
		},
	}
	for i, m := range methodIndex {
		c := &s.counters[i]
		if c.sends.Load() == 0 && c.receives.Load() == 0 {
			continue
		}
		st.Methods[m] = MethodStats{
			Sends:         c.sends.Load(),
			Errors:        c.errors.Load(),
			Bytes:         c.bytes.Load(),
			ZeroCopyBytes: c.zeroCopy.Load(),
			CopiedBytes:   c.copied.Load(),
			Receives:      c.receives.Load(),
			ReceiveErrors: c.receiveErrors.Load(),
			Received:      c.received.Load(),
		}
	}
	return st
}

// Send sends count bytes of src, starting at offset, to the connected stream
// socket dst, and returns the number of bytes sent. When it returns, the
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
// regular file; SendFrom neither reads nor moves its file offset.
func (s *Sender) SendFrom(ctx context.Context, dst, src syscall.Conn, offset, count int64) (int64, error) {
	return s.send(ctx, dst, nil, src, offset, count)
}

// send sends hdr, then count bytes of src from offset.
func (s *Sender) send(ctx context.Context, dst syscall.Conn, hdr []byte, src syscall.Conn, offset, count int64) (int64, error) {
	method, err := s.enter(dst, src, offset, count)
	if err != nil {
		return 0, err
	}
	defer s.leave()
	sock, err := dupSocketPeer(dst)
	if err != nil {
		return 0, fmt.Errorf("sendfile2: send: dst: %w", err)
	}
	defer unix.Close(sock.fd)
	return s.sendOn(ctx, method, &sock, hdr, src, nil, offset, count)
}

// sendChecked is send for a socket that was checked once, by a listener's
// conn (see NewListener): it sends on rc's own descriptor, which Control
// keeps open for the whole send, instead of a duplicate, and skips the checks
// of the socket that send makes every time. The conn has checked src too (a
// regular file holding the range, by the fstat(2) st just before), and ctx
// already ends when the Sender closes, so neither is done again.
func (s *Sender) sendChecked(ctx context.Context, rc syscall.RawConn, sock *socket, hdr []byte, src syscall.Conn, st *unix.Stat_t, offset, count int64) (int64, error) {
	method, err := s.enter(sock, src, offset, count)
	if err != nil {
		return 0, err
	}
	defer s.leave()
	var n int64
	cerr := rc.Control(func(fd uintptr) {
		sock.fd = int(fd)
		n, err = s.sendOn(ctx, method, sock, hdr, src, st, offset, count)
		sock.fd = -1
	})
	if err == nil && cerr != nil {
		err = fmt.Errorf("sendfile2: send: dst: %w", cerr)
	}
	return n, err
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
	case offset < 0 || count < 0:
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

// sendOn sends hdr, then count bytes of src from offset, on sock, starting
// with method. st is src's fstat(2) when the caller has checked the range and
// made ctx end when the Sender closes (see sendChecked); if it is nil, sendOn
// does both.
func (s *Sender) sendOn(ctx context.Context, method Method, sock *socket, hdr []byte, src syscall.Conn, st *unix.Stat_t, offset, count int64) (int64, error) {
	srcConn, err := src.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("sendfile2: send: src: %w", err)
	}
	var n int64
	// Control holds a reference on src's descriptor for the whole send, so
	// that a concurrent Close cannot let the number be reused under us.
	cerr := srcConn.Control(func(fd uintptr) {
		if st == nil {
			if st, err = checkRange(int(fd), offset, count); err != nil {
				return
			}
			var cancel context.CancelFunc
			ctx, cancel = s.sendContext(ctx)
			defer cancel()
		}
		if count == 0 && len(hdr) == 0 {
			return
		}
		if ctx.Err() != nil {
			// Done before the send began: send nothing. The copying paths
			// look at ctx only when they wait for room in the socket.
			err = context.Cause(ctx)
			return
		}
		if method == URing || method == URingMmap || method == MsgZC {
			if sock.family != unix.AF_INET && sock.family != unix.AF_INET6 {
				// Zero-copy send is TCP's; other stream sockets copy anyway.
				s.fallbacks.Add(1)
				method = Copy
			}
		}
		var p probe
		method, p = s.adapt(method, sock, int64(len(hdr))+count)
		t := transfer{s: s, ctx: ctx, sock: sock.fd, file: int(fd), st: st, hdr: hdr, off: offset, count: count, method: method}
		n, err = t.run()
		if n == 0 && method.zeroCopy() && errors.Is(err, unix.EOPNOTSUPP) {
			// This socket cannot send zero-copy: a TCP socket accepted from
			// an MPTCP listener (Go's default since 1.24) lacks the kernel's
			// SOCK_SUPPORT_ZC. Copy, which keeps the guarantee.
			s.fallbacks.Add(1)
			method = Copy
			t = transfer{s: s, ctx: ctx, sock: sock.fd, file: int(fd), st: st, hdr: hdr, off: offset, count: count, method: method}
			n, err = t.run()
		}
		if n == 0 && err != nil {
			if next, ok := s.demote(method, err); ok {
				method = next
				t = transfer{s: s, ctx: ctx, sock: sock.fd, file: int(fd), st: st, hdr: hdr, off: offset, count: count, method: method}
				n, err = t.run()
			}
		}
		// Only the zero-copy send that ran to its end teaches the route.
		p.end(err == nil && t.method.zeroCopy(), t.zc.Load(), t.copied.Load())
	})
	if err == nil {
		err = cerr
	}
	c := s.counter(method)
	c.sends.Add(1)
	c.bytes.Add(n)
	if err != nil {
		c.errors.Add(1)
		return n, fmt.Errorf("sendfile2: send (%s): %w", method, err)
	}
	return n, nil
}

// isNil reports whether an interface holds nil or a nil pointer.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch p := v.(type) {
	case *os.File:
		return p == nil
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// sendContext returns a context that ends when ctx does or when the Sender
// closes (cause ErrClosed), and the function that releases it.
func (s *Sender) sendContext(ctx context.Context) (context.Context, context.CancelFunc) {
	c := &sendCtx{parent: ctx, s: s}
	return c, c.end
}

// sendCtx is the context of one send. A context derived from the caller's
// that the Sender's Close cancels costs allocations and a lock that every
// send shares (the AfterFunc on the Sender's context); sendCtx derives it
// only when it is needed: when the send waits (Done), asks for the cause, or
// finds either context ended. A send that never waits, as a copy that the
// socket buffer takes at once, only checks the caller's context and a flag.
type sendCtx struct {
	parent context.Context
	s      *Sender
	once   sync.Once
	// Set by merge, under once.
	merged  context.Context
	cancel  context.CancelCauseFunc
	unwatch func() bool // the AfterFunc on the Sender's context
}

// merge derives the context that ends with either.
func (c *sendCtx) merge() context.Context {
	c.once.Do(func() {
		ctx, cancel := context.WithCancelCause(c.parent)
		stop := context.AfterFunc(c.s.ctx, func() { cancel(ErrClosed) })
		if c.s.closing.Load() {
			cancel(ErrClosed) // now, not later from AfterFunc's goroutine
		}
		c.merged, c.cancel, c.unwatch = ctx, cancel, stop
	})
	return c.merged
}

func (c *sendCtx) Deadline() (time.Time, bool) { return c.parent.Deadline() }
func (c *sendCtx) Done() <-chan struct{}       { return c.merge().Done() }
func (c *sendCtx) Value(key any) any           { return c.merge().Value(key) } // context.Cause asks here

func (c *sendCtx) Err() error {
	if c.parent.Err() == nil && !c.s.closing.Load() {
		return nil
	}
	m := c.merge()
	if c.s.closing.Load() {
		// Merged before Close: its AfterFunc may not have run yet.
		c.cancel(ErrClosed)
	}
	return m.Err()
}

// end releases what merge made. The send is over: nothing uses c any more.
func (c *sendCtx) end() {
	c.once.Do(func() {}) // orders the reads below after a merge
	if c.cancel != nil {
		c.unwatch()
		c.cancel(context.Canceled)
	}
}

// Close stops the Sender: new sends fail with ErrClosed, sends in flight are
// cancelled and return an error matching ErrClosed, and Close returns when
// every notification of every zero-copy send has arrived and the ring and
// buffers are released. A send whose peer never acknowledges its data keeps
// Close waiting until the connection dies.
func (s *Sender) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.closing.Store(true)
	s.cancel(ErrClosed)
	s.sends.Wait()
	s.maps.close()
	var err error
	if s.loop != nil {
		err = s.loop.Close() // waits for the notifications of cancelled sends
	}
	if s.pool != nil {
		s.pool.release()
	}
	return err
}

// socket is a connected stream socket to send on, with what the checks of
// inspect learned about it.
type socket struct {
	fd     int
	family int           // AF_INET, AF_INET6, AF_UNIX...
	peer   unix.Sockaddr // the peer's address
	local  unix.Sockaddr // the local address, once adapt has looked it up
}

// inspect checks that fd is a connected stream socket (getsockopt(2) with
// SO_TYPE, getpeername(2)). The peer's address gives the family; for a
// family whose addresses x/sys/unix cannot decode, getsockopt(2) with
// SO_DOMAIN does.
func inspect(fd int) (socket, error) {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return socket{}, os.NewSyscallError("getsockopt", err) // ENOTSOCK for files and pipes
	}
	if typ != unix.SOCK_STREAM {
		return socket{}, fmt.Errorf("not a stream socket: %w", unix.EPROTOTYPE)
	}
	peer, err := unix.Getpeername(fd)
	if err != nil && err != unix.EAFNOSUPPORT {
		return socket{}, os.NewSyscallError("getpeername", err) // ENOTCONN
	}
	family := unix.AF_UNSPEC
	switch peer.(type) {
	case *unix.SockaddrInet4:
		family = unix.AF_INET
	case *unix.SockaddrInet6:
		family = unix.AF_INET6
	case *unix.SockaddrUnix:
		family = unix.AF_UNIX
	default:
		if family, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil {
			return socket{}, os.NewSyscallError("getsockopt", err)
		}
	}
	return socket{fd: fd, family: family, peer: peer}, nil
}

// inspectConn is inspect for the descriptor of c.
func inspectConn(c syscall.Conn) (socket, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return socket{fd: -1}, err
	}
	var sock socket
	var ierr error
	if err := rc.Control(func(fd uintptr) { sock, ierr = inspect(int(fd)) }); err != nil {
		return socket{fd: -1}, err
	}
	sock.fd = -1
	return sock, ierr
}

// dupSocket duplicates dst's descriptor after checking that it is a
// connected stream socket, and returns the duplicate and its address family.
func dupSocket(dst syscall.Conn) (int, int, error) {
	sock, err := dupSocketPeer(dst)
	return sock.fd, sock.family, err
}

// dupSocketPeer is dupSocket that returns the socket with what the checks
// learned; its fd is the duplicate, which the caller closes.
func dupSocketPeer(dst syscall.Conn) (socket, error) {
	rc, err := dst.SyscallConn()
	if err != nil {
		return socket{fd: -1}, err
	}
	var sock socket
	var derr error
	err = rc.Control(func(sfd uintptr) {
		if sock, derr = inspect(int(sfd)); derr != nil {
			return
		}
		sock.fd, derr = unix.FcntlInt(sfd, unix.F_DUPFD_CLOEXEC, 0)
		if derr != nil {
			derr = os.NewSyscallError("fcntl", derr)
		}
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return socket{fd: -1}, err
	}
	return sock, nil
}

// checkRange checks that fd is a regular file that holds [off, off+count),
// and returns its fstat(2).
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
	if off > st.Size || count > st.Size-off {
		return nil, fmt.Errorf("range [%d, %d) past the end of a %d-byte file: %w", off, off+count, st.Size, ErrRange)
	}
	return st, nil
}

// shrunk turns an error from a read or send of the file into
// io.ErrUnexpectedEOF when the file no longer holds the range.
func shrunk(fd int, end int64, err error) error {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil && st.Size < end {
		return fmt.Errorf("file shrank to %d bytes during the send: %w", st.Size, io.ErrUnexpectedEOF)
	}
	return err
}

// transfer is one Send in progress.
type transfer struct {
	s      *Sender
	ctx    context.Context
	sock   int
	file   int
	st     *unix.Stat_t // file's fstat(2), taken when the send began
	hdr    []byte       // sent before the file's bytes
	off    int64
	count  int64
	method Method

	// Bytes that notifications reported sent from the buffer or copied:
	// what the route learns from (see adapt).
	zc, copied atomic.Int64
}

func (t *transfer) run() (int64, error) {
	h, err := t.plainHeader()
	if err != nil {
		return h, err
	}
	n, err := t.engine()
	return h + n, err
}

// plainHeader sends the header ahead of the body for the methods that cannot
// put it in the same submission as the body, corked with MSG_MORE so that it
// leaves in the same segments as the start of the body.
func (t *transfer) plainHeader() (int64, error) {
	if len(t.hdr) == 0 || t.method == URing || t.method == URingMmap || t.method == Copy {
		return 0, nil
	}
	sw := &sockWait{fd: t.sock}
	defer sw.close()
	n, err := sendAllFlags(t.ctx, sw, t.hdr, t.more())
	t.hdr = nil
	return int64(n), err
}

func (t *transfer) engine() (int64, error) {
	switch t.method {
	case URing:
		return t.uring()
	case URingMmap:
		return t.uringMmap()
	case MsgZC:
		return t.msgzc()
	case Copy:
		return t.copy()
	case Sendfile:
		return t.sendfile()
	case Splice:
		return t.splice()
	}
	return 0, fmt.Errorf("method %q: %w", t.method, ErrNotSupported)
}

var (
	defaultMu     sync.Mutex
	defaultSender *Sender
)

// Send sends with a Sender shared by the whole program, created with the
// default Config on first use; see Sender.Send.
func Send(ctx context.Context, dst syscall.Conn, src *os.File, offset, count int64) (int64, error) {
	s, err := shared()
	if err != nil {
		return 0, err
	}
	return s.Send(ctx, dst, src, offset, count)
}

// shared returns the Sender shared by the whole program, made with the
// default Config on first use.
func shared() (*Sender, error) {
	defaultMu.Lock()
	defer defaultMu.Unlock()
	if defaultSender == nil {
		s, err := NewSender(Config{})
		if err != nil {
			return nil, err
		}
		defaultSender = s
	}
	return defaultSender, nil
}
