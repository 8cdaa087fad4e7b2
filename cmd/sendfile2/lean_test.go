package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// leanDir makes a directory with what the lean path answers for and what
// it hands off: files of known and unknown types, an empty one, a
// directory with an index, one without, an upload in progress, a
// precompressed file, a hard link.
func leanDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"a.txt":              "hello, lean\n",
		"page.html":          "<html><body>page</body></html>",
		"noext":              "plain text without a name's type\n",
		"bin":                "\x00\x01\x02binary",
		"empty":              "",
		"sub/index.html":     "<p>index</p>",
		"list/x.txt":         "x",
		"sp ace.txt":         "space",
		"z.js":               "var z = 1;",
		"z.js.gz":            "not really gzip",
		".sendfile2-upload-": "half written",
		"big.bin":            strings.Repeat("0123456789abcdef", 4096),
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(body), 0o644))
	}
	must(t, os.WriteFile(filepath.Join(dir, "linked"), []byte("two names"), 0o644))
	must(t, os.Link(filepath.Join(dir, "linked"), filepath.Join(dir, "list", "linked2")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(dir, "out")))
	must(t, os.Chtimes(filepath.Join(dir, "a.txt"), time.Unix(0, 0), time.Unix(0, 0)))
	return dir
}

// leanPair starts serve twice on dir with the options opt sets: with the
// lean path, and without it (net/http answers all). Both close a conn
// that sends nothing, no whole header, or no byte of a body, for 1s.
func leanPair(t testing.TB, dir string, opt func(*serveOptions)) (lean, plain *testServer) {
	t.Helper()
	with := func(on bool) func(*serveOptions) {
		return func(o *serveOptions) {
			o.accessLog = false
			o.idleTimeout = time.Second
			o.readHeaderTimeout = time.Second
			o.bodyTimeout = time.Second
			if opt != nil {
				opt(o)
			}
			o.lean = on
		}
	}
	return startServe(t, dir, with(true)), startServe(t, dir, with(false))
}

// rawExchange writes req on a new conn to addr and returns all that the
// server writes until it closes the conn. Without halfClose, it follows req
// with lastRequest, which makes the server close the conn once it answered
// all before (else the idle or read-header timeout closes it). With
// halfClose, it closes the conn's writing half after req. (Not with a request net/http would answer:
// net/http then ends the requests still running, and those it has yet to
// read, as it finds the end of the stream, at a time that varies.)
func rawExchange(t testing.TB, addr string, req []byte, halfClose bool) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if !halfClose {
		req = append(req[:len(req):len(req)], lastRequest...)
	}
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		c.(*net.TCPConn).CloseWrite()
	}
	out, err := io.ReadAll(c)
	if err != nil && !isReset(err) {
		t.Fatalf("read: %v", err)
	}
	return out
}

// lastRequest ends the requests of rawExchange.
const lastRequest = "GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

func isReset(err error) bool { return strings.Contains(err.Error(), "connection reset") }

var dateLine = regexp.MustCompile(`(?m)^Date: [^\r\n]*\r$`)

// sameAnswer fails t unless the two servers answer req with the same bytes
// (but the Date headers'), and returns the lean server's answer. Some
// exchanges have more than one answer on either server, by their timing
// alone: net/http reads ahead of a pipeline in a goroutine of its own, and
// a body timeout's close races the response net/http writes after it. So
// each server answers up to three times, and one answer in common passes.
func sameAnswer(t testing.TB, lean, plain *testServer, req []byte, halfClose bool) []byte {
	t.Helper()
	answer := func(ts *testServer) []byte {
		return dateLine.ReplaceAll(rawExchange(t, ts.addr, req, halfClose), []byte("Date: -\r"))
	}
	var got, want [][]byte
	for range 3 {
		got, want = append(got, answer(lean)), append(want, answer(plain))
		for _, g := range got {
			for _, w := range want {
				if bytes.Equal(g, w) {
					return g
				}
			}
		}
	}
	t.Errorf("request %q:\nlean:\n%s\nnet/http:\n%s", req, got[0], want[0])
	return got[0]
}

