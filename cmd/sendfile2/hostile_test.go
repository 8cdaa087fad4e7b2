//go:build linux

package main

// Hostile clients against a real serve on 127.0.0.1: slowloris, idle
// connections, huge headers, hostile ranges, path traversal, links out of
// DIR, special files, and a file truncated while it is served. In each, a
// well-behaved client must keep getting whole files while the attack runs.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2"
)

// hangBound bounds every wait in these tests. It is far longer than any
// timeout the servers here are given: it only turns a hang into a failure.
const hangBound = 30 * time.Second

// exchange sends req, a whole request, on a new connection and reads
// everything the server writes until it closes the connection (every request
// here says "Connection: close"). It returns those bytes and the response
// parsed from them, with its body.
func exchange(addr, req string) (raw []byte, resp *http.Response, body []byte, err error) {
	conn, err := net.DialTimeout("tcp", addr, hangBound)
	if err != nil {
		return nil, nil, nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(hangBound))
	if _, err := io.WriteString(conn, req); err != nil {
		return nil, nil, nil, err
	}
	raw, err = io.ReadAll(conn)
	if err != nil {
		return raw, nil, nil, fmt.Errorf("reading the response: %w", err)
	}
	method, _, _ := strings.Cut(req, " ")
	resp, err = http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), &http.Request{Method: method})
	if err != nil {
		return raw, nil, nil, fmt.Errorf("parsing the response %.200q: %w", raw, err)
	}
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		return raw, resp, body, fmt.Errorf("response body: %w", err)
	}
	return raw, resp, body, nil
}

// request is a GET (or method) of target with extra header lines, each
// ending with CRLF, on a connection that closes after the response.
func request(method, target, extra string) string {
	return method + " " + target + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n" + extra + "\r\n"
}

// goodGet is a well-behaved client: it GETs path on a new connection and
// wants 200 and exactly want.
func goodGet(addr, path string, want []byte) error {
	_, resp, body, err := exchange(addr, request("GET", path, ""))
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != 200 || !bytes.Equal(body, want) {
		return fmt.Errorf("GET %s: status %d, %d bytes (sha256 %.12s); want 200 and %d bytes (sha256 %.12s)",
			path, resp.StatusCode, len(body), sum(body), len(want), sum(want))
	}
	return nil
}

func mustGood(t *testing.T, addr, path string, want []byte) {
	t.Helper()
	if err := goodGet(addr, path, want); err != nil {
		t.Fatalf("a well-behaved client: %v", err)
	}
}

// goodLoop is a well-behaved client that GETs a file again and again in the
// background while an attack runs.
type goodLoop struct {
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	n        int
	err      error
}

func startGood(t *testing.T, addr, path string, want []byte) *goodLoop {
	g := &goodLoop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		for {
			if g.err = goodGet(addr, path, want); g.err != nil {
				return
			}
			g.n++
			select {
			case <-g.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(g.halt)
	return g
}

func (g *goodLoop) halt() {
	g.stopOnce.Do(func() { close(g.stop) })
	<-g.done
}

// finish stops the loop and fails t unless every GET got the whole file,
// and at least one did.
func (g *goodLoop) finish(t *testing.T) {
	t.Helper()
	g.halt()
	if g.err != nil {
		t.Errorf("a well-behaved client during the attack, after %d whole GETs: %v", g.n, g.err)
	} else if g.n == 0 {
		t.Error("no well-behaved GET completed during the attack")
	}
	t.Logf("%d well-behaved GETs served during the attack", g.n)
}

// attackers are connections that the server must close by itself: each has a
// goroutine that reads until the server closes it, or until hangBound.
type attackers struct {
	conns   []net.Conn
	results chan error // one per conn: nil when the server closed it
	open    sync.WaitGroup
	closed  chan struct{} // closed when every conn was closed by the server (or failed)
	stop    chan struct{} // stops the trickle
	wg      sync.WaitGroup
}

func newAttackers(t *testing.T) *attackers {
	a := &attackers{results: make(chan error, 10000), closed: make(chan struct{}), stop: make(chan struct{})}
	t.Cleanup(a.close)
	return a
}

// dial connects one more attacker; the caller then calls watch.
func (a *attackers) dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, hangBound)
	if err != nil {
		t.Fatal(err)
	}
	a.conns = append(a.conns, c)
	return c
}

// watch reads c (through br, which may hold bytes already) until the server
// closes it. Anything the server sends on it must not be a 2xx response.
func (a *attackers) watch(c net.Conn, br *bufio.Reader) {
	a.open.Add(1)
	a.wg.Go(func() {
		defer a.open.Done()
		c.SetReadDeadline(time.Now().Add(hangBound))
		got, err := io.ReadAll(io.LimitReader(br, 1<<20))
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			a.results <- fmt.Errorf("%v: still open after %v", c.LocalAddr(), hangBound)
		case bytes.HasPrefix(got, []byte("HTTP/1.1 2")):
			a.results <- fmt.Errorf("%v: served: %.80q", c.LocalAddr(), got)
		default: // EOF, or a reset: closed
			a.results <- nil
		}
	})
}

