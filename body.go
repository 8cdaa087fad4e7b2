package sendfile2

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"

	"github.com/sendfile2/sendfile2/internal/upload"
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
			b.Size, err = upload.ReadBody(ctx, conn, r, brw.Reader, dst, s.Receive, opt.ReceiveContext)
			b.complete = err == nil
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
	return upload.Reply(b.conn, code, hdr, b.complete)
}
