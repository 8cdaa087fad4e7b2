package upload

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

// ReceiveFunc receives count bytes from src into dst at offset, as
// sendfile2's Sender.Receive does.
type ReceiveFunc func(ctx context.Context, src syscall.Conn, dst *os.File, offset, count int64) (int64, error)

// ContextFunc derives the context of a receive from a hijacked conn, and
// returns the function that releases it.
type ContextFunc func(ctx context.Context, conn net.Conn) (context.Context, func())

// ReadBody reads the body of r, of r.ContentLength bytes, from conn,
// hijacked from net/http, into dst from offset 0: it answers "100 Continue"
// if the client waits for it, writes the bytes br holds already, then
// receives the rest with receive under the context that rctx derives (ctx
// when nil), or copies it from a conn without a descriptor. It returns the
// bytes written.
func ReadBody(ctx context.Context, conn net.Conn, r *http.Request, br *bufio.Reader, dst *os.File, receive ReceiveFunc, rctx ContextFunc) (int64, error) {
	size := r.ContentLength
	var err error
	if ExpectsContinue(r) {
		// net/http would send it at the body's first read; we read the
		// socket ourselves.
		conn.SetWriteDeadline(time.Now().Add(replyTimeout))
		_, err = io.WriteString(conn, "HTTP/1.1 100 Continue\r\n\r\n")
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
		if sc, ok := conn.(syscall.Conn); ok {
			c, done := ctx, func() {}
			if rctx != nil {
				c, done = rctx(ctx, conn)
			}
			k, err = receive(c, sc, dst, n, size-n)
			done()
		} else { // a conn without a descriptor: copy
			k, err = io.Copy(io.NewOffsetWriter(dst, n), io.LimitReader(conn, size-n))
			if err == nil && k < size-n {
				err = io.ErrUnexpectedEOF
			}
		}
		n += k
	}
	return n, err
}

// ExpectsContinue reports whether the client waits for "100 Continue"
// before it sends the body, as net/http decides it.
func ExpectsContinue(r *http.Request) bool {
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

// Reply writes a response without a body (or with its status text for an
// error) on conn, with the fields of h but those it writes itself, and
// closes conn: when the body was not read to its end (complete false),
// after shutting down the sending side and draining what the client still
// sends (see closeUnread).
func Reply(conn net.Conn, code int, h http.Header, complete bool) error {
	err := reply(conn, code, h)
	if complete {
		if cerr := conn.Close(); err == nil {
			err = cerr
		}
	} else {
		closeUnread(conn)
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