// trickle writes one byte of a request header that never ends to every
// attacker, every tick, until the server closes it.
func (a *attackers) trickle(tick time.Duration) {
	conns := slices.Clone(a.conns)
	a.wg.Go(func() {
		const head = "GET /good.bin HTTP/1.1\r\nHost: test\r\nX-Slow: "
		dead := make([]bool, len(conns))
		for i := 0; ; i++ {
			b := byte('a')
			if i < len(head) {
				b = head[i]
			}
			for j, c := range conns {
				if dead[j] {
					continue
				}
				c.SetWriteDeadline(time.Now().Add(hangBound))
				if _, err := c.Write([]byte{b}); err != nil {
					dead[j] = true
				}
			}
			select {
			case <-a.stop:
				return
			case <-a.closed:
				return
			case <-time.After(tick):
			}
		}
	})
}

// wait waits until the server has closed every attacker, and fails t for
// each that it did not close within hangBound or that it served.
func (a *attackers) wait(t *testing.T) {
	t.Helper()
	go func() { a.open.Wait(); close(a.closed) }()
	<-a.closed
	failed := 0
	for range a.conns {
		if err := <-a.results; err != nil {
			if failed++; failed <= 5 {
				t.Errorf("attacker %v", err)
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d attacking connections were not closed by the server", failed, len(a.conns))
	}
}

// stillOpen is how many attackers the server has not closed yet.
func (a *attackers) stillOpen() int { return len(a.conns) - len(a.results) }

func (a *attackers) close() {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	for _, c := range a.conns {
		c.Close()
	}
	a.wg.Wait()
}

// TestHostileSlowloris: connections that send their header one byte at a
// time are closed after --read-header-timeout, whatever they keep sending,
// and well-behaved clients are served meanwhile. When the attackers hold
// every --max-conns slot, a new client waits in the kernel's accept queue
// until the header timeout frees a slot; it is served then.
func TestHostileSlowloris(t *testing.T) {
	dir := t.TempDir()
	good := writeRandom(t, filepath.Join(dir, "good.bin"), 256<<10)
	for _, tc := range []struct {
		name          string
		maxConns, bad int
	}{
		{"below the limit", 1000, 200},
		{"every slot held", 20, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServe(t, dir, func(o *serveOptions) {
				o.maxConns = tc.maxConns
				o.readHeaderTimeout = time.Second
				o.accessLog = false
			})
			a := newAttackers(t)
			for range tc.bad {
				c := a.dial(t, ts.addr)
				a.watch(c, bufio.NewReader(c))
			}
			a.trickle(100 * time.Millisecond)
			// Below the limit this is served at once; with every slot
			// held, once the header timeout closes an attacker.
			mustGood(t, ts.addr, "/good.bin", good)
			t.Logf("first well-behaved GET done with %d of %d attackers still open", a.stillOpen(), tc.bad)
			g := startGood(t, ts.addr, "/good.bin", good)
			a.wait(t)
			g.finish(t)
			mustGood(t, ts.addr, "/good.bin", good)
		})
	}
}

// TestHostileIdleConns: hundreds of connections that made one request and
// keep the connection alive without another are closed after
// --idle-timeout, and those that never send a byte after
// --read-header-timeout; well-behaved clients are served meanwhile. When
// idle connections hold every slot, a new client is served once the idle
// timeout frees one.
func TestHostileIdleConns(t *testing.T) {
	dir := t.TempDir()
	good := writeRandom(t, filepath.Join(dir, "good.bin"), 64<<10)
	must(t, os.WriteFile(filepath.Join(dir, "small.txt"), []byte("small"), 0o644))
	for _, tc := range []struct {
		name                    string
		maxConns, alive, silent int
	}{
		{"below the limit", 1000, 300, 100},
		{"every slot held", 50, 50, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServe(t, dir, func(o *serveOptions) {
				o.maxConns = tc.maxConns
				o.readHeaderTimeout = time.Second
				o.idleTimeout = time.Second
				o.accessLog = false
			})
			a := newAttackers(t)
			for range tc.alive {
				c := a.dial(t, ts.addr)
				c.SetDeadline(time.Now().Add(hangBound))
				io.WriteString(c, "GET /small.txt HTTP/1.1\r\nHost: test\r\n\r\n")
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("keep-alive GET: %v", err)
				}
				body, err := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || string(body) != "small" || err != nil || resp.Close {
					t.Fatalf("keep-alive GET: status %d, body %q (%v), close %v", resp.StatusCode, body, err, resp.Close)
				}
				a.watch(c, br) // now idle
			}
			for range tc.silent {
				c := a.dial(t, ts.addr)
				a.watch(c, bufio.NewReader(c))
			}
			mustGood(t, ts.addr, "/good.bin", good)
			t.Logf("first well-behaved GET done with %d of %d idle connections still open", a.stillOpen(), tc.alive+tc.silent)
			g := startGood(t, ts.addr, "/good.bin", good)
			a.wait(t)
			g.finish(t)
			mustGood(t, ts.addr, "/good.bin", good)
		})
	}
}

