package main

import (
	"bytes"

	"golang.org/x/net/http/httpguts"
)

// leanRequest is a request that the lean path (lean.go) serves itself: a
// GET or HEAD of HTTP/1.1, kept alive, with no body, no range, no encoded
// file to send (--precompressed), no credentials, and no condition but If-None-Match and
// If-Modified-Since. Its byte slices point into the
// conn's buffer, valid until the next read.
type leanRequest struct {
	head      bool   // HEAD, else GET
	path      []byte // the target's path, still percent-encoded
	query     []byte // after "?", without it; nil if none
	size      int    // of the request line and header, final CRLF included
	userAgent []byte // the first of each, for the access log
	referer   []byte
	// The first of each, as net/http's Header.Get finds it; nil if none.
	ifNoneMatch, ifModifiedSince []byte
	// With --precompressed, the one Accept-Encoding; nil if none.
	acceptEncoding []byte
}

// leanRefuse says which request headers send a request to net/http: those
// that would change the response the lean path gives.
type leanRefuse struct {
	acceptEncoding bool // --precompressed is on: a second Accept-Encoding goes to net/http
	authorization  bool // --htpasswd is on: net/http checks the credentials
}

// Outcomes of parseLean.
const (
	leanMore    = iota // the header is not complete: read more
	leanOK             // a request the lean path serves
	leanHandOff        // anything else: net/http answers it
)

// parseLean parses the request at the start of b. It accepts only what it
// can answer exactly as net/http and fileHandler would, in a strict form
// (CRLF line ends, one space between the request line's parts, header
// names that are tokens, values without control characters, exactly one
// valid Host), and returns leanHandOff for everything else, as soon as it
// can tell: net/http, the reference, then parses the request again and
// answers it, with 400 if it is malformed. A header that net/http would
// read as two requests, or as one with a body (Content-Length,
// Transfer-Encoding), is always handed off: the two parsers never disagree
// on where a request ends, since the lean path ends none but those it
// serves, whose framing has no body.
func parseLean(b []byte, refuse leanRefuse, req *leanRequest) int {
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		// The lines complete so far are judged now: one that net/http
		// would refuse is handed off at once, as net/http would answer it
		// at once, not left waiting for the rest of the header.
		if !strictLines(b) {
			return leanHandOff
		}
		if last := bytes.LastIndex(b, crlf); last >= 0 {
			var partial leanRequest
			if _, ok := parseLines(b[:last+2], refuse, &partial); !ok {
				return leanHandOff
			}
		}
		return leanMore
	}
	*req = leanRequest{size: end + 4}
	hosts, ok := parseLines(b[:end+2], refuse, req)
	if !ok || hosts != 1 {
		return leanHandOff
	}
	return leanOK
}

// parseLines parses hdr, the request line and the header lines that follow
// it, each ending in CRLF, into req. It reports how many Host lines it saw,
// and false for anything the lean path does not serve.
func parseLines(hdr []byte, refuse leanRefuse, req *leanRequest) (hosts int, ok bool) {
	eol := bytes.Index(hdr, crlf)
	if !parseRequestLine(hdr[:eol], req) {
		return 0, false
	}
	for rest := hdr[eol+2:]; len(rest) > 0; {
		i := bytes.Index(rest, crlf)
		line := rest[:i]
		rest = rest[i+2:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !token(line[:colon]) {
			return 0, false
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !fieldValue(value) {
			return 0, false
		}
		switch leanHeader(name, refuse) {
		case headerRefused:
			return 0, false
		case headerHost:
			if hosts++; hosts > 1 || !httpguts.ValidHostHeader(string(value)) {
				return 0, false
			}
		case headerConnection:
			if !bytes.EqualFold(value, []byte("keep-alive")) {
				return 0, false // close, upgrade, or a list
			}
		case headerUserAgent:
			if req.userAgent == nil {
				req.userAgent = value[:len(value):len(value)]
			}
		case headerReferer:
			if req.referer == nil {
				req.referer = value[:len(value):len(value)]
			}
		case headerIfNoneMatch:
			if req.ifNoneMatch == nil {
				req.ifNoneMatch = value[:len(value):len(value)]
			}
		case headerAcceptEncoding:
			if req.acceptEncoding != nil {
				return 0, false // net/http joins the lines: not ours to judge
			}
			req.acceptEncoding = value[:len(value):len(value)]
		case headerIfModifiedSince:
			if req.ifModifiedSince == nil {
				req.ifModifiedSince = value[:len(value):len(value)]
			}
		}
	}
	return hosts, true
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

// strictLines reports whether b, an incomplete header, may still become one
// that parseLean accepts: every LF follows a CR, and no byte is one that no
// header may hold. A header that fails is handed off at once, rather than
// left waiting for a CRLF CRLF that may never come.
func strictLines(b []byte) bool {
	for i, c := range b {
		switch {
		case c == '\n':
			if i == 0 || b[i-1] != '\r' {
				return false
			}
		case c == '\r', c == '\t':
		case c < ' ', c == 0x7f:
			return false
		}
	}
	return true
}

// parseRequestLine parses "GET /path?query HTTP/1.1", or HEAD.
func parseRequestLine(line []byte, req *leanRequest) bool {
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		line = line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		req.head = true
		line = line[5:]
	default:
		return false
	}
	target, ok := bytes.CutSuffix(line, []byte(" HTTP/1.1"))
	// Origin form only; "//" would start an authority in other parsers.
	if !ok || len(target) == 0 || target[0] != '/' || bytes.HasPrefix(target, []byte("//")) {
		return false
	}
	p, q, hasQuery := bytes.Cut(target, []byte("?"))
	if !targetBytes(p, false) || !targetBytes(q, true) {
		return false
	}
	req.path = p
	if hasQuery {
		req.query = q[:len(q):len(q)]
	}
	return true
}

// targetBytes reports whether b holds only the characters of a path (or,
// with query, of a query) by RFC 3986, each "%" followed by two hex digits.
func targetBytes(b []byte, query bool) bool {
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '%':
			if i+2 >= len(b) || unhex(b[i+1]) < 0 || unhex(b[i+2]) < 0 {
				return false
			}
			i += 2
		case c == '?':
			if !query {
				return false
			}
		case !pchar[c]:
			return false
		}
	}
	return true
}

