//go:build !linux

package sendfile2

import (
	"io"
	"net"
)

// NewListener wraps ln so that the conns it accepts send file bodies with s.
// On Linux they send with s.SendFrom and return when the kernel holds no
// reference to the file's pages.
//
// Outside Linux no Sender can be created, and s is ignored. The accepted
// conns still keep the guarantee, without zero copy: they hide the accepted
// conn's ReadFrom and SyscallConn, so that net/http and io.Copy(conn, file)
// cannot send with sendfile(2) and copy file bodies with the conn's Write
// instead. They keep CloseRead and CloseWrite when the accepted conn has
// them. TLS is not in scope: a *tls.Conn copies into its own buffers already.
func NewListener(ln net.Listener, s *Sender) net.Listener {
	return &listener{Listener: ln}
}

type listener struct{ net.Listener }

// Accept waits for the next connection and wraps it.
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	_, cr := c.(interface{ CloseRead() error })
	_, cw := c.(interface{ CloseWrite() error })
	switch {
	case cr && cw:
		return halfCloseConn{conn{c}}, nil
	case cw:
		return closeWriteConn{conn{c}}, nil
	case cr:
		return closeReadConn{conn{c}}, nil
	}
	return conn{c}, nil
}

// conn has the methods of net.Conn only.
type conn struct{ net.Conn }

type halfCloseConn struct{ conn }

// CloseRead shuts down the reading side of the connection.
func (c halfCloseConn) CloseRead() error {
	return c.Conn.(interface{ CloseRead() error }).CloseRead()
}

// CloseWrite shuts down the writing side of the connection.
func (c halfCloseConn) CloseWrite() error {
	return c.Conn.(interface{ CloseWrite() error }).CloseWrite()
}

type closeWriteConn struct{ conn }

// CloseWrite shuts down the writing side of the connection.
func (c closeWriteConn) CloseWrite() error {
	return c.Conn.(interface{ CloseWrite() error }).CloseWrite()
}

type closeReadConn struct{ conn }

// CloseRead shuts down the reading side of the connection.
func (c closeReadConn) CloseRead() error {
	return c.Conn.(interface{ CloseRead() error }).CloseRead()
}

// heldConn is nil: outside Linux, conns hold no write (see ServeContent).
func heldConn(net.Conn) (*conn, bool) { return nil, false }

func (conn) bypass(Bypass)  {}
func isFile(io.Reader) bool { return false }

type writerOnly struct{ io.Writer }

func (conn) holdWrite() bool { return false }
func (conn) release() error  { return nil }