// hugeHeader sends a request whose header holds extra (header lines) and
// returns the response's status. The server stops reading at its limit, so
// the request is written while the response is read.
func hugeHeader(addr string, extra []byte) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, hangBound)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(hangBound))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		w := bufio.NewWriterSize(conn, 64<<10)
		w.WriteString("GET /good.bin HTTP/1.1\r\nHost: test\r\n")
		w.Write(extra)
		w.WriteString("\r\n")
		w.Flush() // fails once the server has closed: expected
	}()
	defer func() { conn.Close(); <-wrote }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestHostileHugeHeaders: a header over the server's 64 KiB limit, as one
// line or many, gets 431, alone or many at once, and the server goes on
// serving; a large header under the limit is served.
func TestHostileHugeHeaders(t *testing.T) {
	dir := t.TempDir()
	good := writeRandom(t, filepath.Join(dir, "good.bin"), 64<<10)
	ts := startServe(t, dir, func(o *serveOptions) { o.accessLog = false })
	line := func(n int) []byte { return []byte("X-Big: " + strings.Repeat("a", n) + "\r\n") }
	many := func(n int) []byte {
		var b bytes.Buffer
		for i := range n {
			fmt.Fprintf(&b, "X-H%d: %s\r\n", i, strings.Repeat("b", 90))
		}
		return b.Bytes()
	}
	g := startGood(t, ts.addr, "/good.bin", good)
	for _, tc := range []struct {
		name  string
		extra []byte
	}{
		{"one line of 100 KiB", line(100 << 10)},
		{"one line of 300 KiB", line(300 << 10)},
		{"one line of 4 MiB", line(4 << 20)},
		{"1000 lines, 100 KiB", many(1000)},
		{"3000 lines, 300 KiB", many(3000)},
	} {
		code, err := hugeHeader(ts.addr, tc.extra)
		if err != nil || code != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("%s: status %d, %v; want 431", tc.name, code, err)
		}
		mustGood(t, ts.addr, "/good.bin", good)
	}
	// Many at once.
	var wg sync.WaitGroup
	codes := make([]int, 20)
	for i := range codes {
		wg.Go(func() {
			code, err := hugeHeader(ts.addr, line(200<<10))
			if err != nil {
				t.Errorf("concurrent huge header %d: %v", i, err)
			}
			codes[i] = code
		})
	}
	wg.Wait()
	for i, code := range codes {
		if code != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("concurrent huge header %d: status %d, want 431", i, code)
		}
	}
	g.finish(t)
	// Under the limit: served.
	_, resp, body, err := exchange(ts.addr, request("GET", "/good.bin", string(line(32<<10))))
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, good) {
		t.Errorf("a 32 KiB header: %v, %v, %d bytes; want 200 and the file", err, resp, len(body))
	}
}

// checkRangeResponse checks a response to a GET of a file holding data:
// 200 with every byte, 206 with a valid Content-Range (or multipart parts
// with one each) and exactly the bytes it names, or 416 with no
// Content-Range or "bytes */size". It returns the ranges served (end
// exclusive): one covering data for 200, none for 416.
func checkRangeResponse(resp *http.Response, body, data []byte) ([][2]int64, error) {
	size := int64(len(data))
	cr := resp.Header.Get("Content-Range")
	switch resp.StatusCode {
	case http.StatusOK:
		if cr != "" {
			return nil, fmt.Errorf("200 with Content-Range %q", cr)
		}
		if !bytes.Equal(body, data) {
			return nil, fmt.Errorf("200 with %d bytes that are not the file's %d", len(body), size)
		}
		return [][2]int64{{0, size}}, nil
	case http.StatusRequestedRangeNotSatisfiable:
		if cr != "" && cr != fmt.Sprintf("bytes */%d", size) {
			return nil, fmt.Errorf("416 with Content-Range %q", cr)
		}
		return nil, nil
	case http.StatusPartialContent:
	default:
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	part := func(cr string, b []byte) ([2]int64, error) {
		var first, last, total int64
		if n, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &first, &last, &total); err != nil || n != 3 ||
			fmt.Sprintf("bytes %d-%d/%d", first, last, total) != cr {
			return [2]int64{}, fmt.Errorf("Content-Range %q: not bytes first-last/size", cr)
		}
		if total != size || first < 0 || first > last || last >= size {
			return [2]int64{}, fmt.Errorf("Content-Range %q: not a range of a %d-byte file", cr, size)
		}
		if !bytes.Equal(b, data[first:last+1]) {
			return [2]int64{}, fmt.Errorf("Content-Range %q: %d bytes that differ from the range's", cr, len(b))
		}
		return [2]int64{first, last + 1}, nil
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" {
		if resp.ContentLength != int64(len(body)) {
			return nil, fmt.Errorf("206: Content-Length %d, %d bytes", resp.ContentLength, len(body))
		}
		r, err := part(cr, body)
		return [][2]int64{r}, err
	}
	if cr != "" {
		return nil, fmt.Errorf("multipart 206 with Content-Range %q", cr)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var got [][2]int64
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("part %d: %v", len(got), err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return nil, fmt.Errorf("part %d: %v", len(got), err)
		}
		r, err := part(p.Header.Get("Content-Range"), b)
		if err != nil {
			return nil, fmt.Errorf("part %d: %v", len(got), err)
		}
		got = append(got, r)
	}
	if len(got) < 2 {
		return nil, fmt.Errorf("multipart 206 with %d parts", len(got))
	}
	return got, nil
}