// leanRequests are requests that the lean path answers, or hands off: the
// first leanKeepAlive of them leave the conn open, the others may close it.
var leanRequests = []string{
	"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
	"HEAD /a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /page.html HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\nConnection: keep-alive\r\n\r\n",
	"GET /noext HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /bin HTTP/1.1\r\nHost: x\r\n\r\n",
	"HEAD /bin HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /sub HTTP/1.1\r\nHost: x\r\n\r\n",
	"HEAD /sub?q=1&r HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /sub/ HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /sub/%69ndex.html HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /list/ HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /list HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
	"HEAD /missing HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /.sendfile2-upload- HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /linked HTTP/1.1\r\nHost: x\r\n\r\n",
	"HEAD /list/linked2 HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /out HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /sub/..%2f..%2fa.txt HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /sp%20ace.txt HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /sub%0a HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /z.js HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /z.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-3\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Thu, 01 Jan 2099 00:00:00 GMT\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"0-c\"\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: W/\"0-c\"\r\n\r\n",
	"HEAD /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"x\", W/\"0-c\"\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"x\"\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: abc, \"0-c\"\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: , ,\"0-c\"\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"0-c\"\r\nIf-None-Match: \"y\"\r\n\r\n",
	"GET /page.html HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Thu, 01 Jan 2099 00:00:00 GMT\r\n\r\n",
	"GET /page.html HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
	"GET /page.html HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Friday, 06-Nov-99 08:49:37 GMT\r\n\r\n",
	"HEAD /page.html HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Fri Jan  1 00:00:00 2099\r\n\r\n",
	"GET /page.html HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: garbage\r\n\r\n",
	"GET /page.html HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"x\"\r\nIf-Modified-Since: Thu, 01 Jan 2099 00:00:00 GMT\r\n\r\n",
	"GET /noext HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\r\n",
	"GET /missing HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\r\n",
	"GET /sub HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\r\n",
	"GET /sub/ HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip, br\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nAccept-Encoding: br\r\n\r\n",
	"GET /z.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br, zstd\r\n\r\n",
	"GET /z.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip;q=0\r\n\r\n",
	"GET /z.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip;q=0.5, identity\r\n\r\n",
	"HEAD /a.txt HTTP/1.1\r\nHost: x\r\nAccept-Encoding: *\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nIf-None-Match: \"0-c\"\r\n\r\n",
	"PUT /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
	"POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	// leanKeepAlive
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nAuthorization: Basic eDp5\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x y\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost : x\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\n Folded: y\r\n\r\n",
	"GET /a.txt HTTP/1.1\nHost: x\n\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nX: \x01\r\n\r\n",
	"GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET http://x/a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET //a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a.txt#f HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a.txt HTTP/1.0\r\n\r\n",
	"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	"get /a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Long: " + strings.Repeat("y", 6000) + "\r\n\r\n",
	"GET /a.txt HTTP/1.1\r\nHost: x\r\n",
	"\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
}

// leanKeepAlive is how many of leanRequests, first, leave the conn open:
// they may be pipelined. (A server that closes a conn whose peer sent more
// than it read resets it, and the peer may lose the last answers.)
const leanKeepAlive = 56

