package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sendfile2/sendfile2"
)

// The defaults of --body-timeout and --send-timeout, nginx's
// client_body_timeout and send_timeout.
const (
	defaultBodyTimeout = 60 * time.Second
	defaultSendTimeout = 60 * time.Second
)

// The limits that end a connection, as the log and the label of
// sendfile2_http_limit_closes_total name them.
const (
	limitBody     = "body_timeout" // no byte of a request body for --body-timeout
	limitSend     = "send_timeout" // the peer took no byte of a response for --send-timeout
	limitMaxConns = "max_conns"    // an idle keep-alive conn closed to make room for a new one
)

// errBodyTimeout ends a receive whose client sent nothing for --body-timeout.
var errBodyTimeout = errors.New("no byte of the request body for --body-timeout")

// connTracker knows every connection of the file server, what it is doing
// (waiting for a request, answering one, receiving an upload), and ends
// those that a stalled peer holds:
//
//   - a response the peer does not take: data waits in the socket's send
//     queue and the peer acknowledged none of it for sendTimeout. The test is
//     on the socket (TCP_INFO, SIOCOUTQ), not on our writes, so it holds for
//     a Sender's send in flight as for net/http's own writes, however large
//     the send: a send is never cut for its length, only for a peer that
//     stopped taking it.
//   - an upload received on the hijacked conn (Sender.Receive, which reads a
//     duplicate of the socket and does not observe deadlines) whose peer sent
//     nothing for bodyTimeout while the receive waited: its context ends.
//   - bodies read through net/http get a read deadline instead, moved
//     bodyTimeout past each read that returned bytes (see guardBodies).
//
// A sweeper goroutine looks at the busy conns every period. It also keeps
// the idle keep-alive conns in order, for reclaimIdle.
type connTracker struct {
	log         *slog.Logger
	cuts        *prometheus.CounterVec
	sendTimeout time.Duration // 0: none
	bodyTimeout time.Duration // 0: none

	mu    sync.Mutex
	conns map[*trackedConn]struct{}
	idle  idleList
	poke  chan struct{} // a conn turned idle

	stop chan struct{}
	done chan struct{}
}

func newConnTracker(log *slog.Logger, cuts *prometheus.CounterVec, sendTimeout, bodyTimeout time.Duration) *connTracker {
	t := &connTracker{
		log: log, cuts: cuts, sendTimeout: sendTimeout, bodyTimeout: bodyTimeout,
		conns: map[*trackedConn]struct{}{},
		poke:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go t.run()
	return t
}

// close stops the sweeper.
func (t *connTracker) close() {
	close(t.stop)
	<-t.done
}

// sweepPeriod is how often the sweeper looks: a quarter of the shortest
// limit, so that a stalled conn is cut between its limit and 1.5 times it,
// within 50 ms and 5 s.
func (t *connTracker) sweepPeriod() time.Duration {
	shortest := time.Duration(0)
	for _, d := range []time.Duration{t.sendTimeout, t.bodyTimeout} {
		if d > 0 && (shortest == 0 || d < shortest) {
			shortest = d
		}
	}
	if shortest == 0 {
		return 0
	}
	return min(max(shortest/4, 50*time.Millisecond), 5*time.Second)
}

func (t *connTracker) run() {
	defer close(t.done)
	period := t.sweepPeriod()
	if period == 0 {
		<-t.stop
		return
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case now := <-tick.C:
			t.sweep(now)
		}
	}
}

// sweep cuts the busy conns whose peer has stalled past a limit.
func (t *connTracker) sweep(now time.Time) {
	t.mu.Lock()
	busy := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		if !c.idle.listed && c.busy {
			busy = append(busy, c)
		}
	}
	t.mu.Unlock()
	for _, c := range busy {
		st, ok := sockStatOf(c.Conn)
		if !ok {
			continue // closed meanwhile, or not TCP
		}
		if limit, stalled := c.check(now, st); limit != "" {
			c.cut(limit, stalled)
		}
	}
}

// accept makes c, a conn the listener accepted, known to t.
func (t *connTracker) accept(nc net.Conn) *trackedConn {
	c := &trackedConn{Conn: nc, t: t, peer: nc.RemoteAddr().String()}
	t.mu.Lock()
	t.conns[c] = struct{}{}
	t.mu.Unlock()
	return c
}

