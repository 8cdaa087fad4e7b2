package peer

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Defaults for the zero fields of Server.
const (
	DefaultMaxSessions = 16
	DefaultMaxRcvbuf   = 8 << 20
	DefaultIdle        = 2 * time.Minute
)

// handshakeTimeout bounds how long a new connection may take to say what it
// is, and how long a session waits for its data connection.
const handshakeTimeout = 10 * time.Second

// maxSkip bounds how far into its stream a session may start comparing: the
// peer generates and drops that many bytes, some tens of milliseconds of
// CPU that one 96-byte request may ask for.
const maxSkip = 64 << 20

// Server is the peer. The zero value is ready to use.
type Server struct {
	// MaxSessions bounds the control connections served at once;
	// DefaultMaxSessions if zero.
	MaxSessions int
	// MaxRcvbuf is the receive buffer of every connection on the Main
	// listener (a control connection's shrinks to SmallWindow once it has
	// said what it is), and so bounds the window a data connection may ask
	// for; DefaultMaxRcvbuf if zero.
	MaxRcvbuf int
	// Idle bounds how long a control connection may go without a request,
	// and so how long a data connection may be held unread; DefaultIdle if
	// zero. It also bounds each Read and Drain.
	Idle time.Duration
	// Logf, if set, is told of each session's start and end.
	Logf func(format string, args ...any)

	mu        sync.Mutex
	smallPort int
	sessions  int
	tokens    map[[16]byte]*session
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup

	joinHook func() // run by join between taking the token and attaching (tests)
}

func (s *Server) maxSessions() int {
	if s.MaxSessions > 0 {
		return s.MaxSessions
	}
	return DefaultMaxSessions
}

func (s *Server) maxRcvbuf() int {
	if s.MaxRcvbuf > 0 {
		return s.MaxRcvbuf
	}
	return DefaultMaxRcvbuf
}

func (s *Server) idle() time.Duration {
	if s.Idle > 0 {
		return s.Idle
	}
	return DefaultIdle
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// Listeners are the peer's two listening sockets: one for control
// connections and data connections with a large window, one for data
// connections with a small window.
type Listeners struct {
	// Main is where control connections come, and data connections that
	// asked for a window over SmallWindow: its sockets have a receive
	// buffer of Server.MaxRcvbuf from before the handshake (SO_RCVBUFFORCE
	// where the process may, else SO_RCVBUF), so the window scale they
	// negotiate allows a window that large.
	Main net.Listener
	// Small is where data connections that asked for a window of at most
	// SmallWindow come: its sockets have a receive buffer of SmallWindow
	// from before the handshake, so the window stays that small from the
	// first segment on. (A buffer made small after the handshake makes the
	// kernel drop the segments that the window it advertised before still
	// admitted.)
	Small net.Listener
}

// Close closes both listeners.
func (l *Listeners) Close() error { return errors.Join(l.Main.Close(), l.Small.Close()) }

// SmallWindow is the receive buffer of the data connections that ask for a
// small window.
const SmallWindow = 4096

// Listen opens the peer's listeners: Main on addr, Small on smallPort of the
// same host (0: any free port). The sessions tell their clients where Small
// is.
func (s *Server) Listen(ctx context.Context, addr string, smallPort int) (*Listeners, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	listen := func(addr string, size int) (net.Listener, error) {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			return setRcvbuf(c, size)
		}}
		lc.SetMultipathTCP(false)
		return lc.Listen(ctx, "tcp", addr)
	}
	main, err := listen(addr, s.maxRcvbuf())
	if err != nil {
		return nil, err
	}
	small, err := listen(net.JoinHostPort(host, strconv.Itoa(smallPort)), SmallWindow)
	if err != nil {
		main.Close()
		return nil, err
	}
	return &Listeners{Main: main, Small: small}, nil
}

