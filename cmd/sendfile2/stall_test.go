//go:build linux

package main

// Clients that stall every phase of a request, beside a well-behaved client
// that is timed: GETs of a large file that never read, PUTs that stop in the
// middle of their body (with a Content-Length: received with the Sender on
// the hijacked conn; chunked: read through net/http), GETs that announce a
// body they never send, and idle keep-alive conns that fill --max-conns.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2"
)

// The limits the stall tests give serve.
const (
	stallBodyTimeout = time.Second
	stallSendTimeout = time.Second
)

// stallKind is one way a client stalls.
type stallKind struct {
	name  string
	limit string // the limit that must cut it
	// start sends what the client sends before it stalls, on c.
	start func(c net.Conn, i int) error
}

var stallKinds = []stallKind{
	{"GET that never reads", limitSend, func(c net.Conn, _ int) error {
		_, err := io.WriteString(c, "GET /big.bin HTTP/1.1\r\nHost: test\r\n\r\n")
		return err
	}},
	{"PUT stopped mid-body", limitBody, func(c net.Conn, i int) error {
		_, err := fmt.Fprintf(c, "PUT /stalled-%d.bin HTTP/1.1\r\nHost: test\r\nContent-Length: 8388608\r\n\r\n%s", i, bytes.Repeat([]byte("x"), 1024))
		return err
	}},
	{"chunked PUT stopped mid-body", limitBody, func(c net.Conn, i int) error {
		_, err := fmt.Fprintf(c, "PUT /stalled-chunked-%d.bin HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n%s\r\n", i, bytes.Repeat([]byte("x"), 1024))
		return err
	}},
	{"GET announcing a body it never sends", limitBody, func(c net.Conn, _ int) error {
		_, err := io.WriteString(c, "GET /small.txt HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n")
		return err
	}},
}

// dialSmall connects to addr with a 16 KiB receive buffer, so that a server
// whose client does not read fills its send queue soon.
func dialSmall(addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: hangBound, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 16<<10) })
		if err != nil {
			return err
		}
		return serr
	}}
	return d.Dial("tcp", addr)
}

// tcpState is the TCP state of c's socket (unix.BPF_TCP_*), read without
// reading c: a client that never reads still sees the server's FIN or RST.
func tcpState(c net.Conn) uint8 {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0
	}
	var st uint8
	rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			st = info.State
		}
	})
	return st
}

// staller is a client that stalled, and when the server ended its conn.
type staller struct {
	kind    *stallKind
	conn    net.Conn
	stalled time.Time // when it sent its last byte
	cut     time.Duration
}

