package sendfile2

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

const (
	// replyTimeout bounds the write of a response on a hijacked conn, whose
	// client may have stopped reading.
	replyTimeout = 10 * time.Second
	// After a body that was not read to its end, what Reply drains before
	// it closes a hijacked conn, at most (see closeUnread).
	lingerTimeout = time.Second
	lingerBytes   = 1 << 20
)

// BodyOptions configure ReceiveBody.
type BodyOptions struct {
	// MaxSize is the largest body ReceiveBody accepts, in bytes: a larger
	// Content-Length is refused before anything is read, a chunked body
	// when it passes it; the error is an *http.MaxBytesError. 0 sets no
	// limit; a negative MaxSize accepts empty bodies only.
	MaxSize int64
	// ReceiveContext, when set, derives the context under which Receive
	// reads the body from a hijacked conn, and returns the function that
	// releases it, called when Receive returns. Receive observes no deadline of the conn: a server ends
	// there a body whose client stalls (an idle timeout that watches the
	// socket, a deadline). Bodies read through net/http observe the
	// server's read deadlines instead.
	ReceiveContext func(ctx context.Context, conn net.Conn) (_ context.Context, done func())
}

// Body is a request body that ReceiveBody received, or tried to.
type Body struct {
	// Size is the number of bytes of the body written to the file, from
	// offset 0.
	Size int64
	// Hijacked reports that ReceiveBody took the conn from net/http and
	// received with the Sender: Reply then writes the response on it.
	Hijacked bool

	w        http.ResponseWriter
	conn     net.Conn
	header   http.Header // of the response when the conn was hijacked
	complete bool        // the body was read to its end
}

// ReceiveBody writes the body of the request r to dst from offset 0, and
// returns it with the number of bytes written. A handler calls it for an
// upload (PUT, POST), then answers with Body.Reply, whatever ReceiveBody
// returned: the status is the handler's to choose.
//
// A body with a Content-Length on an HTTP/1 conn is received with s's
// Receive: ReceiveBody hijacks the conn once net/http has read the request
// head, answers "100 Continue" if the client waits for it, writes the bytes
// of the body that net/http has already buffered, then receives the rest
// with Receive (URing receives into s's registered buffers and writes with
// IORING_OP_WRITE_FIXED). The request's context does not end once the conn
// is hijacked: ctx must, when the server stops (with Receive, the peer
// closing or failing ends the read too). A chunked body, one on HTTP/2
// (which cannot hijack), or a conn whose hijacking fails is read through
// net/http (r.Body) and written with dst's Write, from offset 0.
//
// The error is that of reading or writing: io.ErrUnexpectedEOF or a
// socket's error for a body cut short, an *os.PathError or an errno (ENOSPC,
// EIO) for a file that could not be written, an *http.MaxBytesError for a
// body over opt.MaxSize, an error matching ErrClosed when s was closed, or
// context.Cause(ctx) (or the cause of opt.ReceiveContext's context).
// Nothing of dst past Size is written.
func (s *Sender) ReceiveBody(ctx context.Context, w http.ResponseWriter, r *http.Request, dst *os.File, opt *BodyOptions) (*Body, error) {
	if opt == nil {
		opt = &BodyOptions{}
	}
	b := &Body{w: w}
	limit := max(0, opt.MaxSize)
	if opt.MaxSize != 0 && r.ContentLength > limit {
		return b, &http.MaxBytesError{Limit: limit}
	}
	if r.ContentLength > 0 {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err == nil {
			b.Hijacked, b.conn, b.header = true, conn, w.Header().Clone()
			err := s.receiveHijacked(ctx, b, r, brw.Reader, dst, opt)
			return b, err
		}
		// Not HTTP/1 (HTTP/2 cannot hijack): read the body through net/http.
	}
	var body io.Reader = r.Body
	if opt.MaxSize != 0 {
		body = http.MaxBytesReader(w, r.Body, limit)
	}
	n, err := io.Copy(dst, body)
	b.Size, b.complete = n, err == nil
	return b, err
}