// Serve accepts connections on ls until ctx ends or a listener fails, then
// closes ls and every connection and returns.
func (s *Server) Serve(ctx context.Context, ls *Listeners) error {
	s.mu.Lock()
	if s.tokens == nil {
		s.tokens = map[[16]byte]*session{}
		s.conns = map[net.Conn]struct{}{}
	}
	s.smallPort = ls.Small.Addr().(*net.TCPAddr).Port
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { ls.Close() })
	defer stop()
	errs := make(chan error, 2)
	for _, ln := range []net.Listener{ls.Main, ls.Small} {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					ls.Close()
					errs <- err
					return
				}
				if !s.track(c) {
					c.Close()
					continue
				}
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					s.handle(c)
				}()
			}
		}()
	}
	err := <-errs
	<-errs
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// track notes c, so that Serve can close it; it refuses more connections
// than twice the sessions allowed (each session has a control and a data
// connection), plus as many handshakes.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) >= 3*s.maxSessions() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// handle reads a new connection's first request: a data connection joins
// its session; any other request starts a control session.
func (s *Server) handle(c net.Conn) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	req, err := readRequest(c)
	if err != nil {
		s.untrack(c)
		return
	}
	if req.op == opData {
		s.join(c, req.token)
		return
	}
	defer s.untrack(c)
	s.mu.Lock()
	busy := s.sessions >= s.maxSessions()
	if !busy {
		s.sessions++
	}
	s.mu.Unlock()
	if busy {
		c.Write((&Report{op: req.op, status: statusBusy}).marshal())
		return
	}
	// A control connection needs no more than a request's room: shrink
	// the receive buffer it came with (MaxRcvbuf on the Main listener), so
	// that what a client sends on it while the session reads the data
	// connection waits in SmallWindow, not in MaxRcvbuf.
	if tc, ok := c.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			setRcvbuf(rc, SmallWindow)
		}
	}
	ss := &session{srv: s, buf: make([]byte, 128<<10), first: -1}
	s.logf("session from %s", c.RemoteAddr())
	defer func() {
		ss.end()
		s.mu.Lock()
		s.sessions--
		s.mu.Unlock()
		s.logf("session from %s ended", c.RemoteAddr())
	}()
	for {
		rep := ss.serve(req)
		c.SetWriteDeadline(time.Now().Add(handshakeTimeout))
		if _, err := c.Write(rep.marshal()); err != nil || rep.status == statusBad {
			return
		}
		c.SetReadDeadline(time.Now().Add(s.idle()))
		if req, err = readRequest(c); err != nil {
			return
		}
		if req.op == opData {
			return
		}
	}
}

// join attaches data connection c to the session that handed out token.
func (s *Server) join(c net.Conn, token [16]byte) {
	s.mu.Lock()
	ss := s.tokens[token]
	delete(s.tokens, token)
	s.mu.Unlock()
	if s.joinHook != nil {
		s.joinHook()
	}
	tc, ok := c.(*net.TCPConn)
	if ss == nil || !ok || !ss.attach(tc, token) {
		c.Write((&Report{op: opData, status: statusBad}).marshal())
		s.untrack(c)
		return
	}
	// The session's control connection owns c from here on; it closes it.
}

// session is one control connection and its data connection.
type session struct {
	srv *Server
	buf []byte
	exp []byte

	// mu guards the fields below, which join's goroutine reads and sets.
	mu     sync.Mutex
	token  [16]byte     // the token of the data connection asked for last
	ended  bool         // the session, or its token, ended: attach refuses
	data   *net.TCPConn // nil until a data connection joins
	window int          // its receive buffer

	cmp      *mrand.ChaCha8 // the stream received bytes are compared with
	received int64
	changed  int64
	first    int64
	eof      bool
	failed   bool
}

func (ss *session) report(op byte, status byte) Report {
	ss.mu.Lock()
	window := ss.window
	ss.mu.Unlock()
	return Report{op: op, status: status, Received: ss.received, Changed: ss.changed,
		FirstChange: ss.first, EOF: ss.eof, Window: window, CPU: cpuTime()}
}

func (ss *session) serve(req request) Report {
	switch req.op {
	case opOpen:
		return ss.open(req)
	case opRead, opDrain:
		d := ss.dataConn()
		if d == nil {
			return ss.report(req.op, statusNoData)
		}
		timeout := time.Duration(req.args[1]) * time.Millisecond
		n := int64(req.args[0])
		if req.op == opDrain {
			timeout = time.Duration(req.args[0]) * time.Millisecond
			n = -1
		}
		if n < -1 || timeout <= 0 || timeout > ss.srv.idle() {
			timeout = ss.srv.idle()
		}
		if err := ss.read(d, n, timeout); err != nil {
			ss.failed = true
			return ss.report(req.op, statusReadFailed)
		}
		return ss.report(req.op, statusOK)
	case opReset, opClose:
		d := ss.dataConn()
		if d == nil {
			return ss.report(req.op, statusNoData)
		}
		if req.op == opReset {
			d.SetLinger(0)
		}
		ss.closeData()
		return ss.report(req.op, statusOK)
	case opStats:
		return ss.report(req.op, statusOK)
	}
	return ss.report(req.op, statusBad)
}

