package main

import (
	"net"
	"sync"
	"syscall"
)

// limitListener returns a Listener that accepts at most n connections at
// once from ln, as golang.org/x/net/netutil.LimitListener does. netutil's
// conns hide every method of the accepted conn but net.Conn's, SyscallConn
// among them, and NewListener leaves a conn without SyscallConn unwrapped:
// net/http would then copy every body itself and the Sender would send
// nothing. These conns keep SyscallConn, CloseRead and CloseWrite.
func limitListener(ln net.Listener, n int) net.Listener {
	return &limitedListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	sem       chan struct{} // one token per open conn
	closeOnce sync.Once
	done      chan struct{} // closed by Close
	reclaim   reclaimer     // nil: a new conn waits for a conn to close
}

// reclaimer makes room at the limit by closing a conn that waits for
// nothing: an idle keep-alive conn (see connTracker.reclaimIdle).
type reclaimer interface {
	reclaimIdle() bool      // closes the longest idle conn, if there is one
	idled() <-chan struct{} // receives when a conn turns idle
}

// Accept waits for a free slot, then for a connection. With a reclaimer,
// when every slot is taken, it waits for a connection first, then makes room
// for it: it closes the longest idle conn, else waits for a conn to close or
// turn idle. That conn is the only one over the limit; the next wait in the
// kernel's accept queue.
func (l *limitedListener) Accept() (net.Conn, error) {
	var c net.Conn
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	default:
		if l.reclaim == nil {
			select {
			case l.sem <- struct{}{}:
			case <-l.done:
				return nil, net.ErrClosed
			}
			break
		}
		var err error
		if c, err = l.Listener.Accept(); err != nil {
			return nil, err
		}
		if err := l.makeRoom(); err != nil {
			c.Close()
			return nil, err
		}
	}
	if c == nil {
		var err error
		if c, err = l.Listener.Accept(); err != nil {
			<-l.sem
			return nil, err
		}
	}
	lc := &limitedConn{Conn: c, release: func() { <-l.sem }}
	if tc, ok := c.(*net.TCPConn); ok {
		return limitedTCPConn{lc, tc}, nil
	}
	return lc, nil
}

// makeRoom takes a slot, closing idle conns to free one.
func (l *limitedListener) makeRoom() error {
	for {
		select {
		case l.sem <- struct{}{}:
			return nil
		default:
		}
		l.reclaim.reclaimIdle()
		select {
		case l.sem <- struct{}{}:
			return nil
		case <-l.reclaim.idled():
		case <-l.done:
			return net.ErrClosed
		}
	}
}

func (l *limitedListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

// limitedConn frees its slot when closed.
type limitedConn struct {
	net.Conn
	releaseOnce sync.Once
	release     func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.releaseOnce.Do(c.release)
	return err
}

// limitedTCPConn is a limitedConn around a *net.TCPConn. It does not keep
// ReadFrom: that is NewListener's.
type limitedTCPConn struct {
	*limitedConn
	tc *net.TCPConn
}

func (c limitedTCPConn) SyscallConn() (syscall.RawConn, error) { return c.tc.SyscallConn() }
func (c limitedTCPConn) CloseRead() error                      { return c.tc.CloseRead() }
func (c limitedTCPConn) CloseWrite() error                     { return c.tc.CloseWrite() }
