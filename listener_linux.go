package sendfile2

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"syscall"

	"github.com/sendfile2/sendfile2/internal/engine"
	"github.com/sendfile2/sendfile2/internal/httpconn"
)

// NewListener wraps ln so that the conns it accepts send file bodies with s.
// Serve HTTP on it as usual: net/http hands a response body that is a file
// (with a Content-Length, as http.FileServer, http.ServeFile and
// http.ServeContent set it) to the conn's ReadFrom, after writing its first
// 512 bytes through its own buffer for content sniffing, and the wrapped conn
// sends it with s.SendFrom. When the handler's write returns, the kernel holds
// no reference to the file's pages, so the file may be rewritten or truncated
// without the client receiving the new bytes (with a safe method: see
// Method.Safe). Without the wrapper net/http sends with sendfile(2), which
// gives no such guarantee.
//
// Since Go 1.24, net.Listen makes MPTCP listeners on Linux, and the TCP
// sockets they accept cannot send zero-copy: the Sender copies on them,
// safely, and counts a fallback. For zero-copy, listen with a
// net.ListenConfig on which SetMultipathTCP(false) was called.
//
// An accepted conn implements io.ReaderFrom. ReadFrom sends with s when r is,
// or is an *io.LimitedReader around, one of:
//
//   - an *os.File, or any reader that exposes its descriptor through
//     syscall.Conn (as the wrapper (*os.File).WriteTo passes to io.Copy
//     does), open on a regular file: from the file's offset to its end (its
//     size when ReadFrom starts), and the offset ends after the bytes sent,
//     as with (*net.TCPConn).ReadFrom;
//   - an *io.SectionReader whose io.ReaderAt is such a file: from the
//     section's position to its end (or the file's), and the position ends
//     after the bytes sent; the file's own offset is not used.
//
// An *io.LimitedReader bounds the count and has N decreased by the bytes
// sent. A file that shrinks during the send ends it as EOF would. A reader
// that exposes a descriptor is taken to return that descriptor's bytes, as
// (*net.TCPConn).ReadFrom also assumes. Any other reader, or a descriptor
// that is not a regular file (a pipe, a socket), is copied with the conn's
// Write, through a buffer: safe, without zero copy.
//
// io.Copy(conn, file) takes the same path: the conn's SyscallConn returns a
// syscall.RawConn that does not expose the socket to the os package, so
// (*os.File).WriteTo cannot call sendfile(2) on it and falls back to ReadFrom.
// The other direction pays for that: copies from the conn to a file or a
// socket cannot use splice(2) and go through a buffer.
//
// Deadlines set on the conn (SetDeadline, SetWriteDeadline, and so net/http's
// Server.WriteTimeout and ResponseController.SetWriteDeadline) apply to
// ReadFrom: a send still running when the write deadline passes stops, and
// ReadFrom returns an error matching os.ErrDeadlineExceeded (a net.Error
// whose Timeout is true), at once if the deadline has already passed. Close
// stops a ReadFrom in flight, which returns an error matching net.ErrClosed;
// the socket stays open until that send has stopped. Writes and ReadFrom are
// serialized, as on a net.TCPConn. The conn keeps CloseRead and CloseWrite
// when the accepted conn has them; other methods of the accepted conn's type
// (SetNoDelay, for instance) are hidden: set socket options through
// SyscallConn.
//
// The conn sends on the descriptor of the accepted conn, or of the conn
// under it when the accepted conn is a wrapper known to write to it
// unchanged: netutil.LimitListener's, so NewListener(netutil.LimitListener(ln,
// n), s) sends with s (and its conns keep CloseRead and CloseWrite). A
// wrapper of your own can say so by implementing syscall.Conn with the
// socket's SyscallConn. Conns that expose no descriptor (a listener that
// already speaks TLS, for instance) are returned unchanged; the first such
// conn that is not a *tls.Conn is logged, once per listener, with the
// Sender's Logger (Config.Logger). TLS is not in
// scope: a *tls.Conn has no ReadFrom and encrypts into its own buffers,
// which is safe already, so wrapping the TCP listener under tls.NewListener
// gains nothing.
//
// What goes around the Sender, copied through a buffer (safe, without zero
// copy), and what to do. The conn counts what it sees in Stats.Bypassed;
// what net/http alone copies unseen is counted by ServeContent, and by
// Handler around any other handler that serves files (both with
// ConnContext on the http.Server):
//
//   - A listener wrapper around NewListener's: netutil.LimitListener(
//     NewListener(ln, s), n) hides the conn's ReadFrom from net/http, as
//     does any conn type that embeds the net.Conn without a ReadFrom of its
//     own (BypassWrappedConn). Wrap the other way round.
//   - Middleware whose ResponseWriter hides ReadFrom: give it a ReadFrom
//     that calls the wrapped writer's, or an Unwrap method: ServeContent,
//     and Handler inside the middleware, find the ReadFrom under it and
//     send with s (else count BypassWriter).
//   - Readers that hide the file's descriptor (http.FileServerFS,
//     http.FS, os.DirFS behind them, embed.FS): counted as
//     BypassNoDescriptor, by the conn itself. Use
//     http.FileServer(http.Dir(dir)), or open the file (an *os.Root) and
//     call ServeContent.
//   - HTTP/2 (h2c) frames bodies through buffers (BypassHTTP2); serve
//     HTTP/1.1 where the Sender should send.
//
// With ServeContent (and ConnContext on the http.Server), a conn also holds
// the response head that net/http writes before the file, and sends it with
// the file, in the same send.
//
// If s is nil, file bodies are copied with Write: safe, without Sender.
// Closing s makes later sends fail with an error matching ErrClosed.
func NewListener(ln net.Listener, s *Sender) net.Listener {
	return &listener{Listener: ln, s: s}
}

type listener struct {
	net.Listener
	s      *Sender
	warned sync.Once // of an accepted conn without a socket
}

// Accept waits for the next connection and wraps it.
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	var p httpconn.Policy
	if l.s != nil {
		p = connPolicy{l.s}
	}
	w := httpconn.New(c, p)
	if w == c && l.s != nil {
		if _, isTLS := c.(*tls.Conn); !isTLS {
			l.warned.Do(func() {
				l.s.logger().Warn("sendfile2: NewListener: the accepted conns expose no socket: their file bodies do not go through the Sender",
					"conn", fmt.Sprintf("%T", c))
			})
		}
	}
	return w, nil
}

// connPolicy is what a conn of NewListener asks of its Sender.
type connPolicy struct{ s *Sender }

// Context ends the conn's sends when the Sender closes: once per conn, not
// at every send (see sendChecked).
func (p connPolicy) Context(life context.Context) (context.Context, func()) {
	return p.s.sendContext(life)
}

func (p connPolicy) Send(ctx context.Context, rc syscall.RawConn, sock *engine.Socket, hdr []byte, src *httpconn.Source) (int64, error) {
	return p.s.sendChecked(ctx, rc, sock, hdr, src)
}

func (p connPolicy) HiddenFile() { p.s.bypass(BypassNoDescriptor) }

// countBypass counts a file body that went around c's Sender for reason.
func countBypass(c *httpconn.Conn, reason Bypass) {
	if p, ok := c.Policy().(connPolicy); ok {
		p.s.bypass(reason)
	}
}