// connState is the http.Server's ConnState hook.
func (t *connTracker) connState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*trackedConn)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch st {
	case http.StateActive, http.StateHijacked:
		t.idle.remove(c)
		c.setBusy(true)
		c.hijacked = st == http.StateHijacked
	case http.StateIdle:
		c.setBusy(false)
		if _, open := t.conns[c]; open {
			t.idle.push(c, time.Now())
			select {
			case t.poke <- struct{}{}:
			default:
			}
		}
	}
}

// connContext is the http.Server's ConnContext: it puts the tracked conn in
// the requests' context, for guardBodies, and the Sender's conn under it,
// for sendfile2.ServeContent.
func (t *connTracker) connContext(ctx context.Context, nc net.Conn) context.Context {
	c, ok := nc.(*trackedConn)
	if !ok {
		return sendfile2.ConnContext(ctx, nc)
	}
	return sendfile2.ConnContext(context.WithValue(ctx, trackedKey{}, c), c.Conn)
}

type trackedKey struct{}

// trackedConn is a conn of the file server as net/http sees it: the conn
// NewListener made, with what the tracker knows of it. It keeps ReadFrom
// (the Sender's path), SyscallConn, CloseRead and CloseWrite.
type trackedConn struct {
	net.Conn
	t    *connTracker
	peer string

	// The bytes the lean path read and handed on with the conn (lean.go):
	// Read returns them first. Only net/http's reader touches it then.
	pending []byte
	// When the lean path's limit for the header in pending ran out, in
	// Unix nanoseconds; 0 once net/http has set its own (SetReadDeadline).
	headerBy atomic.Int64

	// Under t.mu.
	idle     idleLink // in t.idle while the conn waits for a next request
	hijacked bool     // the handler owns the conn: net/http reads no more

	mu      sync.Mutex
	busy    bool                    // between a request's start and the conn turning idle; set under t.mu too
	bodies  int                     // receives waiting for a body (readingBody)
	cancel  context.CancelCauseFunc // ends those receives
	send    progress
	receive progress

	cutOnce   sync.Once
	closeOnce sync.Once
}

// progress is a socket counter and when it last moved.
type progress struct {
	count uint64
	since time.Time
}

func (c *trackedConn) setBusy(busy bool) {
	c.mu.Lock()
	c.busy = busy
	c.send = progress{}
	c.mu.Unlock()
}

func (c *trackedConn) isHijacked() bool {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	return c.hijacked
}

// check reports the limit c's peer has stalled past, and for how long, given
// the socket's state st at now.
func (c *trackedConn) check(now time.Time, st sockStat) (string, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	if t.sendTimeout > 0 {
		// Stalled: bytes wait to go out and the peer acknowledged none
		// since the last look. An empty queue is our side's doing.
		if st.outq == 0 || st.acked != c.send.count || c.send.since.IsZero() {
			c.send = progress{st.acked, now}
		} else if d := now.Sub(c.send.since); d >= t.sendTimeout {
			return limitSend, d
		}
	}
	if t.bodyTimeout > 0 && c.bodies > 0 {
		// Stalled: the receive waits, nothing is queued for it, and the
		// peer sent nothing since the last look.
		if st.inq > 0 || st.received != c.receive.count || c.receive.since.IsZero() {
			c.receive = progress{st.received, now}
		} else if d := now.Sub(c.receive.since); d >= t.bodyTimeout {
			return limitBody, d
		}
	}
	return "", 0
}

// readingBody marks conn, a hijacked conn of the file server, as waiting for
// a request body until done is called; ctx ends, with errBodyTimeout, if
// the peer then sends nothing for the body timeout. Other conns get ctx
// back as it is.
func readingBody(ctx context.Context, conn net.Conn) (_ context.Context, done func()) {
	c, ok := conn.(*trackedConn)
	if !ok || c.t.bodyTimeout <= 0 {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	c.mu.Lock()
	c.bodies++
	c.receive = progress{}
	prev := c.cancel
	c.cancel = func(err error) {
		cancel(err)
		if prev != nil {
			prev(err)
		}
	}
	c.mu.Unlock()
	return ctx, func() {
		c.mu.Lock()
		c.bodies--
		c.cancel = prev
		c.mu.Unlock()
		cancel(nil)
	}
}

// cut ends c because its peer stalled past limit: it logs and counts it
// once, ends the receives waiting on c, and closes c. A send timeout resets
// the connection at once (abortSocket): the data the peer never took is
// dropped, and with it the pages and buffers that zero-copy sends still
// hold. cut does not wait for the close, which waits for a send in flight
// to stop.
func (c *trackedConn) cut(limit string, stalled time.Duration) {
	c.cutOnce.Do(func() {
		c.t.log.Warn("connection closed: limit reached", "limit", limit, "stalled", stalled.Round(time.Millisecond), "peer", c.peer)
		c.t.cuts.WithLabelValues(limit).Inc()
		c.mu.Lock()
		cancel := c.cancel
		c.mu.Unlock()
		if cancel != nil {
			cancel(errBodyTimeout)
		}
		if limit == limitSend {
			abortSocket(c.Conn)
		}
		go c.Close()
	})
}

// abortAll resets every conn t knows (abortSocket), as a send timeout does,
// and returns how many. It is for a shutdown whose time ran out: a plain
// close of a conn waits for the send in flight on it, and a zero-copy send
// to a peer that does not read waits for notifications that only a reset
// brings. It must come before the conns are closed: once a close started,
// the socket can no longer be reached.
func (t *connTracker) abortAll() int {
	t.mu.Lock()
	conns := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		abortSocket(c.Conn)
	}
	return len(conns)
}