// TestLeanSameAsNetHTTP: for each request, alone and all pipelined on one
// conn, the lean path answers with the bytes net/http answers with (Date
// aside), under the default options and with --header, --precompressed,
// --browse and --htpasswd.
func TestLeanSameAsNetHTTP(t *testing.T) {
	dir := leanDir(t)
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	must(t, os.WriteFile(htpasswd, []byte("x:"+bcryptHash(t, "y", "$2y$")+"\n"), 0o600))
	for _, tc := range []struct {
		name string
		opt  func(*serveOptions)
	}{
		{"default", nil},
		{"features", func(o *serveOptions) {
			o.http.headers = headerList{"Cache-Control: max-age=60", "Vary: Origin", "Accept-Ranges: none", "X-Content-Type-Options: x"}
			o.http.precompressed = defaultPrecompressed
			o.http.browse = true
			o.http.htpasswd = htpasswd
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lean, plain := leanPair(t, dir, tc.opt)
			for i, req := range leanRequests {
				t.Run(strconv.Itoa(i), func(t *testing.T) {
					t.Parallel()
					sameAnswer(t, lean, plain, []byte(req), false)
				})
			}
			// Pipelined: answered in order, with hand-offs mid-conn.
			t.Run("pipelined", func(t *testing.T) {
				t.Parallel()
				sameAnswer(t, lean, plain, []byte(strings.Join(leanRequests[:leanKeepAlive], "")), false)
			})
			// A header cut short by the end of the stream: 400 from
			// net/http; none when it is a next request of 3 bytes.
			for i, req := range []string{"GET /a.txt HTTP/1.1\r\nHost: x\r\n", "G", leanRequests[0] + "GET", leanRequests[0] + "GET "} {
				t.Run(fmt.Sprintf("eof%d", i), func(t *testing.T) {
					t.Parallel()
					sameAnswer(t, lean, plain, []byte(req), true)
				})
			}
		})
	}
}

// TestLeanServesAndHandsOff: on one keep-alive conn, a GET the lean path
// answers, a PUT it hands to net/http (405 without --upload), and a GET
// that net/http then answers; the lean path counts one hand-off, and none
// for a conn of GETs.
func TestLeanServesAndHandsOff(t *testing.T) {
	dir := leanDir(t)
	ts := startServe(t, dir, nil)
	mc := newClient(t)
	handoffs := func() float64 {
		v, _ := total(scrape(t, mc, ts.metricsURL), "sendfile2_http_lean_handoffs_total")
		return v
	}
	c, err := net.Dial("tcp", ts.addr)
	must(t, err)
	defer c.Close()
	br := bufio.NewReader(c)
	get := func(path string, want int) {
		t.Helper()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		must(t, err)
		body, err := io.ReadAll(resp.Body)
		must(t, err)
		if resp.StatusCode != want || resp.Close {
			t.Fatalf("GET %s: %d (close %v) %q, want %d kept alive", path, resp.StatusCode, resp.Close, body, want)
		}
	}
	for range 50 {
		get("/a.txt", 200)
		get("/missing", 404)
	}
	// Revalidations stay on the lean path too. (a.txt's time is the
	// epoch, to which If-Modified-Since does not apply.)
	for _, tc := range []struct {
		path, cond string
		want       int
	}{
		{"/page.html", `If-None-Match: "x"`, http.StatusOK},
		{"/a.txt", `If-None-Match: "0-c"`, http.StatusNotModified},
		{"/page.html", "If-Modified-Since: Thu, 01 Jan 2099 00:00:00 GMT", http.StatusNotModified},
		{"/a.txt", "If-Modified-Since: Thu, 01 Jan 2099 00:00:00 GMT", http.StatusOK},
	} {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n", tc.path, tc.cond)
		resp, err := http.ReadResponse(br, nil)
		must(t, err)
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != tc.want || resp.Close {
			t.Fatalf("GET %s, %s: %d (close %v), want %d kept alive", tc.path, tc.cond, resp.StatusCode, resp.Close, tc.want)
		}
	}
	if n := handoffs(); n != 0 {
		t.Fatalf("%v hand-offs after GETs only, want 0", n)
	}
	fmt.Fprintf(c, "PUT /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
	resp, err := http.ReadResponse(br, nil)
	must(t, err)
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("PUT: %d, want 405", resp.StatusCode)
	}
	get("/a.txt", 200)
	get("/page.html", 200)
	if n := handoffs(); n != 1 {
		t.Fatalf("%v hand-offs, want 1", n)
	}
	if n := strings.Count(ts.log.String(), "msg=request method=GET path=/a.txt status=200 bytes=12 "); n != 52 {
		t.Errorf("access log: %d lines of GET /a.txt, want 52", n)
	}
}