// waitCut waits until the server has ended every staller's conn (its TCP
// state left ESTABLISHED: a FIN or a RST came), or until the deadline, and
// sets their cut.
func waitCut(ss []*staller, deadline time.Time) error {
	for {
		open := 0
		now := time.Now()
		for _, s := range ss {
			if s.cut != 0 {
				continue
			}
			if tcpState(s.conn) != unix.BPF_TCP_ESTABLISHED {
				s.cut = now.Sub(s.stalled)
			} else {
				open++
			}
		}
		if open == 0 {
			return nil
		}
		if now.After(deadline) {
			return fmt.Errorf("%d of %d stalled clients still connected", open, len(ss))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// goodClient is a well-behaved client: it GETs a 4 MiB file and PUTs a 1
// MiB one, and checks every byte. It returns the time each took.
func goodClient(addr, dir string, want, up []byte) (get, put time.Duration, err error) {
	start := time.Now()
	err = goodGet(addr, "/good.bin", want)
	get = time.Since(start)
	if err != nil {
		return get, 0, err
	}
	start = time.Now()
	err = goodPut(addr, dir, up)
	return get, time.Since(start), err
}

func goodPut(addr, dir string, up []byte) error {
	_, resp, _, err := exchange(addr, fmt.Sprintf("PUT /stored.bin HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(up), up))
	if err != nil {
		return fmt.Errorf("PUT: %w", err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("PUT: status %d", resp.StatusCode)
	}
	got, err := os.ReadFile(filepath.Join(dir, "stored.bin"))
	if err != nil || !bytes.Equal(got, up) {
		return fmt.Errorf("PUT: stored %d bytes (%v), want %d", len(got), err, len(up))
	}
	return nil
}

// TestStallEveryPhase: with 6 and with 150 clients stalled in every phase
// and idle keep-alive conns filling the rest of --max-conns, a well-behaved
// client gets a 4 MiB file and stores a 1 MiB file, byte-exact, and every
// stalled client is cut by the limit of its phase (--send-timeout,
// --body-timeout: 1 s here), for every method and auto. The conns the good
// client needs come from closing the idle ones (--idle-timeout is a minute
// here).
func TestStallEveryPhase(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "big.bin"), 16<<20)
	want := writeRandom(t, filepath.Join(dir, "good.bin"), 4<<20)
	must(t, os.WriteFile(filepath.Join(dir, "small.txt"), []byte("small"), 0o644))
	up := randomData(1<<20, 7)
	methods := []sendfile2.Method{sendfile2.Auto, sendfile2.URing, sendfile2.URingMmap, sendfile2.MsgZC, sendfile2.Copy, sendfile2.Sendfile, sendfile2.Splice}
	for _, m := range methods {
		for _, n := range []int{6, 150} {
			t.Run(fmt.Sprintf("%s/%d", m, n), func(t *testing.T) {
				testStall(t, dir, m, n, want, up)
			})
		}
	}
}

func testStall(t *testing.T, dir string, m sendfile2.Method, n int, want, up []byte) {
	const idle = 4
	ts := startServe(t, dir, func(o *serveOptions) {
		o.method = string(m)
		o.upload = true
		o.maxConns = n + idle
		o.bodyTimeout = stallBodyTimeout
		o.sendTimeout = stallSendTimeout
		o.idleTimeout = time.Minute
		o.accessLog = false
	})
	deadline := time.Now().Add(hangBound)
	// The idle keep-alive conns first, then the stalled clients: every
	// slot is taken.
	for range idle {
		c, err := net.DialTimeout("tcp", ts.addr, hangBound)
		must(t, err)
		defer c.Close()
		c.SetDeadline(deadline)
		io.WriteString(c, "GET /small.txt HTTP/1.1\r\nHost: test\r\n\r\n")
		buf := make([]byte, 4096)
		if k, err := c.Read(buf); err != nil || !bytes.HasSuffix(buf[:k], []byte("small")) {
			t.Fatalf("keep-alive GET: %q, %v", buf[:k], err)
		}
	}
	ss := make([]*staller, n)
	for i := range ss {
		k := &stallKinds[i%len(stallKinds)]
		c, err := dialSmall(ts.addr)
		must(t, err)
		defer c.Close()
		if err := k.start(c, i); err != nil {
			t.Fatalf("%s: %v", k.name, err)
		}
		ss[i] = &staller{kind: k, conn: c, stalled: time.Now()}
	}
	cut := make(chan error, 1)
	go func() { cut <- waitCut(ss, deadline) }()
	get, put, err := goodClient(ts.addr, dir, want, up)
	if err != nil {
		t.Errorf("the well-behaved client, after %v + %v: %v", get.Round(time.Millisecond), put.Round(time.Millisecond), err)
	}
	if err := <-cut; err != nil {
		t.Error(err)
	}
	// The figures: the good client's time, and when each kind was cut.
	var b strings.Builder
	fmt.Fprintf(&b, "good client: GET 4 MiB %v, PUT 1 MiB %v (ok %v); stalled clients cut after", get.Round(time.Millisecond), put.Round(time.Millisecond), err == nil)
	for i := range stallKinds {
		var cuts []time.Duration
		for _, s := range ss {
			if s.kind == &stallKinds[i] && s.cut != 0 {
				cuts = append(cuts, s.cut)
			}
		}
		if len(cuts) > 0 {
			fmt.Fprintf(&b, "; %s: %v-%v", stallKinds[i].name, slices.Min(cuts).Round(10*time.Millisecond), slices.Max(cuts).Round(10*time.Millisecond))
		}
	}
	t.Log(b.String())

	// Each cut is in the log and the metrics, under its limit.
	c := newClient(t)
	mt := scrape(t, c, ts.metricsURL)
	for _, limit := range []string{limitSend, limitBody} {
		wantN := 0
		for _, s := range ss {
			if s.kind.limit == limit {
				wantN++
			}
		}
		got, _ := total(mt, "sendfile2_http_limit_closes_total", `limit="`+limit+`"`)
		if int(got) < wantN {
			t.Errorf("sendfile2_http_limit_closes_total{limit=%q} = %v, want at least %d", limit, got, wantN)
		}
	}
	if got, _ := total(mt, "sendfile2_http_limit_closes_total", `limit="max_conns"`); got < 1 {
		t.Errorf("no idle conn was closed to make room (sendfile2_http_limit_closes_total{limit=\"max_conns\"} = %v)", got)
	}
	if !strings.Contains(ts.log.String(), "limit=send_timeout") || !strings.Contains(ts.log.String(), "limit=body_timeout") {
		t.Errorf("the cuts are not in the log")
	}
	// The stalled uploads left no temporary file once cut.
	waitNoTempFiles(t, dir)
	os.Remove(filepath.Join(dir, "stored.bin"))
}

// waitNoTempFiles fails t if upload temporary files stay in dir.
func waitNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	for len(tempFiles(t, dir)) > 0 {
		if ctx.Err() != nil {
			t.Errorf("temporary files left: %v", tempFiles(t, dir))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestShortResponseLogged: a download cut short by a file truncated while
// it is sent is logged as an error with the bytes sent and the bytes
// announced, without --access-log, and counted.
func TestShortResponseLogged(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "big.bin")
	writeRandom(t, name, 16<<20)
	ts := startServe(t, dir, func(o *serveOptions) {
		o.method = string(sendfile2.Copy)
		o.accessLog = false
	})
	c, err := dialSmall(ts.addr)
	must(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(hangBound))
	io.WriteString(c, "GET /big.bin HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
	if _, err := io.CopyN(io.Discard, c, 1<<20); err != nil {
		t.Fatal(err)
	}
	must(t, os.Truncate(name, 12<<20))
	n, err := io.Copy(io.Discard, c)
	t.Logf("the client read %d bytes more after the truncation (%v)", n, err)
	var line string
	for deadline := time.Now().Add(hangBound); line == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for l := range strings.Lines(ts.log.String()) {
			if strings.Contains(l, "response cut short") {
				line = l
			}
		}
	}
	t.Log(strings.TrimSpace(line))
	if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, "status=200") || !strings.Contains(line, "announced=16777216") || strings.Contains(line, "bytes=16777216") {
		t.Errorf("the short response's log line: %q", line)
	}
	if got, _ := total(scrape(t, newClient(t), ts.metricsURL), "sendfile2_http_short_responses_total"); got != 1 {
		t.Errorf("sendfile2_http_short_responses_total = %v, want 1", got)
	}
}

// TestBodyOfGET: a GET whose body does come is answered as any GET, on a
// conn that stays open for the next request: serve reads and drops the body
// first, as net/http would.
func TestBodyOfGET(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "small.txt"), []byte("small"), 0o644))
	ts := startServe(t, dir, func(o *serveOptions) { o.bodyTimeout = stallBodyTimeout })
	c, err := net.DialTimeout("tcp", ts.addr, hangBound)
	must(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(hangBound))
	br := bufio.NewReader(c)
	for _, req := range []string{
		"GET /small.txt HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello",
		"GET /small.txt HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET /small.txt HTTP/1.1\r\nHost: test\r\n\r\n",
	} {
		io.WriteString(c, req)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%.40q: %v", req, err)
		}
		body, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "small" || err != nil || resp.Close {
			t.Fatalf("%.40q: status %d, body %q (%v), close %v", req, resp.StatusCode, body, err, resp.Close)
		}
	}
}