// Close closes the conn and forgets it.
func (c *trackedConn) Close() error {
	c.closeOnce.Do(func() {
		t := c.t
		t.mu.Lock()
		delete(t.conns, c)
		t.idle.remove(c)
		t.mu.Unlock()
	})
	return c.Conn.Close()
}

// SetReadDeadline sets the conn's read deadline; the first after a hand-off
// (net/http's for the header it reads first) no later than the lean path's
// limit for that header, so that a header begun on the lean path gets
// --read-header-timeout in all, not once more from the hand-off.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	if by := c.headerBy.Swap(0); by != 0 {
		if limit := time.Unix(0, by); t.IsZero() || t.After(limit) {
			t = limit
		}
	}
	return c.Conn.SetReadDeadline(t)
}

// Read returns the pending bytes first, then reads the conn.
func (c *trackedConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// ReadFrom is the Sender's conn's: net/http hands file bodies to it.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

type writerOnly struct{ io.Writer }

func (c *trackedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (c *trackedConn) CloseRead() error {
	if cr, ok := c.Conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return errors.ErrUnsupported
}

// trackingListener makes the conns of ln known to t.
type trackingListener struct {
	net.Listener
	t *connTracker
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.t.accept(c), nil
}

// maxDiscard is how much of a request body that no handler reads serve
// reads and drops before answering, as net/http would (its
// maxPostHandlerReadBytes); past it, the connection closes after the
// response instead.
const maxDiscard = 256 << 10

// guardBodies applies the body timeout to the request bodies that net/http
// reads (all but the uploads received on the hijacked conn): each read that
// returns bytes moves the conn's read deadline bodyTimeout ahead, and a read
// that reaches it cuts the conn. A body that h does not read (reads false:
// a GET that announces one) is read and dropped first, within the same
// limit: net/http would otherwise wait for it, without a limit, before
// writing the response. After h, whatever net/http still reads of the body
// to reuse the conn must come within the limit too.
func (t *connTracker) guardBodies(h http.Handler, reads func(*http.Request) bool) http.Handler {
	if t.bodyTimeout <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			h.ServeHTTP(w, r)
			return
		}
		c, _ := r.Context().Value(trackedKey{}).(*trackedConn)
		b := &timedBody{ReadCloser: r.Body, rc: http.NewResponseController(w), c: c, timeout: t.bodyTimeout}
		b.extend()
		r.Body = b
		if !reads(r) {
			if _, err := io.CopyN(io.Discard, b, maxDiscard); err == nil {
				w.Header().Set("Connection", "close") // more than we drop
			} else if !errors.Is(err, io.EOF) {
				return // cut (timedBody), or the client went away
			}
		}
		h.ServeHTTP(w, r)
		if !b.eof && (c == nil || !c.isHijacked()) {
			b.extend()
		}
	})
}

// timedBody is a request body whose reads move the conn's read deadline.
type timedBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	c       *trackedConn // nil if not known
	timeout time.Duration
	eof     bool
}

func (b *timedBody) extend() { b.rc.SetReadDeadline(time.Now().Add(b.timeout)) }

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case errors.Is(err, io.EOF):
		b.eof = true
		b.rc.SetReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		if b.c != nil {
			b.c.cut(limitBody, b.timeout)
		}
	case n > 0:
		b.extend()
	}
	return n, err
}