// head prints the first ranges of rs.
func head(rs [][2]int64) string {
	if len(rs) > 3 {
		return fmt.Sprint(rs[:3], "...")
	}
	return fmt.Sprint(rs)
}

// TestHostileRanges: malformed, reversed, empty, overflowing, overlapping
// and very many ranges get 416, 200 (the header ignored) or 206 as RFC 9110
// section 14 says, with exactly the bytes named when a range is honoured.
func TestHostileRanges(t *testing.T) {
	dir := t.TempDir()
	const size = 100000
	data := writeRandom(t, filepath.Join(dir, "r.bin"), size)
	good := writeRandom(t, filepath.Join(dir, "good.bin"), 64<<10)
	must(t, os.WriteFile(filepath.Join(dir, "empty.bin"), nil, 0o644))
	ts := startServe(t, dir, func(o *serveOptions) { o.accessLog = false })
	whole := [][2]int64{{0, size}}
	zeros := func(n int) string { return "bytes=" + strings.Repeat("0-0,", n) }
	zeroParts := func(n int) [][2]int64 { return slices.Repeat([][2]int64{{0, 1}}, n) }
	g := startGood(t, ts.addr, "/good.bin", good)
	for _, tc := range []struct {
		rng  string
		code int
		want [][2]int64 // served ranges, end exclusive
	}{
		{"bytes=5-1", 416, nil}, // last before first: invalid
		{"bytes=-0", 416, nil},  // an empty suffix: unsatisfiable
		{"bytes=-000", 416, nil},
		{"bytes=0-0,-0", 206, [][2]int64{{0, 1}}},
		{"bytes=999999999999-", 416, nil}, // past the end
		{"bytes=100000-", 416, nil},
		{"bytes=99999-", 206, [][2]int64{{99999, size}}},
		{"bytes=0-0", 206, [][2]int64{{0, 1}}},
		{"bytes=5-99999999", 206, [][2]int64{{5, size}}},
		{"bytes=-20000000", 206, whole},
		{"bytes=a-b", 416, nil}, // not numbers: invalid
		{"bytes=0-x", 416, nil},
		{"bytes=--5", 416, nil},
		{"bytes=0--5", 416, nil},
		{"bytes=0-5,-+0", 416, nil}, // a sign is no digit
		{"bytes=+0-5", 416, nil},
		{"bytes=0-99999999999999999999999", 206, whole}, // a last-pos past int64 is past the end
		{"bytes=0-9223372036854775807", 206, whole},
		{"bytes=99999999999999999999999-", 416, nil}, // so is a first-pos
		{"bytes=9223372036854775807-", 416, nil},
		{"bytes=-99999999999999999999999", 206, whole}, // and a suffix longer than any file
		{"bytes=-9223372036854775808", 206, whole},
		{"bytes=99999999999999999999999-,10-19", 206, [][2]int64{{10, 20}}},
		{"items=0-5", 200, whole}, // an unknown unit: ignored
		{"Bytes=0-5", 206, [][2]int64{{0, 6}}},
		{"bytes=", 200, whole},
		{"bytes=,,,", 200, whole},
		{"bytes=0-5,10-20", 206, [][2]int64{{0, 6}, {10, 21}}},
		{"bytes=0-10,5-20", 206, [][2]int64{{0, 11}, {5, 21}}}, // overlapping
		{"bytes=90000-99999,0-9", 206, [][2]int64{{90000, size}, {0, 10}}},
		{"bytes=50000-,0-49999", 206, [][2]int64{{50000, size}, {0, 50000}}},
		{"bytes=0-,0-", 200, whole}, // more bytes than the file: ignored
		{zeros(maxRanges), 206, zeroParts(maxRanges)},
		{zeros(maxRanges + 1), 200, whole}, // too many ranges: ignored
		{zeros(1000), 200, whole},
		{zeros(15000), 200, whole}, // 60 KB, just under the header limit
	} {
		name := tc.rng
		if len(name) > 40 {
			name = fmt.Sprintf("%.20s... (%d bytes)", name, len(name))
		}
		_, resp, body, err := exchange(ts.addr, request("GET", "/r.bin", "Range: "+tc.rng+"\r\n"))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		got, err := checkRangeResponse(resp, body, data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if resp.StatusCode != tc.code || !slices.Equal(got, tc.want) {
			t.Errorf("%s: status %d with %d ranges %s; want %d with %d ranges %s", name,
				resp.StatusCode, len(got), head(got), tc.code, len(tc.want), head(tc.want))
		}
	}
	// An empty file has no byte to name: every Range is ignored.
	for _, rng := range []string{"bytes=-1", "bytes=-0", "bytes=0-", "bytes=0-0", "bytes=5-1", "bytes=0-0,-1"} {
		_, resp, body, err := exchange(ts.addr, request("GET", "/empty.bin", "Range: "+rng+"\r\n"))
		if err != nil {
			t.Errorf("%s on an empty file: %v", rng, err)
			continue
		}
		if _, err := checkRangeResponse(resp, body, nil); err != nil || resp.StatusCode != 200 {
			t.Errorf("%s on an empty file: status %d, %v; want 200", rng, resp.StatusCode, err)
		}
	}
	g.finish(t)
}

// secretMarker returns a random string for files outside DIR that no
// response may ever contain.
func secretMarker() string { return "TOP-SECRET-" + strconv.FormatUint(rand.Uint64(), 16) }

// traversalTargets are request-targets that try to leave DIR (base/www) for
// base/secret.txt or base/www2/secret.txt, raw as they go on the wire.
func traversalTargets(base string) []string {
	dots := []string{"..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%252e%252e", "%c0%ae%c0%ae",
		"%e0%80%ae%e0%80%ae", "%ef%bc%8e%ef%bc%8e", "...", "..%00", "%2e%2e%00", "%u002e%u002e", "..;"}
	slashes := []string{"/", "%2f", "%2F", "%252f", "\\", "%5c", "%5C", "%255c", "%c0%af", "%e0%80%af",
		"%c1%9c", "//", "/./", "%2f.%2f"}
	var ts []string
	for _, d := range dots {
		for _, s := range slashes {
			ts = append(ts,
				"/"+d+s+"secret.txt",
				"/"+d+s+d+s+"secret.txt",
				"/sub"+s+d+s+d+s+"secret.txt",
				"/"+d+s+"www2"+s+"secret.txt",
				s+d+s+"secret.txt",
			)
		}
	}
	return append(ts,
		"/%2f..%2fsecret.txt",
		"/%2f..%2f..%2fsecret.txt",
		"/..%2fsecret.txt%00.txt",
		"/secret.txt%00",
		"/../secret.txt?x=1",
		"/../secret.txt#x",
		"/..%2fsecret.txt;x=1",
		"../secret.txt",
		"..%2fsecret.txt",
		"secret.txt",
		"*",
		"http://test/../secret.txt",
		"http://test/%2e%2e%2fsecret.txt",
		"http://../secret.txt",
		"//test/../secret.txt",
		base+"/secret.txt",
		strings.ReplaceAll(base+"/secret.txt", "/", "%2f"),
		"/"+strings.TrimPrefix(base, "/")+"/secret.txt",
		"/proc/self/root"+base+"/secret.txt",
		"/.."+base+"/secret.txt",
	)
}

// TestHostileTraversal: no raw request-target, however encoded, makes the
// server send a file outside DIR: the marker in base/secret.txt and
// base/www2/secret.txt never appears in any response (status line, headers
// or body), and every 200 carries a file that lies inside DIR.
func TestHostileTraversal(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "www")
	marker := secretMarker()
	must(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	must(t, os.MkdirAll(filepath.Join(base, "www2"), 0o755))
	must(t, os.WriteFile(filepath.Join(base, "secret.txt"), []byte(marker), 0o644))
	must(t, os.WriteFile(filepath.Join(base, "www2", "secret.txt"), []byte(marker), 0o644))
	// A file of the same name inside DIR: a path cleaned to it is confined,
	// not refused.
	must(t, os.WriteFile(filepath.Join(dir, "secret.txt"), []byte("the one inside"), 0o644))
	good := writeRandom(t, filepath.Join(dir, "good.bin"), 64<<10)
	inside := map[string]bool{"the one inside": true, string(good): true}
	ts := startServe(t, dir, func(o *serveOptions) { o.accessLog = false })

	g := startGood(t, ts.addr, "/good.bin", good)
	codes := map[int]int{}
	targets := traversalTargets(base)
	for _, target := range targets {
		for _, req := range []string{
			request("GET", target, ""),
			request("HEAD", target, ""),
			request("GET", target, "Range: bytes=0-\r\n"),
		} {
			raw, resp, body, err := exchange(ts.addr, req)
			if bytes.Contains(raw, []byte(marker)) {
				t.Errorf("%.60q: the response holds the secret from outside DIR:\n%.300q", req, raw)
				continue
			}
			if err != nil {
				t.Errorf("%.60q: %v", req, err)
				continue
			}
			codes[resp.StatusCode]++
			if resp.StatusCode/100 == 2 && len(body) > 0 && !inside[string(body)] {
				t.Errorf("%.60q: status %d with a body that is no file inside DIR: %.80q", req, resp.StatusCode, body)
			}
		}
	}
	g.finish(t)
	t.Logf("%d requests, statuses %v", 3*len(targets), codes)
}

// linkTree makes base/www (DIR), files outside it holding marker, and links
// from DIR to them: symbolic links (absolute, relative, chained, to a
// directory) and hard links. The files that symbolic links point to have a
// single link, so that only confinement keeps them out. It returns DIR.
func linkTree(t testing.TB, base, marker string) string {
	must := func(_ testing.TB, err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "www")
	out := filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(dir, "sub"), filepath.Join(dir, "idx"), out} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(filepath.Join(base, "secret.txt"), []byte(marker), 0o644))
	must(t, os.WriteFile(filepath.Join(out, "secret2.txt"), []byte(marker), 0o644))
	must(t, os.WriteFile(filepath.Join(base, "linked.txt"), []byte(marker), 0o644))
	must(t, os.WriteFile(filepath.Join(base, "linked-index.html"), []byte(marker), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "inner.txt"), []byte("inner"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "sub", "x.txt"), []byte("x"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "twin1.txt"), []byte("twin"), 0o644))
	for _, l := range [][2]string{
		{filepath.Join(base, "secret.txt"), "abs"},
		{"../secret.txt", "rel"},
		{"rel", "chain"},
		{"../outside", "dirlink"},
		{out, "dirabs"},
		{"../../secret.txt", "sub/up"},
		{"../..", "sub/root"},
		{"/", "slash"},
		{"inner.txt", "ok"},
		{"sub", "subok"},
		{"loop", "loop"},
		{"nowhere", "dangling"},
	} {
		must(t, os.Symlink(l[0], filepath.Join(dir, l[1])))
	}
	must(t, os.Link(filepath.Join(base, "linked.txt"), filepath.Join(dir, "hard")))
	must(t, os.Link(filepath.Join(base, "linked-index.html"), filepath.Join(dir, "idx", "index.html")))
	must(t, os.Link(filepath.Join(dir, "twin1.txt"), filepath.Join(dir, "twin2.txt")))
	return dir
}