// TestLeanIdleTimeout: a kept-alive lean conn is closed after
// --idle-timeout without a request, and one that sends part of a header
// after --read-header-timeout.
func TestLeanIdleTimeout(t *testing.T) {
	dir := leanDir(t)
	ts := startServe(t, dir, func(o *serveOptions) {
		o.idleTimeout = 200 * time.Millisecond
		o.readHeaderTimeout = 200 * time.Millisecond
	})
	for _, tc := range []struct{ name, first, then string }{
		{"idle", "GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", ""},
		{"header", "GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", "GET /a.txt HTTP/1.1\r\n"},
		{"first header", "GET /a.txt HTTP/1.1\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", ts.addr)
			must(t, err)
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			io.WriteString(c, tc.first)
			br := bufio.NewReader(c)
			if strings.HasSuffix(tc.first, "\r\n\r\n") {
				resp, err := http.ReadResponse(br, nil)
				must(t, err)
				io.Copy(io.Discard, resp.Body)
			}
			io.WriteString(c, tc.then)
			if b, err := io.ReadAll(br); err != nil || len(b) != 0 {
				t.Fatalf("after the timeout: %q, %v; want the conn closed", b, err)
			}
		})
	}
}

// FuzzLean: for any bytes a client sends, the lean path answers with the
// bytes net/http answers with (Date aside).
func FuzzLean(f *testing.F) {
	for _, req := range leanRequests {
		f.Add([]byte(req))
	}
	f.Add([]byte("GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /sub HTTP/1.1\r\nHost: x\r\n\r\nPUT / HTTP/1.1\r\nHost: x\r\n\r\n"))
	lean, plain := leanPair(f, leanDir(f), func(o *serveOptions) {
		o.http.precompressed = defaultPrecompressed
		o.http.headers = headerList{"Cache-Control: no-cache"}
	})
	f.Fuzz(func(t *testing.T, req []byte) {
		if len(req) > 16<<10 {
			t.Skip()
		}
		sameAnswer(t, lean, plain, req, false)
	})
}