// TestSlowNotStalled: a client that reads a response slowly, or sends an
// upload slowly, but never pauses for the limit, is not cut, however long
// the whole takes (2.4 s here, with limits of 500 ms).
func TestSlowNotStalled(t *testing.T) {
	dir := t.TempDir()
	want := writeRandom(t, filepath.Join(dir, "file.bin"), 256<<10)
	ts := startServe(t, dir, func(o *serveOptions) {
		o.upload = true
		o.bodyTimeout = 500 * time.Millisecond
		o.sendTimeout = 500 * time.Millisecond
	})
	const pause = 300 * time.Millisecond
	var wg sync.WaitGroup
	wg.Go(func() { // reads 32 KiB, pauses, and so on
		c, err := dialSmall(ts.addr)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(hangBound))
		io.WriteString(c, "GET /file.bin HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
		var got bytes.Buffer
		for {
			time.Sleep(pause)
			n, err := io.CopyN(&got, c, 32<<10)
			if err != nil || n < 32<<10 {
				break
			}
		}
		if !bytes.HasSuffix(got.Bytes(), want) {
			t.Errorf("slow reader: got %d bytes, not the whole file", got.Len())
		}
	})
	up := randomData(64<<10, 3)
	wg.Go(func() { // sends 8 KiB, pauses, and so on
		c, err := net.DialTimeout("tcp", ts.addr, hangBound)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(hangBound))
		fmt.Fprintf(c, "PUT /slow.bin HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n", len(up))
		for p := up; len(p) > 0; p = p[8<<10:] {
			time.Sleep(pause)
			c.Write(p[:8<<10])
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Errorf("slow upload: %v, %v", resp, err)
			return
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "slow.bin")); !bytes.Equal(got, up) {
			t.Errorf("slow upload: stored %d bytes, want %d", len(got), len(up))
		}
	})
	wg.Wait()
	if strings.Contains(ts.log.String(), "limit reached") {
		t.Errorf("a slow client was cut:\n%s", ts.log.String())
	}
}