// pchar holds the characters a path segment may hold as they are, and "/".
var pchar = func() (t [256]bool) {
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/") {
		t[c] = true
	}
	return t
}()

// tchar holds the characters of a token (RFC 9110 section 5.6.2).
var tchar = func() (t [256]bool) {
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~") {
		t[c] = true
	}
	return t
}()

func token(b []byte) bool {
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return len(b) > 0
}

// fieldValue reports whether a trimmed header value holds no control
// character but HTAB.
func fieldValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// decodePath percent-decodes p, which targetBytes accepted, as net/url
// decodes a request's path.
func decodePath(p []byte) string {
	if bytes.IndexByte(p, '%') < 0 {
		return string(p)
	}
	out := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '%' {
			out = append(out, byte(unhex(p[i+1])<<4|unhex(p[i+2])))
			i += 2
			continue
		}
		out = append(out, p[i])
	}
	return string(out)
}

// What a request header is to the lean path.
const (
	headerOther = iota // no bearing on the response
	headerRefused
	headerHost
	headerConnection
	headerUserAgent
	headerReferer
	headerIfNoneMatch
	headerIfModifiedSince
	headerAcceptEncoding
)

// leanHeader says what the header name is to the lean path. Every header
// that net/http or fileHandler reads is refused (handed off) or handled
// here: framing, conditions but If-None-Match and If-Modified-Since, ranges, upgrades and, when their features are
// on, codings and credentials.
func leanHeader(name []byte, refuse leanRefuse) int {
	switch len(name) {
	case 4:
		if bytes.EqualFold(name, []byte("host")) {
			return headerHost
		}
	case 10:
		switch {
		case bytes.EqualFold(name, []byte("connection")):
			return headerConnection
		case bytes.EqualFold(name, []byte("user-agent")):
			return headerUserAgent
		}
	case 7:
		if bytes.EqualFold(name, []byte("referer")) {
			return headerReferer
		}
	case 13:
		if bytes.EqualFold(name, []byte("if-none-match")) {
			return headerIfNoneMatch
		}
	case 17:
		if bytes.EqualFold(name, []byte("if-modified-since")) {
			return headerIfModifiedSince
		}
	}
	for _, r := range refusedHeaders {
		if bytes.EqualFold(name, r) {
			return headerRefused
		}
	}
	switch {
	case refuse.acceptEncoding && bytes.EqualFold(name, []byte("accept-encoding")):
		return headerAcceptEncoding
	case refuse.authorization && bytes.EqualFold(name, []byte("authorization")):
		return headerRefused
	}
	return headerOther
}

// refusedHeaders are the request headers that always send a request to
// net/http: a body's framing, an expectation, an upgrade (HTTP/2 too), a
// range, a condition that may answer 412 or applies to a range, and what a
// proxy or HTTP/1.0 client may send to keep a connection.
var refusedHeaders = [][]byte{
	[]byte("content-length"), []byte("transfer-encoding"), []byte("expect"),
	[]byte("upgrade"), []byte("http2-settings"), []byte("te"), []byte("trailer"),
	[]byte("range"), []byte("if-range"), []byte("if-match"), []byte("if-unmodified-since"),
	[]byte("keep-alive"), []byte("proxy-connection"),
}