// TestLeanShutdownClosesIdle: at shutdown, a kept-alive lean conn and one
// that sent part of a header are closed at once: serve stops without
// waiting for them (no reset after --shutdown-timeout).
func TestLeanShutdownClosesIdle(t *testing.T) {
	ts := startServe(t, leanDir(t), nil)
	idle, err := net.Dial("tcp", ts.addr)
	must(t, err)
	defer idle.Close()
	io.WriteString(idle, "GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	must(t, err)
	io.Copy(io.Discard, resp.Body)
	partial, err := net.Dial("tcp", ts.addr)
	must(t, err)
	defer partial.Close()
	io.WriteString(partial, "GET /a.txt HTTP/1.1\r\nHo")
	// Conns are accepted in order: once a later one is answered, this one
	// is on the lean path.
	mustGoodGet(t, ts.addr)
	must(t, ts.stop())
	for _, r := range []io.Reader{br, partial} {
		if b, err := io.ReadAll(r); err != nil || len(b) != 0 {
			t.Errorf("after shutdown: %q, %v; want EOF", b, err)
		}
	}
	if strings.Contains(ts.log.String(), "resetting") {
		t.Errorf("shutdown reset connections:\n%s", ts.log.String())
	}
}

func mustGoodGet(t *testing.T, addr string) {
	t.Helper()
	out := rawExchange(t, addr, nil, false)
	if !bytes.HasPrefix(out, []byte("HTTP/1.1 200 OK\r\n")) {
		t.Fatalf("GET: %q", out)
	}
}

// TestLeanShutdownClosesHandedOff: while shutdown waits for a lean download
// that is slow to end, a connection already handed to net/http is closed once
// idle, as srv.Shutdown alone would close it, not kept open (answering new
// requests) until --shutdown-timeout resets it.
func TestLeanShutdownClosesHandedOff(t *testing.T) {
	dir := leanDir(t)
	writeRandom(t, filepath.Join(dir, "huge.bin"), 64<<20)
	ts := startServe(t, dir, func(o *serveOptions) {
		o.shutdownTimeout = 5 * time.Second
		o.sendTimeout = time.Minute
	})
	stalled, err := dialSmall(ts.addr)
	must(t, err)
	defer stalled.Close()
	_, err = io.WriteString(stalled, "GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
	must(t, err)
	if _, err := io.ReadFull(stalled, make([]byte, 12)); err != nil { // "HTTP/1.1 200": the lean conn is sending
		t.Fatal(err)
	}
	handed, err := net.Dial("tcp", ts.addr)
	must(t, err)
	defer handed.Close()
	_, err = io.WriteString(handed, "GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-3\r\n\r\n") // handed off
	must(t, err)
	br := bufio.NewReader(handed)
	resp, err := http.ReadResponse(br, nil)
	must(t, err)
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("range: %s", resp.Status)
	}
	ts.cancel()
	// Shutdown has begun once the listener refuses connections.
	for {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			break
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	// The handed-off conn takes no new request to keep alive: it is closed,
	// or answers with "Connection: close". Before, it stayed open and kept
	// answering until the shutdown timeout.
	io.WriteString(handed, "GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-3\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err == nil && !resp.Close {
		t.Errorf("handed-off conn after shutdown began: %s, kept alive", resp.Status)
	}
	stalled.Close()
	must(t, ts.stop())
}

// TestLeanHandsOffMalformedLine: a line that net/http refuses as soon as it
// has read it (a header line without a colon, a malformed version in the
// request line) is handed off as soon as the line is complete, so net/http
// answers at once, as it does without the lean path, though the header has
// not ended. Before, the lean path waited for the end of the header, and
// closed the conn without a word at the read-header timeout.
func TestLeanHandsOffMalformedLine(t *testing.T) {
	ts := startServe(t, leanDir(t), func(o *serveOptions) { o.readHeaderTimeout = 10 * time.Minute })
	for _, req := range []string{
		"GET /a.txt HTTP/1.1\r\nHost: x\r\nfoo\r\n",
		"GET /a.txt HTTP/1.1\r\nfoo\r\nHost: x\r\n",
		"GET /a.txt HTTP/1.1 x\r\nHost: x\r\n",
	} {
		t.Run(fmt.Sprintf("%q", req), func(t *testing.T) {
			c, err := net.Dial("tcp", ts.addr)
			must(t, err)
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(hangBound))
			io.WriteString(c, req) // no blank line: the header has not ended
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Errorf("%v; want an error status before the header ends", err)
			} else if resp.StatusCode < 400 {
				t.Errorf("%s; want an error status", resp.Status)
			}
		})
	}
}

