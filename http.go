package sendfile2

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/sendfile2/sendfile2/internal/httpconn"
)

type connKey struct{}

// connRef is what ConnContext puts in a request's context: the conn of
// NewListener that carries it, and whether a wrapper hides that conn from
// net/http.
type connRef struct {
	c       *httpconn.Conn
	wrapped bool
}

// ConnContext is a function for http.Server's ConnContext field: it puts the
// conn that NewListener accepted in the context of the requests it carries,
// for ServeContent and Handler, also when a listener wrapper around
// NewListener's wraps it (netutil.LimitListener, or any conn type that
// embeds the net.Conn it wraps). Other conns leave ctx as it is. A
// ConnContext of your own can call it.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if h, wrapped := httpconn.Find(c); h != nil {
		return context.WithValue(ctx, connKey{}, connRef{h, wrapped})
	}
	return ctx
}

// ServeContent is http.ServeContent, which it calls, with one send fewer per
// response: when r came on a conn of NewListener to a server whose
// ConnContext is ConnContext, the response head that net/http writes before
// it hands the file to the conn's ReadFrom is held by the conn and goes out
// with the file, in the same send or io_uring submission. That is one syscall
// and one small TCP segment fewer per response, as nginx's tcp_nopush gives;
// the guarantee is unchanged. The head is flushed before the body, so that
// net/http hands the whole file to ReadFrom, where it would first copy 512
// bytes of it through its buffer.
//
// content is a file as the conn's ReadFrom recognises it (an *os.File, or an
// *io.SectionReader of one, which spares ServeContent's seeks a syscall each).
// Anything the conn writes during the call that no file follows (a 304, a
// range error, a body ReadFrom copies) goes out at its next write, or when
// ServeContent returns. Elsewhere ServeContent is http.ServeContent.
//
// When w has no ReadFrom (a middleware's writer), ServeContent looks for one
// down the chain of Unwrap methods that http.ResponseController follows, and
// hands the body to it, so that net/http still passes the file to the conn:
// the middleware sees the status and the headers, not the body's bytes.
// Where that chain has no ReadFrom, or the response has a Content-Encoding
// (the middleware may be compressing the body), the body goes through w,
// copied, and Stats.Bypassed counts it, as it counts a file served over
// HTTP/2 or on a conn that a wrapper hides from net/http.
func ServeContent(w http.ResponseWriter, r *http.Request, name string, modtime time.Time, content io.ReadSeeker) {
	w, c := bodyRoute(w, r)
	if c != nil && c.HoldWrite() {
		defer c.Release()
		if rf, ok := w.(io.ReaderFrom); ok {
			w = &headFirst{ResponseWriter: w, rf: rf}
		}
	}
	http.ServeContent(w, r, name, modtime, content)
}

// headFirst is the ResponseWriter that ServeContent hands to
// http.ServeContent on a conn that holds the head: before it passes the body
// to rf, it flushes the head, which the conn holds. net/http's ReadFrom then
// finds the head written and hands the whole body to the conn's ReadFrom at
// once, where it would first have copied 512 bytes of it through its buffer
// (for sniffing, which ServeContent's Content-Type makes useless): a read(2)
// and two copies fewer per response, and the Sender sends all of the file.
type headFirst struct {
	http.ResponseWriter
	rf io.ReaderFrom
}

func (h *headFirst) ReadFrom(src io.Reader) (int64, error) {
	if h.passesFile() {
		// No Flusher: the head goes out as before, with 512 bytes.
		_ = http.NewResponseController(h.ResponseWriter).Flush()
	}
	return h.rf.ReadFrom(src)
}

// passesFile reports whether rf hands a file on to the conn's ReadFrom, and
// so whether a flush of the head may precede it: not when the body is
// copied through a writer, which may compress it (a flush would end a
// compressed block early).
func (h *headFirst) passesFile() bool {
	if b, ok := h.rf.(*bodyWriter); ok {
		return b.rf != nil && !encoded(b.ResponseWriter) && !encoded(b.rf)
	}
	return !encoded(h.ResponseWriter)
}

// Unwrap lets http.ResponseController reach the ResponseWriter.
func (h *headFirst) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// Handler returns h with its file bodies kept in view of the Sender, on a
// server whose ConnContext is ConnContext. A file that h writes with
// ReadFrom (io.Copy, as http.FileServer, http.ServeFile and
// http.ServeContent write it) on a conn of NewListener, where net/http
// would copy it unseen, is sent with the conn's Sender where it can be,
// else copied and counted in Stats.Bypassed:
//
//   - under a middleware whose ResponseWriter hides ReadFrom, the file goes
//     to the first ReadFrom down the Unwrap chain and is sent with the
//     Sender (the middleware sees the status and headers, not the file's
//     bytes), once the middleware's own Flush or FlushError has passed the
//     header down (a middleware may hold the status back until its first
//     Write); without Unwrap, without a Flush of its own, or after a Write
//     through it, it counts BypassWriter, or BypassEncoded when the
//     response has a Content-Encoding;
//   - on a conn that a listener wrapper around NewListener's hides from
//     net/http, it counts BypassWrappedConn;
//   - over HTTP/2 without TLS (h2c), it counts BypassHTTP2.
//
// Put Handler around the handler that writes the files, inside any
// middleware: outside it, the file reaches Handler as plain writes, which
// it cannot tell from other bodies. A body that is not a file goes through
// the middleware's writer, as without Handler.
//
// When nothing goes around the Sender (HTTP/1.1 on a conn of NewListener
// that net/http sees, a ResponseWriter with ReadFrom), h gets net/http's
// ResponseWriter itself; otherwise one with the methods that
// http.ResponseController and older code look for (Unwrap, Flush,
// FlushError, Hijack, Push), which act on the writer it wraps. Requests on other
// conns (TLS, a listener without NewListener) go to h untouched.
func Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w, _ = bodyRoute(w, r)
		h.ServeHTTP(w, r)
	})
}

