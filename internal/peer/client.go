package peer

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// Session is a client's control connection to a peer. Its methods may be
// called from several goroutines; they run one at a time.
type Session struct {
	addr string
	mu   sync.Mutex
	c    net.Conn
}

// Dial opens a control connection to the peer at addr (HOST:PORT).
func Dial(ctx context.Context, addr string) (*Session, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	return &Session{addr: addr, c: c}, nil
}

// Close closes the control connection; the peer closes the data connection.
func (s *Session) Close() error { return s.c.Close() }

// OpenOptions say what the peer does with a data connection.
type OpenOptions struct {
	// Seed names the stream the peer compares received bytes with: byte i of
	// the stream is byte Skip+i of what math/rand/v2's ChaCha8 with this seed
	// reads. The zero seed compares nothing: the peer only counts.
	Seed [32]byte
	// Skip is where in the seed's stream the data connection's bytes start
	// (at most 64 MiB).
	Skip int64
	// Small asks for a data connection with a small window (a receive
	// buffer of SmallWindow, from the handshake on, on the peer's second
	// port): while the peer does not read, most of the data then waits in
	// the sender's socket. Otherwise the window is as large as the peer's
	// Server.MaxRcvbuf.
	Small bool
}

// Open asks the peer for a data connection, ending the session's previous
// one, and dials it with d (a zero Dialer when nil). The peer does not read
// it until Read or Drain.
func (s *Session) Open(ctx context.Context, o OpenOptions, d *net.Dialer) (*net.TCPConn, Report, error) {
	req := request{op: opOpen}
	for i := range 4 {
		for j := range 8 {
			req.args[i] = req.args[i]<<8 | uint64(o.Seed[8*i+j])
		}
	}
	req.args[4] = uint64(o.Skip)
	rep, err := s.do(ctx, req, 0)
	if err != nil {
		return nil, rep, err
	}
	if d == nil {
		d = &net.Dialer{}
	}
	dd := *d
	dd.SetMultipathTCP(false) // MPTCP sockets cannot send zero-copy
	addr := s.addr
	if o.Small {
		host, _, err := net.SplitHostPort(s.addr)
		if err != nil {
			return nil, rep, fmt.Errorf("peer: %w", err)
		}
		addr = net.JoinHostPort(host, strconv.Itoa(rep.smallPort))
	}
	c, err := dd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, rep, fmt.Errorf("peer: data connection: %w", err)
	}
	stop := deadline(ctx, c, handshakeTimeout)
	defer stop()
	_, err = c.Write((&request{op: opData, token: rep.token}).marshal())
	if err == nil {
		rep, err = readReply(c, opData)
	}
	if err != nil {
		c.Close()
		return nil, rep, fmt.Errorf("peer: data connection: %w", err)
	}
	c.SetDeadline(time.Time{})
	return c.(*net.TCPConn), rep, nil
}

// Read has the peer read n more bytes of the data connection, within
// timeout, and report. It fails with ErrReadFailed (and the report) when the
// stream ends or fails first.
func (s *Session) Read(ctx context.Context, n int64, timeout time.Duration) (Report, error) {
	return s.do(ctx, request{op: opRead, args: [nargs]uint64{uint64(n), uint64(timeout.Milliseconds())}}, timeout)
}

// Drain has the peer read the data connection until its stream ends, within
// timeout, and report.
func (s *Session) Drain(ctx context.Context, timeout time.Duration) (Report, error) {
	return s.do(ctx, request{op: opDrain, args: [nargs]uint64{uint64(timeout.Milliseconds())}}, timeout)
}

// Reset has the peer close the data connection with SO_LINGER 0: it sends
// RST, and drops what it has not read.
func (s *Session) Reset(ctx context.Context) (Report, error) {
	return s.do(ctx, request{op: opReset}, 0)
}

// CloseData has the peer close the data connection.
func (s *Session) CloseData(ctx context.Context) (Report, error) {
	return s.do(ctx, request{op: opClose}, 0)
}

// Stats reports the data connection's counts and the peer's CPU time
// without reading.
func (s *Session) Stats(ctx context.Context) (Report, error) {
	return s.do(ctx, request{op: opStats}, 0)
}

// do sends req and reads the reply, waiting at most wait plus a margin, or
// until ctx ends.
func (s *Session) do(ctx context.Context, req request, wait time.Duration) (Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stop := deadline(ctx, s.c, wait+handshakeTimeout)
	defer stop()
	if _, err := s.c.Write(req.marshal()); err != nil {
		return Report{}, fmt.Errorf("peer: %w", err)
	}
	rep, err := readReply(s.c, req.op)
	if err != nil {
		if ctx.Err() != nil {
			return rep, fmt.Errorf("peer: %w", context.Cause(ctx))
		}
		return rep, err
	}
	return rep, nil
}

// deadline sets c's deadline to d from now or ctx's deadline, whichever is
// first, and ends it at once when ctx ends; stop clears it.
func deadline(ctx context.Context, c net.Conn, d time.Duration) (stop func()) {
	t := time.Now().Add(d)
	if dl, ok := ctx.Deadline(); ok && dl.Before(t) {
		t = dl
	}
	c.SetDeadline(t)
	after := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	return func() {
		after()
		c.SetDeadline(time.Time{})
	}
}