// TestRedirectStaysHere: the redirect of a directory without its slash is a
// path on this server whatever the directory's name, on both paths.
func TestRedirectStaysHere(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{`\evil.example`, "http:evil.example", "a b"} {
		must(t, os.Mkdir(filepath.Join(dir, d), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, d, "index.html"), []byte("x"), 0o644))
	}
	for _, lean := range []bool{true, false} {
		ts := startServe(t, dir, func(o *serveOptions) { o.lean = lean })
		for _, d := range []string{"%5Cevil.example", "http:evil.example", "a%20b"} {
			out := rawExchange(t, ts.addr, []byte("GET /"+d+" HTTP/1.1\r\nHost: x\r\n\r\n"), false)
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
			must(t, err)
			base, _ := url.Parse("http://x/" + d)
			// As a browser reads it: for http, "\\" is "/" (WHATWG URL).
			loc, err := base.Parse(strings.ReplaceAll(resp.Header.Get("Location"), `\`, "/"))
			if err != nil || resp.StatusCode != http.StatusMovedPermanently || loc.Host != "x" || loc.EscapedPath() != "/"+d+"/" {
				t.Errorf("lean %v: GET /%s: %s to %q (%v), want 301 to /%s/ on this host", lean, d, resp.Status, resp.Header.Get("Location"), loc, d)
			}
		}
	}
}

// TestLeanBrowser: with --precompressed (the default), a browser's GET of a
// file with no encoded form, and its revalidation, stay on the lean path;
// a GET of a file with one goes to net/http, which sends it.
func TestLeanBrowser(t *testing.T) {
	ts := startServe(t, leanDir(t), func(o *serveOptions) { o.http.precompressed = defaultPrecompressed })
	mc := newClient(t)
	c, err := net.Dial("tcp", ts.addr)
	must(t, err)
	defer c.Close()
	br := bufio.NewReader(c)
	const browser = "Host: x\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\nAccept-Language: en\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n"
	for _, tc := range []struct {
		req      string
		status   int
		encoding string
		handoffs float64
	}{
		{"GET /a.txt HTTP/1.1\r\n" + browser + "\r\n", http.StatusOK, "", 0},
		{"GET /a.txt HTTP/1.1\r\n" + browser + "If-None-Match: \"0-c\"\r\n\r\n", http.StatusNotModified, "", 0},
		{"GET /z.js HTTP/1.1\r\n" + browser + "\r\n", http.StatusOK, "gzip", 1},
	} {
		io.WriteString(c, tc.req)
		resp, err := http.ReadResponse(br, nil)
		must(t, err)
		io.Copy(io.Discard, resp.Body)
		got, _ := total(scrape(t, mc, ts.metricsURL), "sendfile2_http_lean_handoffs_total")
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Encoding") != tc.encoding || resp.Header.Get("Vary") != "Accept-Encoding" || got != tc.handoffs {
			t.Errorf("%q: %s, Content-Encoding %q, Vary %q, %v hand-offs; want %d, %q, Accept-Encoding, %v",
				tc.req, resp.Status, resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"), got, tc.status, tc.encoding, tc.handoffs)
		}
	}
}

// TestLeanHandOffKeepsHeaderLimit: a header begun on the lean path and
// handed to net/http part-way keeps --read-header-timeout from its start:
// net/http does not get the whole limit again from the hand-off. The
// client's pauses only make the header later, so the test cannot pass by
// a slow machine.
func TestLeanHandOffKeepsHeaderLimit(t *testing.T) {
	const limit = time.Second
	ts := startServe(t, leanDir(t), func(o *serveOptions) { o.readHeaderTimeout = limit })
	c, err := net.Dial("tcp", ts.addr)
	must(t, err)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(hangBound))
	for _, part := range []string{"GET /a.txt HTTP/1.1\r\n", "Range: bytes=0-1\r\n", "Host: x\r\n\r\n"} {
		io.WriteString(c, part) // the Range line hands the conn off
		time.Sleep(limit * 7 / 10)
	}
	// The header ended 1.4 s or more after it began: past the limit.
	if b, err := io.ReadAll(c); len(b) != 0 {
		t.Errorf("a header past --read-header-timeout: %q, %v; want the conn closed", b, err)
	}
}

// TestLeanHeadClosing: once shutdown began, a lean response says
// Connection: close where net/http puts it, after Date and Content-Length,
// and a client reads it as the conn's last.
func TestLeanHeadClosing(t *testing.T) {
	head := newHeadTemplate(nil, false)
	var none headValues
	open := writeHead(nil, http.StatusNotFound, head.fail, &none, 19, false)
	last := writeHead(nil, http.StatusNotFound, head.fail, &none, 19, true)
	want := append(bytes.TrimSuffix(open, []byte("\r\n")), "Connection: close\r\n\r\n"...)
	if !bytes.Equal(last, want) {
		t.Errorf("closing head:\n%q\nwant\n%q", last, want)
	}
	for _, h := range []struct {
		b     []byte
		close bool
	}{{open, false}, {last, true}} {
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(append(h.b, "404 page not found\n"...))), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Close != h.close {
			t.Errorf("%q: Close %v, want %v", h.b, resp.Close, h.close)
		}
	}
}
