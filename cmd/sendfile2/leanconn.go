package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"sync/atomic"
	"time"
)

// leanConn is a connection on the lean path: its read buffer, the request
// being answered, and the buffers its responses are written in, all reused
// from one request to the next.
type leanConn struct {
	l        *leanServer
	c        *trackedConn
	buf      []byte // buf[r:w]: read, not yet answered
	r, w     int
	req      leanRequest
	accepted time.Time
	state    atomic.Int32 // connReading, connActive or connClosed
	out      []byte       // the response head (and a short body)
	vals     []byte       // the values of the head's slots
	sniff    []byte       // 512 bytes, for a file whose name gives no type
	etag     []byte       // the file's
	closing  bool         // the response says Connection: close (shutdown began)
	modified httpTime     // the Last-Modified of the last file answered
	headerBy time.Time    // the limit set for the header being read, if any
	sr       io.SectionReader
	lb       leanBody // the body, with its stat (see body)
}

// What a lean conn is doing; shutdown closes it only while it reads.
const (
	connReading = iota // waiting for a request, or reading one
	connActive         // answering one
	connClosed         // closed by shutdown
)

// What respond and readRequest return besides parseLean's outcomes.
const (
	leanClosed = iota + leanHandOff + 1 // the conn closed, failed or timed out: close it
	leanKeep                            // answered: read the next request
)

// closeIfIdle closes lc if it waits for a request (for shutdown).
func (lc *leanConn) closeIfIdle() {
	if lc.state.CompareAndSwap(connReading, connClosed) {
		lc.c.Close()
	}
}

// serve answers lc's requests until one goes to net/http, or the conn
// closes.
func (lc *leanConn) serve() {
	defer lc.l.wg.Done()
	defer lc.l.forget(lc)
	for first := true; ; first = false {
		next := lc.readRequest(first)
		if next == leanOK {
			if !lc.state.CompareAndSwap(connReading, connActive) {
				next = leanClosed
			} else {
				lc.l.conns.connState(lc.c, http.StateActive)
				next = lc.respond()
			}
		}
		switch next {
		case leanHandOff:
			if !lc.l.handOff(lc.c, lc.buf[lc.r:lc.w], lc.headerBy) {
				lc.close()
			}
			return
		case leanClosed:
			lc.close()
			return
		}
		lc.r += lc.req.size
		lc.l.conns.connState(lc.c, http.StateIdle)
		lc.state.Store(connReading)
		if lc.l.shutting.Load() {
			lc.close()
			return
		}
	}
}

func (lc *leanConn) close() {
	lc.c.Close()
	lc.l.metrics.connState(lc.c, http.StateClosed)
}

// readRequest reads until buf holds a whole request header, and returns
// what parseLean made of it, or leanClosed. It applies net/http's limits:
// the first request's header must come within --read-header-timeout of
// the accept; a next one's first byte within --idle-timeout, and its
// header within --read-header-timeout of that.
func (lc *leanConn) readRequest(first bool) int {
	l := lc.l
	lc.headerBy = time.Time{} // none yet for a next request: it may come whole
	if lc.r == lc.w {
		lc.r, lc.w = 0, 0
		if first {
			lc.headerBy = lc.accepted.Add(l.readHeaderTimeout)
			lc.c.SetReadDeadline(lc.headerBy)
		} else {
			lc.c.SetReadDeadline(time.Now().Add(l.idleTimeout))
		}
		if lc.fill() != nil {
			return leanClosed // an idle conn closed or timed out, as net/http closes it
		}
	}
	timed := first
	for {
		switch parseLean(lc.buf[lc.r:lc.w], l.refuse, &lc.req) {
		case leanOK:
			return leanOK
		case leanHandOff:
			// net/http waits for 4 bytes of a next request before it
			// reads it, and closes the conn if they never come.
			if first || lc.w-lc.r >= 4 {
				return leanHandOff
			}
		}
		if !timed {
			lc.headerBy = time.Now().Add(l.readHeaderTimeout)
			lc.c.SetReadDeadline(lc.headerBy)
			timed = true
		}
		if lc.w == len(lc.buf) {
			if lc.r == 0 {
				return leanHandOff // too large for the lean path
			}
			lc.w = copy(lc.buf, lc.buf[lc.r:lc.w])
			lc.r = 0
		}
		if err := lc.fill(); err != nil {
			// net/http answers a header cut short (400), but for a
			// next request of fewer than 4 bytes: it closes then.
			if errors.Is(err, io.EOF) && (first || lc.w-lc.r >= 4) {
				return leanHandOff
			}
			return leanClosed
		}
	}
}