// receiveHijacked reads the body of r, of r.ContentLength bytes, from the
// hijacked conn into dst: the bytes br holds already, then the rest with
// Receive.
func (s *Sender) receiveHijacked(ctx context.Context, b *Body, r *http.Request, br *bufio.Reader, dst *os.File, opt *BodyOptions) error {
	size := r.ContentLength
	var err error
	if expectsContinue(r) {
		// net/http would send it at the body's first read; we read the
		// socket ourselves.
		b.conn.SetWriteDeadline(time.Now().Add(replyTimeout))
		_, err = io.WriteString(b.conn, "HTTP/1.1 100 Continue\r\n\r\n")
	}
	var n int64
	if err == nil {
		// The start of the body, which net/http read along with the head.
		p, _ := br.Peek(int(min(int64(br.Buffered()), size)))
		var k int
		k, err = dst.WriteAt(p, 0)
		n = int64(k)
	}
	if err == nil && n < size {
		var k int64
		if sc, ok := b.conn.(syscall.Conn); ok {
			rctx, done := ctx, func() {}
			if opt.ReceiveContext != nil {
				rctx, done = opt.ReceiveContext(ctx, b.conn)
			}
			k, err = s.Receive(rctx, sc, dst, n, size-n)
			done()
		} else { // a conn without a descriptor: copy
			k, err = io.Copy(io.NewOffsetWriter(dst, n), io.LimitReader(b.conn, size-n))
			if err == nil && k < size-n {
				err = io.ErrUnexpectedEOF
			}
		}
		n += k
	}
	b.Size, b.complete = n, err == nil
	return err
}

// expectsContinue reports whether the client waits for "100 Continue"
// before it sends the body, as net/http decides it.
func expectsContinue(r *http.Request) bool {
	if !r.ProtoAtLeast(1, 1) {
		return false
	}
	for _, v := range r.Header.Values("Expect") {
		for tok := range strings.SplitSeq(v, ",") {
			// Optional whitespace around list elements is spaces and tabs
			// only (RFC 9110, section 5.6.1).
			if strings.EqualFold(strings.Trim(tok, " \t"), "100-continue") {
				return true
			}
		}
	}
	return false
}

// Reply answers the request whose body b is, with code and the header
// fields h (nil for none), and no body but, for an error status (400 and
// above), the status text. On a conn that ReceiveBody did not hijack, it
// sets h in the ResponseWriter's header and calls WriteHeader (http.Error
// for an error). On a hijacked conn it writes the response itself, with a
// Date and "Connection: close" (and no Content-Length for 204), within 10
// s, with the fields that w's header held at the hijack (set by the
// handler or a middleware before ReceiveBody) and h's, but those it writes
// itself, and closes the conn: after a body that was not read to its end, it
// shuts down the sending side first and drains what the client still sends
// (at most 1 MiB, for 1 s), so that the client reads the response instead
// of a connection reset.
func (b *Body) Reply(code int, h http.Header) error {
	if !b.Hijacked {
		for k, v := range h {
			b.w.Header()[k] = v
		}
		if code >= 400 {
			http.Error(b.w, http.StatusText(code), code)
		} else {
			b.w.WriteHeader(code)
		}
		return nil
	}
	hdr := b.header
	for k, v := range h {
		hdr[k] = v
	}
	err := reply(b.conn, code, hdr)
	if b.complete {
		if cerr := b.conn.Close(); err == nil {
			err = cerr
		}
	} else {
		closeUnread(b.conn)
	}
	return err
}

// reply writes a response without a body (or with its status text for an
// error) on a hijacked conn, which closes after it, with the fields of h but
// those it writes itself. 204 carries no Content-Length (RFC 9110 section
// 8.6).
func reply(conn net.Conn, code int, h http.Header) error {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nDate: %s\r\n", code, http.StatusText(code), time.Now().UTC().Format(http.TimeFormat))
	h.WriteSubset(&b, replyOwn)
	body := ""
	if code >= 400 {
		body = http.StatusText(code) + "\n"
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n")
	}
	if code != http.StatusNoContent {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	b.WriteString(body)
	conn.SetWriteDeadline(time.Now().Add(replyTimeout))
	_, err := io.WriteString(conn, b.String())
	return err
}

// replyOwn are the header fields that reply writes itself, or that a
// response without a body must not carry.
var replyOwn = map[string]bool{
	"Connection": true, "Content-Length": true, "Content-Type": true, "Date": true,
	"Transfer-Encoding": true, "X-Content-Type-Options": true,
}

// closeUnread closes a hijacked conn whose request body may not have been
// read to its end. A socket closed with unread bytes resets the connection,
// which can destroy the response before the client reads it (net/http's
// closeWriteAndWait avoids the same): shut down the sending side first, then
// drain what the client still sends, for a bounded time and size.
func closeUnread(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		conn.SetReadDeadline(time.Now().Add(lingerTimeout))
		io.CopyN(io.Discard, conn, lingerBytes)
	}
	conn.Close()
}
