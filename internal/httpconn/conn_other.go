//go:build !linux

package httpconn

import (
	"io"
	"net"
)

// New wraps c so that it hides c's ReadFrom and SyscallConn, keeping its
// CloseRead and CloseWrite when c has them: net/http and io.Copy(conn, file)
// then copy file bodies with Write instead of sendfile(2).
func New(c net.Conn) net.Conn {
	_, cr := c.(interface{ CloseRead() error })
	_, cw := c.(interface{ CloseWrite() error })
	switch {
	case cr && cw:
		return halfCloseConn{Conn{c}}
	case cw:
		return closeWriteConn{Conn{c}}
	case cr:
		return closeReadConn{Conn{c}}
	}
	return Conn{c}
}

// Conn has the methods of net.Conn only.
type Conn struct{ net.Conn }

type halfCloseConn struct{ Conn }

// CloseRead shuts down the reading side of the connection.
func (c halfCloseConn) CloseRead() error {
	return c.Conn.Conn.(interface{ CloseRead() error }).CloseRead()
}

// CloseWrite shuts down the writing side of the connection.
func (c halfCloseConn) CloseWrite() error {
	return c.Conn.Conn.(interface{ CloseWrite() error }).CloseWrite()
}

type closeWriteConn struct{ Conn }

// CloseWrite shuts down the writing side of the connection.
func (c closeWriteConn) CloseWrite() error {
	return c.Conn.Conn.(interface{ CloseWrite() error }).CloseWrite()
}

type closeReadConn struct{ Conn }

// CloseRead shuts down the reading side of the connection.
func (c closeReadConn) CloseRead() error {
	return c.Conn.Conn.(interface{ CloseRead() error }).CloseRead()
}

// Find is nil: outside Linux, conns hold no write.
func Find(net.Conn) (*Conn, bool) { return nil, false }

// IsFile is false: outside Linux nothing counts a bypass.
func IsFile(io.Reader) bool { return false }

// HoldWrite holds nothing.
func (*Conn) HoldWrite() bool { return false }

// Release sends nothing.
func (*Conn) Release() error { return nil }
