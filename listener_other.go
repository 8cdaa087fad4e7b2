//go:build !linux

package sendfile2

import (
	"net"

	"github.com/sendfile2/sendfile2/internal/httpconn"
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
	return httpconn.New(c), nil
}

// countBypass counts nothing: outside Linux no Sender can be created.
func countBypass(*httpconn.Conn, Bypass) {}