// fill reads once into buf: nil if bytes came.
func (lc *leanConn) fill() error {
	n, err := lc.c.Read(lc.buf[lc.w:])
	lc.w += n
	if n > 0 {
		return nil
	}
	return cmp.Or(err, io.ErrNoProgress)
}

// respond answers the request in lc.req as fileHandler would, counts and
// logs it, and returns leanKeep, leanClosed (the response failed or was
// cut short), or leanHandOff for a directory to list (--browse).
func (lc *leanConn) respond() int {
	l := lc.l
	l.handlers.Add(1)
	defer l.handlers.Done()
	e := requestLog{method: http.MethodGet, start: time.Now()}
	if lc.req.head {
		e.method = http.MethodHead
	}
	// Once shutdown began, the response is the conn's last, and says so,
	// as net/http's does with keep-alives disabled.
	lc.closing = l.shutting.Load()
	upath := decodePath(lc.req.path)
	res := l.files.resolve(upath)
	var next int
	switch {
	case res.list != "":
		return leanHandOff
	case res.f != nil && lc.encoded(res.name):
		res.f.Close()
		return leanHandOff // net/http sends the encoded file, chunked
	case res.notFound:
		next = lc.fail(&e, http.StatusNotFound, "404 page not found\n")
	case res.err != nil:
		code := errorCode(res.err)
		next = lc.fail(&e, code, http.StatusText(code)+"\n")
	case res.redirect != "":
		next = lc.moved(&e, res.redirect)
	default:
		next = lc.file(&e, res)
	}
	if l.acct.logs(e.short()) {
		e.path, e.remote, e.proto = upath, lc.c.peer, "HTTP/1.1"
		e.userAgent, e.referer = string(lc.req.userAgent), string(lc.req.referer)
	}
	l.acct.finish(context.Background(), e)
	return next
}

// fail answers as http.Error(code, body) does.
func (lc *leanConn) fail(e *requestLog, code int, body string) int {
	var none headValues
	lc.out = writeHead(lc.out[:0], code, lc.l.head.fail, &none, int64(len(body)), lc.closing)
	if !lc.req.head {
		lc.out = append(lc.out, body...)
	}
	// A HEAD's body is counted as net/http's Write counts it: taken, dropped.
	e.status, e.bytes = code, int64(len(body))
	return lc.write()
}

// moved answers as redirect does: 301 to target, with the query.
func (lc *leanConn) moved(e *requestLog, target string) int {
	var vals headValues
	lc.vals = append(lc.vals[:0], target...)
	if len(lc.req.query) > 0 {
		lc.vals = append(append(lc.vals, '?'), lc.req.query...)
	}
	vals[slotLocation] = headerValue(lc.vals)
	length := int64(0) // net/http's, for a handler that wrote nothing
	if lc.req.head {
		length = -1
	}
	lc.out = writeHead(lc.out[:0], http.StatusMovedPermanently, lc.l.head.moved, &vals, length, lc.closing)
	e.status = http.StatusMovedPermanently
	return lc.write()
}

// headerValue is v as net/http writes a header value: CR and LF made
// spaces (a decoded path may hold them), then spaces and tabs trimmed.
func headerValue(v []byte) []byte {
	for i, c := range v {
		if c == '\r' || c == '\n' {
			v[i] = ' '
		}
	}
	return trimOWS(v)
}

// write writes lc.out.
func (lc *leanConn) write() int {
	if _, err := lc.c.Write(lc.out); err != nil {
		return leanClosed
	}
	return leanKeep
}

// headHolder is what the conns of sendfile2.NewListener offer for
// sendfile2.ServeContent: the next Write is held, and goes out with the
// file of the ReadFrom that follows, in the same send.
type headHolder interface {
	HoldWrite() bool
	Release() error
}