// TestHostileLinks: symbolic links out of DIR (absolute, relative, chained,
// to a directory) never serve what they point to. A hard link in DIR to a
// file outside it is the file itself, which no path check can tell apart: a
// regular file with more than one link gives 403, unless --allow-hardlinks.
func TestHostileLinks(t *testing.T) {
	base := t.TempDir()
	marker := secretMarker()
	dir := linkTree(t, base, marker)
	good := writeRandom(t, filepath.Join(dir, "good.bin"), 64<<10)
	escapes := []string{"/abs", "/rel", "/chain", "/dirlink/secret2.txt", "/dirabs/secret2.txt", "/sub/up",
		"/sub/root/secret.txt", "/slash" + base + "/secret.txt", "/dirlink/", "/loop", "/dangling"}
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow-hardlinks=%v", allow), func(t *testing.T) {
			ts := startServe(t, dir, func(o *serveOptions) { o.allowHardlinks = allow })
			g := startGood(t, ts.addr, "/good.bin", good)
			hardCode, twin, secret := http.StatusForbidden, "", ""
			if allow {
				hardCode, twin, secret = http.StatusOK, "twin", marker
			}
			type want struct {
				code int
				body string // exact body, for 200
			}
			cases := map[string]want{
				"/ok":          {200, "inner"},
				"/subok/x.txt": {200, "x"},
				"/inner.txt":   {200, "inner"},
				"/hard":        {hardCode, secret},
				"/idx/":        {hardCode, secret},
				"/twin1.txt":   {hardCode, twin},
				"/twin2.txt":   {hardCode, twin},
			}
			for _, e := range escapes {
				cases[e] = want{404, ""}
			}
			for target, w := range cases {
				for _, method := range []string{"GET", "HEAD"} {
					raw, resp, body, err := exchange(ts.addr, request(method, target, ""))
					if err != nil {
						t.Errorf("%s %s: %v", method, target, err)
						continue
					}
					if !allow && bytes.Contains(raw, []byte(marker)) {
						t.Errorf("%s %s: the response holds the secret from outside DIR (status %d)", method, target, resp.StatusCode)
					}
					if resp.StatusCode != w.code || method == "GET" && w.code == 200 && string(body) != w.body {
						t.Errorf("%s %s: status %d, body %.40q; want %d %.40q", method, target, resp.StatusCode, body, w.code, w.body)
					}
				}
			}
			g.finish(t)
		})
	}
}