// bodyRoute returns the ResponseWriter through which a file body of the
// response to r reaches the conn of NewListener that carries r, or is
// copied and counted; and that conn, when net/http hands it the file (so
// that it may hold the response head). Requests that came on no such conn
// get w and nil.
func bodyRoute(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, *httpconn.Conn) {
	ref, _ := r.Context().Value(connKey{}).(connRef)
	c := ref.c
	switch {
	case c == nil:
		return w, nil
	case r.ProtoMajor >= 2:
		return &bodyWriter{ResponseWriter: w, c: c, reason: BypassHTTP2}, nil
	case ref.wrapped:
		return &bodyWriter{ResponseWriter: w, c: c, reason: BypassWrappedConn}, nil
	}
	if _, ok := w.(io.ReaderFrom); !ok {
		rf := readerFromUnder(w)
		reason := Bypass("")
		if rf == nil {
			reason = BypassWriter
		}
		w = &bodyWriter{ResponseWriter: w, c: c, rf: rf, reason: reason}
	}
	return w, c
}

// readerFromUnder returns the first writer down w's Unwrap chain that has
// ReadFrom, or nil.
func readerFromUnder(w http.ResponseWriter) io.ReaderFrom {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		if w = u.Unwrap(); w == nil {
			return nil
		}
		if rf, ok := w.(io.ReaderFrom); ok {
			return rf
		}
	}
}

// bodyWriter is the ResponseWriter that ServeContent and Handler hand on
// when a file body cannot reach the conn's ReadFrom through w itself: its
// ReadFrom passes a file to rf, the ReadFrom found under a middleware, or
// copies it through the ResponseWriter and counts a bypass for reason.
// Other bodies go through the ResponseWriter.
//
// A middleware may hold back what passes through it (the status, a
// Content-Encoding it decides on at its first Write, bytes it buffers), so
// the file goes around it only when nothing but the header was written
// through it, and only after the middleware's own Flush has passed that
// header down to the ReadFrom found under it: else net/http would send an
// implicit 200, or the file before the bytes written first. A middleware
// without a Flush of its own gets the file through its Write, counted as
// BypassWriter.
type bodyWriter struct {
	http.ResponseWriter
	c      *httpconn.Conn
	rf     io.ReaderFrom // nil: copy
	reason Bypass        // why it copies
	header bool          // WriteHeader went through the ResponseWriter
	wrote  bool          // Write went through the ResponseWriter
}

// WriteHeader passes the status to the ResponseWriter and remembers it.
func (b *bodyWriter) WriteHeader(code int) {
	if code >= 200 {
		b.header = true
	}
	b.ResponseWriter.WriteHeader(code)
}

// Write passes p to the ResponseWriter and remembers that it did.
func (b *bodyWriter) Write(p []byte) (int, error) {
	b.wrote = true
	return b.ResponseWriter.Write(p)
}

func (b *bodyWriter) ReadFrom(src io.Reader) (int64, error) {
	if httpconn.IsFile(src) {
		reason := b.reason
		if b.rf != nil {
			if b.around() {
				return b.rf.ReadFrom(src)
			}
			reason = BypassWriter
			if encoded(b.ResponseWriter) || encoded(b.rf) {
				reason = BypassEncoded
			}
		}
		countBypass(b.c, reason)
	}
	b.wrote = true
	return io.Copy(httpconn.WriterOnly{Writer: b.ResponseWriter}, src)
}

// around reports whether a file body may go to rf, around the
// ResponseWriter: nothing but the header went through it, a flush passed
// that header down, and no Content-Encoding was set on either side.
func (b *bodyWriter) around() bool {
	if b.wrote || encoded(b.ResponseWriter) || encoded(b.rf) {
		return false
	}
	if b.header && !flush(b.ResponseWriter) {
		return false
	}
	return !encoded(b.ResponseWriter) && !encoded(b.rf)
}

// flush flushes w with a Flush or FlushError of its own, not one found down
// its Unwrap chain: that one would pass the header under w and send net/http's
// implicit 200 if w held the status back. It reports whether w could.
func flush(w http.ResponseWriter) bool {
	switch f := w.(type) {
	case interface{ FlushError() error }:
		return f.FlushError() == nil
	case http.Flusher:
		f.Flush()
		return true
	}
	return false
}

// Unwrap lets http.ResponseController reach the ResponseWriter.
func (b *bodyWriter) Unwrap() http.ResponseWriter { return b.ResponseWriter }

// Flush flushes the ResponseWriter, as http.ResponseController does.
func (b *bodyWriter) Flush() { b.FlushError() }

// FlushError flushes the ResponseWriter, as http.ResponseController does,
// and returns its error.
func (b *bodyWriter) FlushError() error {
	return http.NewResponseController(b.ResponseWriter).Flush()
}

// Hijack takes over the connection, as http.ResponseController does.
func (b *bodyWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(b.ResponseWriter).Hijack()
}

// Push is the Push of the ResponseWriter (HTTP/2's), or
// http.ErrNotSupported.
func (b *bodyWriter) Push(target string, opts *http.PushOptions) error {
	if p, ok := b.ResponseWriter.(http.Pusher); ok {
		return p.Push(target, opts)
	}
	return http.ErrNotSupported
}

// encoded reports whether w is a ResponseWriter whose response has a
// Content-Encoding.
func encoded(w any) bool {
	rw, ok := w.(http.ResponseWriter)
	return ok && rw.Header().Get("Content-Encoding") != ""
}