// file answers 200 with res's file, as fileHandler and http.ServeContent
// do: a HEAD with the head alone, a GET with the file through the Sender,
// its head in the same send.
func (lc *leanConn) file(e *requestLog, res resolved) int {
	defer res.f.Close()
	lc.etag = appendETag(lc.etag[:0], res.fi)
	if lc.notModified(res.fi) {
		var vals headValues // a 304 has the ETag alone
		vals[slotETag] = lc.etag
		lc.out = writeHead(lc.out[:0], http.StatusNotModified, lc.l.head.notModified, &vals, -1, lc.closing)
		e.status = http.StatusNotModified
		return lc.write()
	}
	size := res.fi.Size()
	lc.sr = *io.NewSectionReader(res.f.File, 0, size)
	ctype := mime.TypeByExtension(path.Ext(res.name))
	if ctype == "" { // sniffed, as http.ServeContent does
		if lc.sniff == nil {
			lc.sniff = make([]byte, 512)
		}
		n, _ := io.ReadFull(&lc.sr, lc.sniff)
		ctype = http.DetectContentType(lc.sniff[:n])
		lc.sr.Seek(0, io.SeekStart)
	}
	var vals headValues
	vals, lc.vals = fileValues(lc.vals[:0], lc.etag, res.fi, ctype, &lc.modified)
	lc.out = writeHead(lc.out[:0], http.StatusOK, lc.l.head.file, &vals, -1, lc.closing)
	e.status, e.announced = http.StatusOK, size
	if lc.req.head || size == 0 {
		return lc.write()
	}
	if h, ok := lc.c.Conn.(headHolder); ok && h.HoldWrite() {
		defer h.Release()
	}
	if _, err := lc.c.Write(lc.out); err != nil {
		return leanClosed
	}
	n, err := lc.c.ReadFrom(lc.body(res))
	e.bytes, e.err = n, err
	if err != nil || n < size {
		return leanClosed // as net/http closes a response cut short
	}
	return leanKeep
}

// encoded reports whether --precompressed would answer the request for
// name with one of its encoded files: one of the codings the request's
// Accept-Encoding accepts has a file that precompressed would open. A
// request without Accept-Encoding, or for a file with none, gets the file
// itself, which the lean path sends as precompressed would (Vary included).
func (lc *leanConn) encoded(name string) bool {
	ae := lc.req.acceptEncoding
	if ae == nil {
		return false
	}
	h := lc.l.files
	for _, c := range acceptable([]string{string(ae)}, h.codings) {
		if ef, efi, err := h.open(name + c.ext); err == nil {
			ef.Close()
			if efi.Mode().IsRegular() {
				return true
			}
		}
	}
	return false
}

// notModified reports whether the request's conditions make the answer a
// 304, as http.ServeContent's checkPreconditions decides it for a GET or
// HEAD without If-Match or If-Unmodified-Since (those go to net/http): an
// If-None-Match that names the file's ETag (weak comparison) or is "*";
// without If-None-Match, an If-Modified-Since not before the modification
// time, in whole seconds. lc.etag is fi's ETag.
func (lc *leanConn) notModified(fi fs.FileInfo) bool {
	if inm := lc.req.ifNoneMatch; inm != nil {
		return etagListMatches(inm, lc.etag)
	}
	ims := lc.req.ifModifiedSince
	mt := fi.ModTime()
	if ims == nil || mt.IsZero() || mt.Equal(time.Unix(0, 0)) {
		return false
	}
	t, err := http.ParseTime(string(ims))
	return err == nil && mt.Truncate(time.Second).Compare(t) <= 0
}

// etagListMatches reports whether an If-None-Match value matches etag as
// net/http's checkIfNoneMatch reads it: "*", or an entity tag of the
// comma-separated list that equals etag but for a "W/" on either; its scan
// stops at the first element that is not an entity tag.
func etagListMatches(list, etag []byte) bool {
	for {
		list = trimOWS(list)
		switch {
		case len(list) == 0:
			return false
		case list[0] == ',':
			list = list[1:]
			continue
		case list[0] == '*':
			return true
		}
		tag, rest := scanETag(list)
		if tag == nil {
			return false
		}
		if bytes.Equal(bytes.TrimPrefix(tag, []byte("W/")), bytes.TrimPrefix(etag, []byte("W/"))) {
			return true
		}
		list = rest
	}
}

// scanETag splits the entity tag (W/"x" or "x") at the start of s from
// what follows, as net/http's scanETag does; nil if s starts with none.
func scanETag(s []byte) (tag, rest []byte) {
	start := 0
	if bytes.HasPrefix(s, []byte("W/")) {
		start = 2
	}
	if len(s[start:]) < 2 || s[start] != '"' {
		return nil, nil
	}
	for i := start + 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == 0x21 || c >= 0x23 && c <= 0x7e || c >= 0x80:
		case c == '"':
			return s[:i+1], s[i+1:]
		default:
			return nil, nil
		}
	}
	return nil, nil
}

// leanable reports whether the lean path may serve o's file server: plain
// HTTP, and not every request behind a password.
func leanable(o serveOptions) bool {
	return o.lean && o.http.tlsCert == "" && !(o.http.htpasswd != "" && o.http.authAll)
}