// inotifyOpens watches dirs for open(2) of their entries, and returns a
// function that reports the names opened so far.
func inotifyOpens(t *testing.T, dirs ...string) func() []string {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	must(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	wd := map[int32]string{}
	for _, d := range dirs {
		w, err := unix.InotifyAddWatch(fd, d, unix.IN_OPEN)
		must(t, err)
		wd[int32(w)] = d
	}
	return func() []string {
		var names []string
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			if errors.Is(err, unix.EAGAIN) {
				return names
			}
			if err != nil {
				t.Fatalf("inotify: %v", err)
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := unix.ByteSliceToString(buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)])
				if name != "" {
					names = append(names, filepath.Join(wd[ev.Wd], name))
				}
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}
}

// TestHostileSpecialFiles: FIFOs (with and without a writer), character
// devices (/dev/null's and /dev/zero's numbers), a block device, a unix
// socket, and directories whose index.html is one of those, or that have
// none, are refused with 404, promptly, and never opened: opening a device
// runs its driver (a watchdog starts its timer, a tape rewinds) and opening a
// FIFO waits for a writer or steals its data. inotify sees every open(2) in
// DIR; a regular file's open, last, shows that it would have seen them.
func TestHostileSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	good := writeRandom(t, filepath.Join(dir, "good.bin"), 64<<10)
	for _, d := range []string{"empty", "fifodir", "zerodir"} {
		must(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	must(t, unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(t, unix.Mkfifo(filepath.Join(dir, "fifo-w"), 0o644))
	must(t, unix.Mkfifo(filepath.Join(dir, "fifodir", "index.html"), 0o644))
	for _, d := range []struct {
		name         string
		mode         uint32
		major, minor uint32
	}{
		{"null", unix.S_IFCHR, 1, 3},
		{"zero", unix.S_IFCHR, 1, 5},
		{"zerodir/index.html", unix.S_IFCHR, 1, 5},
		{"loop", unix.S_IFBLK, 7, 0},
	} {
		if err := unix.Mknod(filepath.Join(dir, d.name), d.mode|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			t.Fatalf("mknod %s: %v (these tests run as root)", d.name, err)
		}
	}
	must(t, os.Symlink("/dev/zero", filepath.Join(dir, "devlink")))
	sock, err := net.Listen("unix", filepath.Join(dir, "sock"))
	must(t, err)
	defer sock.Close()
	// A writer holds fifo-w open, with data waiting in it.
	w, err := os.OpenFile(filepath.Join(dir, "fifo-w"), os.O_RDWR, 0)
	must(t, err)
	defer w.Close()
	w.WriteString("data in the pipe")

	ts := startServe(t, dir, nil)
	opened := inotifyOpens(t, dir, filepath.Join(dir, "fifodir"), filepath.Join(dir, "zerodir"))
	g := startGood(t, ts.addr, "/good.bin", good)
	special := []string{"/fifo", "/fifo-w", "/null", "/zero", "/loop", "/sock", "/devlink",
		"/fifodir/", "/zerodir/", "/fifodir", "/zerodir", "/empty/", "/empty"}
	for _, target := range special {
		for _, req := range []string{
			request("GET", target, ""),
			request("HEAD", target, ""),
			request("GET", target, "Range: bytes=0-10\r\n"),
		} {
			_, resp, body, err := exchange(ts.addr, req)
			if err != nil {
				t.Errorf("%.40q: %v", req, err)
				continue
			}
			if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusForbidden {
				t.Errorf("%.40q: status %d, %d body bytes; want 404 or 403", req, resp.StatusCode, len(body))
			}
		}
	}
	g.finish(t)
	mustGood(t, ts.addr, "/good.bin", good) // opens good.bin last
	all := opened()
	if !slices.ContainsFunc(all, func(n string) bool { return filepath.Base(n) == "good.bin" }) {
		t.Fatalf("inotify saw no open of good.bin (%v): it cannot see the others either", all)
	}
	var bad []string
	for _, n := range all {
		switch rel, _ := filepath.Rel(dir, n); rel {
		case "good.bin", "fifodir", "zerodir", "empty": // a regular file, and directories
		default:
			if !slices.Contains(bad, rel) {
				bad = append(bad, rel)
			}
		}
	}
	if len(bad) > 0 {
		t.Errorf("the server opened %v", bad)
	}
	// The pipe's data is still there: nobody read it.
	buf := make([]byte, 64)
	w.SetReadDeadline(time.Now().Add(hangBound))
	if n, err := w.Read(buf); err != nil || string(buf[:n]) != "data in the pipe" {
		t.Errorf("the FIFO's data: %q, %v", buf[:n], err)
	}
}

// TestHostileTruncate: a file truncated and rewritten again and again while
// clients GET it, with each safe method, never crashes or stalls the server:
// every response ends (whole, or cut short when the file shrank), other files
// are served whole meanwhile, and the file is served whole once it stops
// changing. (What a response holds while the file changes is not checked:
// the bytes beyond a new end of file may read as zeros until rewritten.)
func TestHostileTruncate(t *testing.T) {
	dir := t.TempDir()
	good := writeRandom(t, filepath.Join(dir, "good.bin"), 64<<10)
	name := filepath.Join(dir, "t.bin")
	data := writeRandom(t, name, 2<<20+5)
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	must(t, err)
	defer f.Close()
	for _, m := range []sendfile2.Method{sendfile2.Auto, sendfile2.URing, sendfile2.URingMmap, sendfile2.MsgZC, sendfile2.Copy} {
		t.Run(string(m), func(t *testing.T) {
			ts := startServe(t, dir, func(o *serveOptions) {
				o.method = string(m)
				o.accessLog = false
			})
			stop := make(chan struct{})
			mutated := make(chan int)
			go func() {
				n := 0
				defer func() { mutated <- n }()
				for {
					select {
					case <-stop:
						return
					default:
					}
					k := rand.IntN(len(data))
					if err := f.Truncate(int64(k)); err != nil {
						t.Errorf("truncate: %v", err)
						return
					}
					if _, err := f.WriteAt(data[k:], int64(k)); err != nil {
						t.Errorf("write: %v", err)
						return
					}
					n++
				}
			}()
			g := startGood(t, ts.addr, "/good.bin", good)
			var wg sync.WaitGroup
			var mu sync.Mutex
			ends := map[string]int{}
			for c := range 4 {
				wg.Go(func() {
					for i := range 8 {
						rng := ""
						if (c+i)%3 == 0 {
							rng = fmt.Sprintf("Range: bytes=%d-\r\n", rand.IntN(len(data)))
						}
						end, err := getEnds(ts.addr, "/t.bin", rng)
						if err != nil {
							t.Errorf("GET /t.bin while it changes: %v", err)
							return
						}
						mu.Lock()
						ends[end]++
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			close(stop)
			n := <-mutated
			g.finish(t)
			must(t, f.Truncate(int64(len(data))))
			_, err := f.WriteAt(data, 0)
			must(t, err)
			mustGood(t, ts.addr, "/t.bin", data)
			t.Logf("%d truncations; responses: %v", n, ends)
		})
	}
}

// getEnds GETs path and reads the response to its end, which may come
// early, and says how it ended; only a response that never ends, or no
// response, is an error.
func getEnds(addr, path, extra string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, hangBound)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(hangBound))
	if _, err := io.WriteString(conn, request("GET", path, extra)); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", fmt.Errorf("no response: %w", err)
	}
	switch resp.StatusCode {
	case 200, 206, 416:
	default:
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "", fmt.Errorf("status %d: the body stalled after %d of %d bytes", resp.StatusCode, n, resp.ContentLength)
	case err == nil:
		return fmt.Sprint(resp.StatusCode, " whole"), nil
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return fmt.Sprint(resp.StatusCode, " cut short"), nil
	}
	return "", fmt.Errorf("status %d: %v after %d bytes", resp.StatusCode, err, n)
}

// TestHostileFlags: the limits these tests set have flags, with the
// defaults the server had before they existed, and negative values are
// refused.
func TestHostileFlags(t *testing.T) {
	f := serveCommand().Flags()
	for name, want := range map[string]string{
		"read-header-timeout": readHeaderTimeout.String(),
		"idle-timeout":        idleTimeout.String(),
		"body-timeout":        defaultBodyTimeout.String(),
		"send-timeout":        defaultSendTimeout.String(),
		"allow-hardlinks":     "false",
	} {
		fl := f.Lookup(name)
		if fl == nil {
			t.Errorf("no --%s", name)
			continue
		}
		if fl.DefValue != want {
			t.Errorf("--%s defaults to %s, want %s", name, fl.DefValue, want)
		}
	}
	if err := f.Parse([]string{"--read-header-timeout", "250ms", "--idle-timeout", "1s", "--allow-hardlinks"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, args := range [][]string{
		{"serve", "--addr", "127.0.0.1:0", "--read-header-timeout", "-1s", dir},
		{"serve", "--addr", "127.0.0.1:0", "--idle-timeout", "-1ns", dir},
		{"serve", "--addr", "127.0.0.1:0", "--read-header-timeout", "soon", dir},
		{"serve", "--addr", "127.0.0.1:0", "--body-timeout", "-1s", dir},
		{"serve", "--addr", "127.0.0.1:0", "--send-timeout", "-1s", dir},
	} {
		if _, errOut, code := runCmd(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, errOut)
		}
	}
}
