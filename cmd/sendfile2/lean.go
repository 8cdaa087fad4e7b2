package main

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// leanServer is the lean path of serve's file server (--lean, on by
// default, plain HTTP only): it owns each connection from accept, reads its
// requests into a buffer of its own, and answers those it can answer
// exactly as net/http and fileHandler would (parseLean: a GET or HEAD of
// HTTP/1.1, kept alive, with no body, range, coding or credentials, and no
// condition but If-None-Match and If-Modified-Since) at a fraction of their cost, the file through the Sender
// with its head in the same send. The first request it cannot answer so,
// it hands, with the bytes it has read, to the http.Server, which keeps the
// connection for the rest of its life: it arrives through the listener
// that Serve takes (leanListener), as a new connection whose first reads
// return those bytes (trackedConn.pending).
//
// A lean connection keeps what net/http's have: the tracker (idle keep-alive
// conns reclaimed at --max-conns, --send-timeout), the read-header and idle
// timeouts, the access log and the metrics (accounting), the handlers that
// shutdown waits for. A header larger than the buffer goes to net/http,
// which applies MaxHeaderBytes to it from its first byte.
type leanServer struct {
	files    *fileHandler
	conns    *connTracker
	metrics  *metrics
	acct     *accounting
	handlers *sync.WaitGroup
	head     *headTemplate
	refuse   leanRefuse

	readHeaderTimeout, idleTimeout time.Duration

	ln       *leanListener
	handoff  chan *trackedConn // to leanListener.Accept
	done     chan struct{}     // closed with leanListener: no more hand-offs
	shutting atomic.Bool       // shutdown began: close conns once idle

	mu   sync.Mutex
	live map[*leanConn]struct{}
	wg   sync.WaitGroup // the lean conns' goroutines
}

// leanBufSize is a lean conn's read buffer: a request header larger than it
// goes to net/http (as large as net/http's own read buffer).
const leanBufSize = 4 << 10

// listener returns the listener for the http.Server's Serve: its Accept
// takes the conns of ln, the tracking listener, and serves them itself; it
// returns the conns the lean path hands off.
func (l *leanServer) listener(ln net.Listener) net.Listener {
	ll := &leanListener{Listener: ln, l: l, accepted: make(chan acceptedConn)}
	l.ln = ll
	go ll.acceptLoop()
	return ll
}

// leanListener is what http.Server.Serve takes when the lean path is on.
type leanListener struct {
	net.Listener // the tracking listener
	l            *leanServer
	accepted     chan acceptedConn
	stopped      atomic.Bool // stopAccepting was called
	stopOnce     sync.Once
	closeOnce    sync.Once
}

type acceptedConn struct {
	c   net.Conn
	err error
}

// Accept starts the lean path on each conn accepted, and returns the first
// conn handed off, or an error of the listener.
func (ll *leanListener) Accept() (net.Conn, error) {
	for {
		select {
		case c := <-ll.l.handoff:
			return c, nil
		case a := <-ll.accepted:
			if a.err != nil {
				return nil, a.err
			}
			ll.l.start(a.c.(*trackedConn))
		case <-ll.l.done:
			return nil, net.ErrClosed
		}
	}
}

// acceptLoop accepts conns for Accept, which may wait for a hand-off
// meanwhile. It stops at the listener's first error that is not temporary
// (net/http's Serve returns then), or when the listener closes.
func (ll *leanListener) acceptLoop() {
	for {
		c, err := ll.Listener.Accept()
		if err != nil && ll.stopped.Load() {
			return // not an error of Serve's: it still takes hand-offs
		}
		select {
		case ll.accepted <- acceptedConn{c, err}:
		case <-ll.l.done:
			if c != nil {
				c.Close()
			}
			return
		}
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Temporary()) {
			return
		}
	}
}

// stopAccepting closes the listener beneath, once, so that shutdown may
// wait for the lean conns while Accept still takes what they hand off.
func (ll *leanListener) stopAccepting() error {
	var err error
	ll.stopOnce.Do(func() {
		ll.stopped.Store(true)
		err = ll.Listener.Close()
	})
	return err
}

// Close stops accepting, and hand-offs.
func (ll *leanListener) Close() error {
	err := ll.stopAccepting()
	ll.closeOnce.Do(func() { close(ll.l.done) })
	return err
}

// start serves c on the lean path, in a goroutine of its own.
func (l *leanServer) start(c *trackedConn) {
	l.metrics.connState(c, http.StateNew)
	lc := &leanConn{l: l, c: c, buf: make([]byte, leanBufSize), accepted: time.Now()}
	l.mu.Lock()
	if l.shutting.Load() {
		l.mu.Unlock()
		c.Close()
		l.metrics.connState(c, http.StateClosed)
		return
	}
	l.live[lc] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	go lc.serve()
}

// handOff passes c, with its unread bytes and the limit for the header
// they begin, to net/http, and reports
// whether it took it: not once its listener closed (srv.Shutdown).
func (l *leanServer) handOff(c *trackedConn, pending []byte, headerBy time.Time) bool {
	c.pending = pending
	if len(pending) > 0 && !headerBy.IsZero() {
		c.headerBy.Store(headerBy.UnixNano())
	}
	// net/http counts it anew (StateNew).
	l.metrics.conns.Dec()
	select {
	case l.handoff <- c:
		l.metrics.handoffs.Inc()
		return true
	case <-l.done:
		l.metrics.conns.Inc()
		return false
	}
}

// shutdown stops accepting and stops the lean conns: it closes those that
// wait for a request at once, and the others once their response is sent
// (or hands them to net/http, which then shuts them down). It then waits
// for them until done ends, and reports whether they all ended.
func (l *leanServer) shutdown(done <-chan struct{}) bool {
	l.ln.stopAccepting()
	l.mu.Lock()
	l.shutting.Store(true)
	for lc := range l.live {
		lc.closeIfIdle()
	}
	l.mu.Unlock()
	finished := make(chan struct{})
	go func() {
		l.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return true
	case <-done:
		return false
	}
}

func (l *leanServer) forget(lc *leanConn) {
	l.mu.Lock()
	delete(l.live, lc)
	l.mu.Unlock()
}

// newLean makes the lean path of s's file server srv.
func (s *server) newLean(acct *accounting, srv *http.Server) *leanServer {
	codings := len(s.files.codings) > 0
	return &leanServer{
		files: s.files, conns: s.conns, metrics: s.metrics, acct: acct, handlers: &s.handlers,
		head:              newHeadTemplate(s.http.headers, codings),
		refuse:            leanRefuse{acceptEncoding: codings, authorization: s.http.auth != nil},
		readHeaderTimeout: srv.ReadHeaderTimeout,
		idleTimeout:       srv.IdleTimeout,
		handoff:           make(chan *trackedConn),
		done:              make(chan struct{}),
		live:              map[*leanConn]struct{}{},
	}
}