// TestStalledShutdown: GETs of a large file whose clients never read, with
// the default --send-timeout (a minute), do not hold up the shutdown past
// --shutdown-timeout: the conns still busy are reset and the Sender closed
// within a bound, for the methods whose sends hold the socket while they
// wait for notifications, and auto.
func TestStalledShutdown(t *testing.T) {
	const shutdownTimeout = time.Second
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "big.bin"), 64<<20)
	for _, m := range []sendfile2.Method{sendfile2.URing, sendfile2.MsgZC, sendfile2.URingMmap, sendfile2.Auto} {
		t.Run(string(m), func(t *testing.T) {
			ts := startServe(t, dir, func(o *serveOptions) {
				o.method = string(m)
				o.shutdownTimeout = shutdownTimeout
				o.sendTimeout = defaultSendTimeout
				o.accessLog = false
			})
			for range 4 {
				c, err := dialSmall(ts.addr)
				must(t, err)
				defer c.Close()
				_, err = io.WriteString(c, "GET /big.bin HTTP/1.1\r\nHost: test\r\n\r\n")
				must(t, err)
			}
			time.Sleep(500 * time.Millisecond) // the sends fill the send queues
			ts.cancel()
			select {
			case err := <-ts.done:
				ts.done <- err
			case <-time.After(shutdownTimeout + 10*time.Second):
				t.Fatalf("serve did not return within %v of its context ending:\n%s", shutdownTimeout+10*time.Second, ts.log.String())
			}
		})
	}
}