// open starts a new data connection: it ends the previous one, resets the
// counts and hands out a token for the next.
func (ss *session) open(req request) Report {
	ss.end()
	skip := req.args[4]
	if skip > maxSkip {
		return ss.report(opOpen, statusBad)
	}
	var seed [32]byte
	for i := range 4 {
		for j := range 8 {
			seed[8*i+j] = byte(req.args[i] >> (56 - 8*j))
		}
	}
	ss.cmp = nil
	if seed != ([32]byte{}) {
		ss.cmp = mrand.NewChaCha8(seed)
		for left := int64(skip); left > 0; {
			k := min(left, int64(len(ss.buf)))
			ss.cmp.Read(ss.buf[:k])
			left -= k
		}
	}
	ss.received, ss.changed, ss.first, ss.eof, ss.failed = 0, 0, -1, false, false
	var token [16]byte
	rand.Read(token[:])
	ss.mu.Lock()
	ss.window = 0
	ss.token = token
	ss.ended = false
	ss.mu.Unlock()
	ss.srv.mu.Lock()
	ss.srv.tokens[token] = ss
	ss.srv.mu.Unlock()
	r := ss.report(opOpen, statusOK)
	r.token = token
	ss.srv.mu.Lock()
	r.smallPort = ss.srv.smallPort
	ss.srv.mu.Unlock()
	return r
}

// attach makes c, which came with token, the session's data connection,
// with the receive buffer the session asked for, and tells the client. It
// refuses c if the session ended, or asked for another data connection,
// since join took the token: nothing would close c then.
func (ss *session) attach(c *net.TCPConn, token [16]byte) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended || ss.token != token || ss.data != nil {
		return false
	}
	ss.window = getRcvbuf(c)
	r := Report{op: opData, status: statusOK, Window: ss.window, FirstChange: -1, CPU: cpuTime()}
	if _, err := c.Write(r.marshal()); err != nil {
		return false
	}
	c.SetDeadline(time.Time{})
	ss.data = c
	return true
}

func (ss *session) dataConn() *net.TCPConn {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.data
}

func (ss *session) closeData() {
	ss.mu.Lock()
	d := ss.data
	ss.data = nil
	ss.mu.Unlock()
	if d != nil {
		ss.srv.untrack(d)
	}
}

// end closes the data connection and forgets the token; a data connection
// that took the token already is refused (attach).
func (ss *session) end() {
	ss.mu.Lock()
	ss.ended = true
	token := ss.token
	d := ss.data
	ss.data = nil
	ss.mu.Unlock()
	ss.srv.mu.Lock()
	delete(ss.srv.tokens, token)
	ss.srv.mu.Unlock()
	if d != nil {
		ss.srv.untrack(d)
	}
}

// read reads n bytes (all until EOF when n is -1) from d within timeout,
// comparing them with the session's stream.
func (ss *session) read(d *net.TCPConn, n int64, timeout time.Duration) error {
	if ss.eof || ss.failed {
		if n < 0 || n == 0 {
			return nil
		}
		return io.ErrUnexpectedEOF
	}
	d.SetReadDeadline(time.Now().Add(timeout))
	defer d.SetReadDeadline(time.Time{})
	for n != 0 {
		b := ss.buf
		if n > 0 && n < int64(len(b)) {
			b = b[:n]
		}
		k, err := d.Read(b)
		ss.compare(b[:k])
		if n > 0 {
			n -= int64(k)
		}
		if errors.Is(err, io.EOF) {
			ss.eof = true
			if n > 0 {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (ss *session) compare(b []byte) {
	if ss.cmp != nil && len(b) > 0 {
		if len(ss.exp) < len(b) {
			ss.exp = make([]byte, len(ss.buf))
		}
		exp := ss.exp[:len(b)]
		ss.cmp.Read(exp)
		if !bytes.Equal(b, exp) {
			for i := range b {
				if b[i] != exp[i] {
					if ss.first < 0 {
						ss.first = ss.received + int64(i)
					}
					ss.changed++
				}
			}
		}
	}
	ss.received += int64(len(b))
}

// cpuTime is the user and system CPU time of the process (getrusage(2)).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Conns is the number of connections the server has open now, control and
// data, and those not yet identified.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
