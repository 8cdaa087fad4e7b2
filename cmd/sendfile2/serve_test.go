package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/internal/testutil"
)

// syncBuffer is a bytes.Buffer that a server's logger and a test may use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is serve running in-process on 127.0.0.1 ports of its own.
type testServer struct {
	addr       string // host:port of the file server
	url        string // http://addr
	metricsURL string // http://.../metrics
	log        *syncBuffer
	cancel     context.CancelFunc
	done       chan error
	stopOnce   sync.Once
	stopErr    error
}

func defaultServeOptions(dir string) serveOptions {
	return serveOptions{
		dir:             dir,
		addr:            "127.0.0.1:0", // what startServe listens on
		method:          string(sendfile2.Auto),
		maxConns:        100,
		logFormat:       "text",
		accessLog:       true,
		shutdownTimeout: 30 * time.Second,
		maxUpload:       1 << 30, // --max-upload's default
		lean:            true,    // --lean's default
		openFiles:       defaultOpenFiles,
	}
}

// startServe starts serve on dir; opt, if not nil, edits the options first.
// The server stops at the end of the test, if the test has not stopped it.
func startServe(t testing.TB, dir string, opt func(*serveOptions)) *testServer {
	t.Helper()
	o := defaultServeOptions(dir)
	if opt != nil {
		opt(&o)
	}
	ln, err := listen(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mln, err := listen(t.Context(), "127.0.0.1:0")
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{
		addr:       ln.Addr().String(),
		url:        "http://" + ln.Addr().String(),
		metricsURL: "http://" + mln.Addr().String() + "/metrics",
		log:        &syncBuffer{},
		cancel:     cancel,
		done:       make(chan error, 1),
	}
	logger := slog.New(slog.NewTextHandler(ts.log, nil))
	go func() { ts.done <- serve(ctx, o, ln, mln, logger) }()
	t.Cleanup(func() {
		if err := ts.stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", ts.log.String())
		}
	})
	return ts
}

// stop cancels serve's context and waits for it to return.
func (ts *testServer) stop() error {
	ts.stopOnce.Do(func() {
		ts.cancel()
		select {
		case ts.stopErr = <-ts.done:
		case <-time.After(60 * time.Second):
			ts.stopErr = errors.New("serve did not return within 60s of its context ending")
		}
	})
	return ts.stopErr
}

// newClient returns an HTTP client that never uses a proxy and whose idle
// connections are closed at the end of the test.
func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{Proxy: nil, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		Timeout:       2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func do(t *testing.T, c *http.Client, method, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp, body
}

// rawGet sends target as the request-target, exactly as given (clients
// clean paths; an attacker does not), and returns the status and body.
func rawGet(t *testing.T, addr, target string) (int, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n", target)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	return resp.StatusCode, body
}

// requireCurl returns curl's path, and fails the test when curl is missing:
// CI installs it (.ci/run), so its absence is a broken setup, not a skip.
func requireCurl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is not installed, and these tests drive the server with it: install it (apt-get install -y curl; .ci/run does): %v", err)
	}
	return p
}

// curl runs curl with args and returns what it wrote to stdout.
func curl(t *testing.T, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args = append([]string{"--noproxy", "*", "-sS", "--fail"}, args...)
	cmd := exec.CommandContext(ctx, requireCurl(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func writeRandom(t *testing.T, name string, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(size), byte(size >> 8), byte(size >> 16)}).Read(b)
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(b []byte) string { h := sha256.Sum256(b); return fmt.Sprintf("%x", h) }

func TestServeFullFiles(t *testing.T) {
	requireCurl(t)
	dir := t.TempDir()
	ts := startServe(t, dir, nil)
	c := newClient(t)
	for _, size := range []int{0, 1, 4 << 10, 1 << 20, 64 << 20} {
		name := fmt.Sprintf("f%d.bin", size)
		want := sum(writeRandom(t, filepath.Join(dir, name), size))
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			resp, body := do(t, c, "GET", ts.url+"/"+name)
			if resp.StatusCode != 200 || resp.ContentLength != int64(size) {
				t.Fatalf("Go client: status %d, Content-Length %d, want 200 and %d", resp.StatusCode, resp.ContentLength, size)
			}
			if got := sum(body); got != want {
				t.Errorf("Go client: %d bytes, sha256 %s, want %d bytes, %s", len(body), got, size, want)
			}
			if resp.Header.Get("ETag") == "" || resp.Header.Get("Last-Modified") == "" {
				t.Errorf("no ETag or Last-Modified: %v", resp.Header)
			}
			if got := sum(curl(t, ts.url+"/"+name)); got != want {
				t.Errorf("curl: sha256 %s, want %s", got, want)
			}
		})
	}
}

func TestServeRanges(t *testing.T) {
	dir := t.TempDir()
	data := writeRandom(t, filepath.Join(dir, "r.bin"), 3<<20)
	ts := startServe(t, dir, nil)
	c := newClient(t)
	url := ts.url + "/r.bin"

	for _, tc := range []struct {
		rng        string
		start, end int // [start, end)
	}{
		{"bytes=100-199", 100, 200},
		{"bytes=1000-", 1000, len(data)},
		{"bytes=-5000", len(data) - 5000, len(data)},
		{"bytes=1048576-3000000", 1 << 20, 3000001},
	} {
		t.Run(tc.rng, func(t *testing.T) {
			resp, body := do(t, c, "GET", url, "Range", tc.rng)
			wantCR := fmt.Sprintf("bytes %d-%d/%d", tc.start, tc.end-1, len(data))
			if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != wantCR {
				t.Fatalf("status %d, Content-Range %q, want 206 and %q", resp.StatusCode, resp.Header.Get("Content-Range"), wantCR)
			}
			if !bytes.Equal(body, data[tc.start:tc.end]) {
				t.Errorf("body of %d bytes differs from the range of %d", len(body), tc.end-tc.start)
			}
		})
	}

	t.Run("multi", func(t *testing.T) {
		ranges := [][2]int{{0, 10}, {5000, 70000}, {2 << 20, 3 << 20}}
		var spec []string
		for _, r := range ranges {
			spec = append(spec, fmt.Sprintf("%d-%d", r[0], r[1]-1))
		}
		resp, body := do(t, c, "GET", url, "Range", "bytes="+strings.Join(spec, ","))
		mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if resp.StatusCode != http.StatusPartialContent || err != nil || mt != "multipart/byteranges" {
			t.Fatalf("status %d, Content-Type %q (%v), want 206 multipart/byteranges", resp.StatusCode, resp.Header.Get("Content-Type"), err)
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for i, r := range ranges {
			p, err := mr.NextPart()
			if err != nil {
				t.Fatalf("part %d: %v", i, err)
			}
			want := fmt.Sprintf("bytes %d-%d/%d", r[0], r[1]-1, len(data))
			if got := p.Header.Get("Content-Range"); got != want {
				t.Errorf("part %d: Content-Range %q, want %q", i, got, want)
			}
			b, err := io.ReadAll(p)
			if err != nil || !bytes.Equal(b, data[r[0]:r[1]]) {
				t.Errorf("part %d: %d bytes (%v), differ from the range", i, len(b), err)
			}
		}
		if _, err := mr.NextPart(); err != io.EOF {
			t.Errorf("after the last part: %v, want EOF", err)
		}
	})

	t.Run("curl", func(t *testing.T) {
		if got := curl(t, "-r", "4096-1052671", url); !bytes.Equal(got, data[4096:1052672]) {
			t.Errorf("curl got %d bytes that differ from the range", len(got))
		}
	})

	t.Run("unsatisfiable", func(t *testing.T) {
		resp, _ := do(t, c, "GET", url, "Range", fmt.Sprintf("bytes=%d-", len(data)+10))
		if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
			t.Errorf("status %d, want 416", resp.StatusCode)
		}
	})
}

func TestServeHeadAndConditional(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "page.html"), 100<<10)
	ts := startServe(t, dir, nil)
	c := newClient(t)
	url := ts.url + "/page.html"

	resp, body := do(t, c, "HEAD", url)
	if resp.StatusCode != 200 || resp.ContentLength != 100<<10 || len(body) != 0 {
		t.Errorf("HEAD: status %d, Content-Length %d, %d body bytes; want 200, %d, 0", resp.StatusCode, resp.ContentLength, len(body), 100<<10)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q, want text/html", ct)
	}
	etag := resp.Header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) || len(etag) < 5 {
		t.Fatalf("ETag %q is not a strong entity tag", etag)
	}
	if out := string(curl(t, "-I", url)); !strings.Contains(out, "200") || !strings.Contains(strings.ToLower(out), "content-length: 102400") {
		t.Errorf("curl -I:\n%s", out)
	}

	resp, body = do(t, c, "GET", url, "If-None-Match", etag)
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("If-None-Match with the ETag: status %d, %d body bytes; want 304 and none", resp.StatusCode, len(body))
	}
	resp, _ = do(t, c, "GET", url, "If-None-Match", `"other"`)
	if resp.StatusCode != 200 {
		t.Errorf("If-None-Match with another ETag: status %d, want 200", resp.StatusCode)
	}
	resp, _ = do(t, c, "GET", url, "If-Modified-Since", resp.Header.Get("Last-Modified"))
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-Modified-Since Last-Modified: status %d, want 304", resp.StatusCode)
	}
	// A changed file gets another ETag.
	writeRandom(t, filepath.Join(dir, "page.html"), 100<<10+1)
	resp, _ = do(t, c, "GET", url, "If-None-Match", etag)
	if resp.StatusCode != 200 || resp.Header.Get("ETag") == etag {
		t.Errorf("after a change: status %d, ETag %q (was %q); want 200 and a new ETag", resp.StatusCode, resp.Header.Get("ETag"), etag)
	}
}

func TestServeStatus(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644)
	os.MkdirAll(filepath.Join(dir, "site"), 0o755)
	os.WriteFile(filepath.Join(dir, "site", "index.html"), []byte("<p>index</p>"), 0o644)
	os.MkdirAll(filepath.Join(dir, "empty"), 0o755)
	ts := startServe(t, dir, nil)
	c := newClient(t)

	for _, tc := range []struct {
		method, path string
		code         int
		body         string // when not empty, the exact body
		header       string // when not empty, "Name: value" expected
	}{
		{"GET", "/a.txt", 200, "a", ""},
		{"GET", "/missing", 404, "", ""},
		{"GET", "/missing/deeper", 404, "", ""},
		{"GET", "/a.txt/x", 404, "", ""},
		{"POST", "/a.txt", 405, "", "Allow: GET, HEAD"},
		{"PUT", "/a.txt", 405, "", "Allow: GET, HEAD"},
		{"DELETE", "/a.txt", 405, "", "Allow: GET, HEAD"},
		{"GET", "/site/", 200, "<p>index</p>", "Content-Type: text/html; charset=utf-8"},
		{"GET", "/site", 301, "", "Location: ./site/"},
		{"GET", "/empty/", 404, "", ""},
		{"GET", "/", 404, "", ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp, body := do(t, c, tc.method, ts.url+tc.path)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.code)
			}
			if tc.body != "" && string(body) != tc.body {
				t.Errorf("body %q, want %q", body, tc.body)
			}
			if tc.header != "" {
				k, v, _ := strings.Cut(tc.header, ": ")
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
		})
	}
}

// TestServeConfinement checks that no request reaches a file outside DIR:
// secret.txt lies next to DIR, and its contents must never come back.
func TestServeConfinement(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "www")
	secret := filepath.Join(base, "secret.txt")
	marker := "TOP-SECRET-" + strconv.FormatUint(rand.Uint64(), 16)
	must(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	must(t, os.WriteFile(secret, []byte(marker), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "inner.txt"), []byte("inner"), 0o644))
	must(t, os.Symlink("../secret.txt", filepath.Join(dir, "escape")))
	must(t, os.Symlink(secret, filepath.Join(dir, "absolute")))
	must(t, os.Symlink("..", filepath.Join(dir, "updir")))
	must(t, os.Symlink("/", filepath.Join(dir, "slash")))
	must(t, os.Symlink("../../secret.txt", filepath.Join(dir, "sub", "escape2")))
	must(t, os.Symlink("inner.txt", filepath.Join(dir, "inlink")))
	ts := startServe(t, dir, nil)

	for _, target := range []string{
		"/../secret.txt",
		"/../../secret.txt",
		"/sub/../../secret.txt",
		"/%2e%2e/secret.txt",
		"/%2e%2e%2fsecret.txt",
		"/..%2fsecret.txt",
		"/%2E%2E%2Fsecret.txt",
		"/sub/%2e%2e%2f%2e%2e%2fsecret.txt",
		"/%252e%252e%252fsecret.txt",
		"/%252e%252e/secret.txt",
		"/..%252fsecret.txt",
		"/.%2e/secret.txt",
		"//../secret.txt",
		"/..\\secret.txt",
		"/%2e%2e%5csecret.txt",
		"/escape",
		"/absolute",
		"/updir/secret.txt",
		"/updir/www/inner.txt",
		"/slash" + secret,
		"/sub/escape2",
		"/secret.txt%00.html",
		"/" + strings.TrimPrefix(secret, "/"),
		secret,
	} {
		code, body := rawGet(t, ts.addr, target)
		if bytes.Contains(body, []byte(marker)) {
			t.Errorf("GET %s: served the secret file outside DIR (status %d)", target, code)
		} else if code == 200 {
			t.Errorf("GET %s: status 200 (%q), want a refusal", target, body)
		}
	}
	// Confined, not refused: these stay inside DIR.
	for _, target := range []string{"/sub/../inner.txt", "/../inner.txt", "/%2e%2e/inner.txt", "/inlink"} {
		if code, body := rawGet(t, ts.addr, target); code != 200 || string(body) != "inner" {
			t.Errorf("GET %s: status %d, body %q; want 200 inner", target, code, body)
		}
	}
	if out := curl(t, "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", "--no-fail", ts.url+"/../secret.txt"); string(out) != "404" {
		t.Errorf("curl --path-as-is /../secret.txt: status %s, want 404", out)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestServeFIFO(t *testing.T) {
	dir := t.TempDir()
	must(t, unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644))
	ts := startServe(t, dir, nil)
	c := newClient(t)
	c.Timeout = 20 * time.Second // a server stuck in open(2) fails here
	for range 3 {
		if resp, _ := do(t, c, "GET", ts.url+"/fifo"); resp.StatusCode != 404 {
			t.Errorf("GET /fifo: status %d, want 404", resp.StatusCode)
		}
		if resp, _ := do(t, c, "HEAD", ts.url+"/fifo"); resp.StatusCode != 404 {
			t.Errorf("HEAD /fifo: status %d, want 404", resp.StatusCode)
		}
	}
	if resp, body := do(t, c, "GET", ts.url+"/a.txt"); resp.StatusCode != 200 || string(body) != "a" {
		t.Errorf("after the FIFO: status %d, body %q", resp.StatusCode, body)
	}
}

// scrape returns the samples of the metrics at url, keyed by their name and
// labels as the text exposition format writes them.
func scrape(t *testing.T, c *http.Client, url string) map[string]float64 {
	t.Helper()
	resp, body := do(t, c, "GET", url)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	m := map[string]float64{}
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// total sums the samples named name whose labels contain every one of labels.
func total(m map[string]float64, name string, labels ...string) (float64, bool) {
	var s float64
	found := false
	for k, v := range m {
		n, l, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		ok := true
		for _, want := range labels {
			ok = ok && strings.Contains(l, want)
		}
		if ok {
			s += v
			found = true
		}
	}
	return s, found
}

func senderMethod(t *testing.T, m map[string]float64) string {
	t.Helper()
	for k := range m {
		if rest, ok := strings.CutPrefix(k, `sendfile2_sender_info{method="`); ok {
			return strings.TrimSuffix(rest, `"}`)
		}
	}
	t.Fatal("no sendfile2_sender_info in the metrics")
	return ""
}

// TestServeMetrics checks that file bodies go through the Sender, not
// net/http's own sendfile: its byte counters grow by the bodies' bytes.
func TestServeMetrics(t *testing.T) {
	dir := t.TempDir()
	const size = 8 << 20
	data := writeRandom(t, filepath.Join(dir, "big.bin"), size)
	for _, m := range []sendfile2.Method{sendfile2.Auto, sendfile2.URing, sendfile2.Copy} {
		t.Run(string(m), func(t *testing.T) {
			if m == sendfile2.URing {
				s, err := sendfile2.NewSender(sendfile2.Config{Method: m})
				testutil.RequireFeature(t, "io_uring with IORING_OP_SEND_ZC", "6.0", err == nil, err)
				s.Close()
			}
			testMetrics(t, dir, m, data)
		})
	}
}

func testMetrics(t *testing.T, dir string, m sendfile2.Method, data []byte) {
	ts := startServe(t, dir, func(o *serveOptions) { o.method = string(m) })
	c := newClient(t)

	before := scrape(t, c, ts.metricsURL)
	method := senderMethod(t, before)
	if m != sendfile2.Auto && method != string(m) {
		t.Fatalf("sendfile2_sender_info says %s, want %s", method, m)
	}
	if _, ok := total(before, "sendfile2_sent_bytes_total", `method="`+method+`"`); !ok {
		t.Fatalf("no sendfile2_sent_bytes_total for %s before any send", method)
	}
	// Auto may send some bodies with Copy (small ones, or on a route where
	// the kernel keeps copying, as on loopback): count every safe method.
	counted := []string{method}
	if m == sendfile2.Auto {
		counted = []string{"uring", "uring-mmap", "copy"}
	}
	sumOf := func(mm map[string]float64, name string) float64 {
		var s float64
		for _, k := range counted {
			v, _ := total(mm, name, `method="`+k+`"`)
			s += v
		}
		return s
	}
	const gets = 4
	var body int64
	for range gets {
		resp, b := do(t, c, "GET", ts.url+"/big.bin")
		if resp.StatusCode != 200 || !bytes.Equal(b, data) {
			t.Fatalf("status %d, %d bytes that differ from the file", resp.StatusCode, len(b))
		}
		body += int64(len(b))
	}
	got := curl(t, ts.url+"/big.bin")
	if !bytes.Equal(got, data) {
		t.Fatalf("curl: %d bytes that differ from the file", len(got))
	}
	body += int64(len(got))
	responses := int64(gets + 1)

	// A client has the whole body before the server's send returns (the
	// Sender waits for the notification), and so before the Sender counts it.
	// The request counter moves once the handler has returned.
	after := scrape(t, c, ts.metricsURL)
	for i := 0; i < 1000; i++ {
		if n, _ := total(after, "sendfile2_http_requests_total", `code="200"`); n >= float64(responses) {
			break
		}
		time.Sleep(10 * time.Millisecond)
		after = scrape(t, c, ts.metricsURL)
	}
	// net/http writes the response head and hands the body to the conn's
	// ReadFrom; the conn holds that write and the Sender sends it with the
	// body (sendfile2.ServeContent), so the Sender counts every byte of
	// every response: the bodies, and a head of a few hundred bytes each.
	if grew := int64(sumOf(after, "sendfile2_sent_bytes_total") - sumOf(before, "sendfile2_sent_bytes_total")); grew < body+100*responses || grew > body+1000*responses {
		t.Errorf("sendfile2_sent_bytes_total{method=~%q} grew by %d for %d body bytes in %d responses: the heads and bodies did not go through the Sender", counted, grew, body, responses)
	}
	for _, unsafe := range []string{"sendfile", "splice"} {
		if _, ok := total(after, "sendfile2_sent_bytes_total", `method="`+unsafe+`"`); ok && method != unsafe {
			t.Errorf("the Sender sent with %s", unsafe)
		}
	}
	if n := sumOf(after, "sendfile2_sends_total"); n < float64(responses) {
		t.Errorf("sendfile2_sends_total %v, want at least %d", n, responses)
	}
	if n := sumOf(after, "sendfile2_send_errors_total"); n != 0 {
		t.Errorf("sendfile2_send_errors_total %v", n)
	}
	// serve's file bodies all reach the Sender: nothing went around it.
	if n, ok := total(after, "sendfile2_bypassed_total", `reason="wrapped-conn"`); !ok || sumOf(after, "sendfile2_bypassed_total") != 0 {
		t.Errorf("sendfile2_bypassed_total: %v, %v; want every reason, at 0", n, ok)
	}
	if n, _ := total(after, "sendfile2_http_requests_total", `code="200"`); n < float64(responses) {
		t.Errorf("sendfile2_http_requests_total{code=200} %v, want at least %d", n, responses)
	}
	for _, name := range []string{"sendfile2_sends_in_flight", "sendfile2_fallbacks_total", "go_goroutines", "process_open_fds"} {
		if _, ok := total(after, name); !ok {
			t.Errorf("no %s", name)
		}
	}
	if method == "uring" || method == "uring-mmap" {
		// Every zero-copy send is notified; on loopback the kernel copies.
		if n, _ := total(after, "sendfile2_notification_latency_seconds_count", `method="`+method+`"`); n == 0 {
			t.Errorf("no sendfile2_notification_latency_seconds observations for %s", method)
		}
		zc, _ := total(after, "sendfile2_zerocopy_bytes_total", `method="`+method+`"`)
		cp, _ := total(after, "sendfile2_copied_bytes_total", `method="`+method+`"`)
		if zc+cp == 0 {
			t.Errorf("neither copied nor zero-copy bytes counted")
		}
	}
}

// TestServeAtomicReplace downloads a file while it is replaced (written
// aside, renamed over) again and again: each body is one version, whole.
func TestServeAtomicReplace(t *testing.T) {
	dir := t.TempDir()
	const size = 4 << 20
	name := filepath.Join(dir, "swap.bin")
	must(t, os.WriteFile(name, bytes.Repeat([]byte{1}, size), 0o644))
	ts := startServe(t, dir, nil)

	stop := make(chan struct{})
	writerDone := make(chan int)
	go func() {
		versions := 1
		defer func() { writerDone <- versions }()
		for v := 2; ; v = v%250 + 1 {
			select {
			case <-stop:
				return
			default:
			}
			f, err := os.CreateTemp(dir, ".swap-*")
			if err != nil {
				t.Error(err)
				return
			}
			_, err = f.Write(bytes.Repeat([]byte{byte(v)}, size))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = os.Rename(f.Name(), name)
			}
			if err != nil {
				t.Error(err)
				return
			}
			versions++
		}
	}()

	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[byte]int{}
	for range 3 {
		wg.Go(func() {
			c := newClient(t)
			for range 15 {
				resp, err := c.Get(ts.url + "/swap.bin")
				if err != nil {
					t.Error(err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					t.Errorf("status %d, %v", resp.StatusCode, err)
					return
				}
				if len(b) != size {
					t.Errorf("body of %d bytes, want %d", len(b), size)
					return
				}
				if n := bytes.Count(b, b[:1]); n != size || b[0] == 0 {
					t.Errorf("mixed body: %d of %d bytes are %d, the first byte's value", n, size, b[0])
					return
				}
				mu.Lock()
				seen[b[0]]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	versions := <-writerDone
	t.Logf("%d versions written, %d distinct ones downloaded", versions, len(seen))
}

// TestServeGracefulShutdown ends serve's context during a slow download:
// the download completes, whole, and serve returns.
func TestServeGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	const size = 16 << 20
	data := writeRandom(t, filepath.Join(dir, "slow.bin"), size)
	ts := startServe(t, dir, nil)

	conn, err := net.Dial("tcp", ts.addr)
	must(t, err)
	defer conn.Close()
	must(t, conn.(*net.TCPConn).SetReadBuffer(64<<10)) // a small window: the server has to wait for us
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	fmt.Fprintf(conn, "GET /slow.bin HTTP/1.1\r\nHost: test\r\n\r\n") // keep-alive
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	must(t, err)
	if resp.StatusCode != 200 || resp.ContentLength != size {
		t.Fatalf("status %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
	}
	got := make([]byte, 0, size)
	buf := make([]byte, 32<<10)
	n, err := io.ReadFull(resp.Body, buf)
	must(t, err)
	got = append(got, buf[:n]...)

	ts.cancel() // what SIGINT or SIGTERM does to run's context

	for len(got) < size {
		time.Sleep(time.Millisecond)
		n, err := resp.Body.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes that differ from the file's %d", len(got), size)
	}
	if err := ts.stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	// The connection was idle after the response: shutdown closed it.
	if n, err := br.Read(buf); err != io.EOF {
		t.Errorf("after shutdown: read %d, %v; want EOF", n, err)
	}
	if !strings.Contains(ts.log.String(), "shutting down") {
		t.Errorf("no shutdown in the log:\n%s", ts.log.String())
	}
}

func TestServeMaxConns(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644))
	ts := startServe(t, dir, func(o *serveOptions) { o.maxConns = 1 })

	get := func(conn net.Conn, br *bufio.Reader) (*http.Response, error) {
		fmt.Fprintf(conn, "GET /a.txt HTTP/1.1\r\nHost: test\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	// a is in the middle of its request's header: not idle.
	a, err := net.Dial("tcp", ts.addr)
	must(t, err)
	defer a.Close()
	fmt.Fprintf(a, "GET /a.txt HTTP/1.1\r\n")
	b, err := net.Dial("tcp", ts.addr) // the kernel accepts it; serve must not yet
	must(t, err)
	defer b.Close()
	bb := bufio.NewReader(b)
	b.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if resp, err := get(b, bb); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a second connection was served while the first was open (--max-conns 1): %v, %v", resp, err)
	}
	a.Close()
	b.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bb, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the first connection closed: %v, %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// b is now an idle keep-alive conn: a new client closes it to get in,
	// without waiting for --idle-timeout.
	c, err := net.Dial("tcp", ts.addr)
	must(t, err)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if resp, err := get(c, bufio.NewReader(c)); err != nil || resp.StatusCode != 200 {
		t.Fatalf("a new client with an idle conn holding the only slot: %v, %v", resp, err)
	}
	if n, err := bb.Read(make([]byte, 1)); err == nil {
		t.Fatalf("the idle conn is still open: read %d bytes", n)
	}
	if !strings.Contains(ts.log.String(), "limit=max_conns") {
		t.Errorf("the reclaimed idle conn is not in the log")
	}
}

// TestServeCommand runs `sendfile2 serve` as main does, learns its address
// from the first log line, and stops it as SIGTERM would.
func TestServeCommand(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello\n"), 0o644))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout bytes.Buffer
	stderr := &syncBuffer{}
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
			"--access-log", "--log-format", "json", "--method", "copy", dir}, &stdout, stderr)
	}()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-code
		}
	}()
	waitLog := func(msg string) map[string]any {
		t.Helper()
		for range 1000 {
			for line := range strings.Lines(stderr.String()) {
				var e map[string]any
				if json.Unmarshal([]byte(line), &e) == nil && e["msg"] == msg {
					return e
				}
			}
			select {
			case c := <-code:
				stopped = true
				t.Fatalf("serve exited with %d:\n%s", c, stderr.String())
			case <-time.After(10 * time.Millisecond):
			}
		}
		t.Fatalf("no %q line in the log after 10s:\n%s", msg, stderr.String())
		return nil
	}
	start := waitLog("serving")
	if start["method"] != "copy" || start["dir"] != dir || start["addr"] == nil || start["metrics"] == nil {
		t.Errorf("start line %v", start)
	}
	c := newClient(t)
	resp, body := do(t, c, "GET", "http://"+start["addr"].(string)+"/hello.txt",
		"User-Agent", "test-agent/1.0", "Referer", "http://example.com/page")
	if resp.StatusCode != 200 || string(body) != "hello\n" {
		t.Errorf("status %d, body %q", resp.StatusCode, body)
	}
	req := waitLog("request")
	for k, want := range map[string]any{"method": "GET", "path": "/hello.txt", "status": 200.0, "bytes": 6.0,
		"user_agent": "test-agent/1.0", "referer": "http://example.com/page"} {
		if req[k] != want {
			t.Errorf("access log %s: %v, want %v", k, req[k], want)
		}
	}
	if req["remote"] == nil {
		t.Errorf("access log lacks remote: %v", req)
	}
	// dur reads as a duration, dur_s is the same in seconds.
	dur, err := time.ParseDuration(fmt.Sprint(req["dur"]))
	if secs, ok := req["dur_s"].(float64); err != nil || !ok || dur <= 0 || math.Abs(dur.Seconds()-secs) > 1e-6 {
		t.Errorf("access log dur %v (%v), dur_s %v", req["dur"], err, req["dur_s"])
	}
	m := scrape(t, c, "http://"+start["metrics"].(string)+"/metrics")
	if n, ok := total(m, "sendfile2_http_request_duration_seconds_count", `code="2xx"`, `method="GET"`); !ok || n != 1 {
		t.Errorf("sendfile2_http_request_duration_seconds_count{code=2xx,method=GET} %v (%v), want 1", n, ok)
	}
	if n, ok := total(m, "sendfile2_sent_bytes_total", `method="copy"`); !ok || n < float64(len("HTTP/1.1 200 OK\r\n\r\nhello\n")) {
		// The head, held, and the 6 bytes of the file go out in the
		// Sender's send: net/http does not copy them for sniffing.
		t.Errorf("sendfile2_sent_bytes_total{method=copy} %v (%v), want the head and the body", n, ok)
	}
	if len(stdout.String()) != 0 {
		t.Errorf("serve wrote to stdout: %q", stdout.String())
	}
	cancel()
	select {
	case c := <-code:
		stopped = true
		if c != 0 {
			t.Errorf("exit %d:\n%s", c, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not stop within 60s of its context ending")
	}
}

func TestServeBadArguments(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	must(t, os.WriteFile(file, nil, 0o644))
	for _, args := range [][]string{
		{"serve", "--addr", "127.0.0.1:0", "--method", "bogus", dir},
		{"serve", "--addr", "127.0.0.1:0", dir, dir},
		{"serve", "--addr", "127.0.0.1:0", "--max-conns", "0", dir},
		{"serve", "--addr", "127.0.0.1:0", "--log-format", "xml", dir},
		{"serve", "--addr", "127.0.0.1:0", "--shutdown-timeout", "-1s", dir},
		{"serve", "--addr", "127.0.0.1:0", "--buffer-size", "1000", dir},
		{"serve", "--addr", "127.0.0.1:0", filepath.Join(dir, "nonexistent")},
		{"serve", "--addr", "127.0.0.1:0", file},
		{"serve", "--addr", "127.0.0.1:99999", dir},
		{"serve", "--addr", "127.0.0.1:0", "--upload", "--max-upload", "lots", dir},
		{"serve", "--addr", "127.0.0.1:0", "--upload", "--max-upload", "-1", dir},
		{"serve", "--addr", "127.0.0.1:0", "--upload", "--max-upload", "9EiB", dir},
	} {
		if _, errOut, code := runCmd(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, errOut)
		}
	}
}

// randomData returns size bytes that differ with seed.
func randomData(size int, seed byte) []byte {
	b := make([]byte, size)
	rand.NewChaCha8([32]byte{seed, byte(size), byte(size >> 8), byte(size >> 16)}).Read(b)
	return b
}

// curlPut uploads the file src to url with `curl -T` and returns the status.
func curlPut(t *testing.T, src, url string, args ...string) int {
	t.Helper()
	args = append([]string{"--no-fail", "-T", src, "-o", "/dev/null", "-w", "%{http_code}"}, args...)
	out := curl(t, append(args, url)...)
	code, err := strconv.Atoi(string(out))
	if err != nil {
		t.Fatalf("curl -T %s %s: status %q", src, url, out)
	}
	return code
}

// goPut uploads body to url with the Go client: with its Content-Length
// when chunked is false, else with chunked encoding. hdr are header names and
// values.
func goPut(t *testing.T, c *http.Client, url string, body []byte, chunked bool, hdr ...string) *http.Response {
	t.Helper()
	var r io.Reader = bytes.NewReader(body)
	if chunked {
		r = io.MultiReader(r) // hides the length: the client sends chunks
	}
	req, err := http.NewRequest("PUT", url, r)
	must(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// rawPut sends a PUT of body to target, as given, and returns the status.
func rawPut(t *testing.T, addr, target string, body []byte) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	must(t, err)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", target, len(body), body)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("PUT %s: %v", target, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// tempFiles returns the upload temporary files left under dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			found = append(found, p)
		}
		return nil
	})
	must(t, err)
	return found
}

// tree describes every entry under dir (symbolic links not followed),
// except skip: its kind, and the sha256 of regular files.
func tree(t *testing.T, dir, skip string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		switch {
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			m[p] = "file " + sum(b)
		case d.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			m[p] = "link " + target
		default:
			m[p] = d.Type().String()
		}
		return nil
	})
	must(t, err)
	return m
}

// waitRequest waits for the access log line of a request whose text holds
// want ("method=PUT path=/x status=400"): the handler has returned then.
func waitRequest(t *testing.T, ts *testServer, want string) string {
	t.Helper()
	for range 3000 {
		for line := range strings.Lines(ts.log.String()) {
			if strings.Contains(line, "msg=request "+want) {
				return line
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no access log line with %q after 30s:\n%s", want, ts.log.String())
	return ""
}

func uploadOptions(method sendfile2.Method) func(*serveOptions) {
	return func(o *serveOptions) {
		o.upload = true
		o.method = string(method)
	}
}

// TestServeUpload uploads files with curl -T and the Go client, creating
// (201) and replacing (204) them, and downloads them back, byte-exact.
func TestServeUpload(t *testing.T) {
	requireCurl(t)
	for _, m := range []sendfile2.Method{sendfile2.Auto, sendfile2.Copy, sendfile2.Splice} {
		t.Run(string(m), func(t *testing.T) {
			dir, src := t.TempDir(), t.TempDir()
			ts := startServe(t, dir, uploadOptions(m))
			c := newClient(t)
			check := func(t *testing.T, name string, want []byte) {
				t.Helper()
				resp, body := do(t, c, "GET", ts.url+"/"+name)
				if resp.StatusCode != 200 || sum(body) != sum(want) {
					t.Fatalf("GET %s after the upload: status %d, %d bytes, sha256 %s; want 200, %d bytes, %s",
						name, resp.StatusCode, len(body), sum(body), len(want), sum(want))
				}
			}
			for _, size := range []int{0, 1, 1<<20 + 3, 64 << 20} {
				t.Run(strconv.Itoa(size), func(t *testing.T) {
					name := fmt.Sprintf("up%d.bin", size)
					for i, want := range []int{http.StatusCreated, http.StatusNoContent} {
						data := randomData(size, byte(i))
						file := filepath.Join(src, fmt.Sprintf("%d-%d", size, i))
						must(t, os.WriteFile(file, data, 0o644))
						if code := curlPut(t, file, ts.url+"/"+name); code != want {
							t.Fatalf("curl -T, upload %d: status %d, want %d", i+1, code, want)
						}
						check(t, name, data)
					}
				})
			}
			t.Run("go", func(t *testing.T) {
				data := randomData(3<<20+5, 7)
				for _, tc := range []struct {
					name    string
					chunked bool
					hdr     []string
					want    int
				}{
					{"length", false, nil, http.StatusCreated},
					{"expect", false, []string{"Expect", "100-continue"}, http.StatusNoContent},
					{"chunked", true, nil, http.StatusNoContent},
				} {
					t.Run(tc.name, func(t *testing.T) {
						data := append(data, tc.name...)
						resp := goPut(t, c, ts.url+"/go.bin", data, tc.chunked, tc.hdr...)
						if resp.StatusCode != tc.want {
							t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
						}
						if resp.Header.Get("ETag") == "" {
							t.Errorf("no ETag in the response")
						}
						check(t, "go.bin", data)
					})
				}
			})
			t.Run("subdirectory", func(t *testing.T) {
				must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
				data := randomData(100<<10, 9)
				if resp := goPut(t, c, ts.url+"/sub/in.bin", data, false); resp.StatusCode != http.StatusCreated {
					t.Fatalf("status %d, want 201", resp.StatusCode)
				}
				check(t, "sub/in.bin", data)
			})
			if left := tempFiles(t, dir); len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
			waitRequest(t, ts, "method=PUT path=/up67108864.bin status=204 bytes=67108864")
		})
	}
}

// TestServeUploadInterrupted cuts uploads short: the old file stays, whole,
// and no temporary file remains.
func TestServeUploadInterrupted(t *testing.T) {
	for _, m := range []sendfile2.Method{sendfile2.Auto, sendfile2.Copy} {
		t.Run(string(m), func(t *testing.T) {
			dir := t.TempDir()
			old := writeRandom(t, filepath.Join(dir, "keep.bin"), 2<<20)
			ts := startServe(t, dir, uploadOptions(m))
			for _, how := range []string{"close", "half-close"} {
				t.Run(how, func(t *testing.T) {
					conn, err := net.Dial("tcp", ts.addr)
					must(t, err)
					defer conn.Close()
					conn.SetDeadline(time.Now().Add(time.Minute))
					fmt.Fprintf(conn, "PUT /keep.bin HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n", 10<<20)
					_, err = conn.Write(randomData(1<<20, 3))
					must(t, err)
					if how == "close" {
						conn.Close()
						waitRequest(t, ts, "method=PUT path=/keep.bin status=400")
					} else {
						must(t, conn.(*net.TCPConn).CloseWrite())
						resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
						if err != nil {
							t.Fatalf("reading the response: %v", err)
						}
						resp.Body.Close()
						if resp.StatusCode != http.StatusBadRequest {
							t.Errorf("status %d, want 400", resp.StatusCode)
						}
					}
					got, err := os.ReadFile(filepath.Join(dir, "keep.bin"))
					must(t, err)
					if !bytes.Equal(got, old) {
						t.Errorf("keep.bin changed: %d bytes, want the old %d", len(got), len(old))
					}
					if left := tempFiles(t, dir); len(left) > 0 {
						t.Errorf("temporary files left: %v", left)
					}
				})
			}
			c := newClient(t)
			if resp, body := do(t, c, "GET", ts.url+"/keep.bin"); resp.StatusCode != 200 || !bytes.Equal(body, old) {
				t.Errorf("GET keep.bin: status %d, %d bytes that differ from the old file", resp.StatusCode, len(body))
			}
		})
	}
}

// TestServeUploadTooLarge checks --max-upload: 413, and nothing written.
func TestServeUploadTooLarge(t *testing.T) {
	requireCurl(t)
	dir, src := t.TempDir(), t.TempDir()
	old := writeRandom(t, filepath.Join(dir, "old.bin"), 100)
	ts := startServe(t, dir, func(o *serveOptions) {
		o.upload = true
		o.maxUpload = 1000
	})
	c := newClient(t)
	for _, size := range []int{1001, 4 << 20} {
		file := filepath.Join(src, strconv.Itoa(size))
		must(t, os.WriteFile(file, randomData(size, 1), 0o644))
		for _, name := range []string{"new.bin", "old.bin"} {
			if code := curlPut(t, file, ts.url+"/"+name); code != http.StatusRequestEntityTooLarge {
				t.Errorf("curl -T %d bytes to %s: status %d, want 413", size, name, code)
			}
		}
	}
	if resp := goPut(t, c, ts.url+"/new.bin", randomData(2000, 2), true); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked 2000 bytes: status %d, want 413", resp.StatusCode)
	}

	// A client that waits for 100 Continue gets 413 instead.
	conn, err := net.Dial("tcp", ts.addr)
	must(t, err)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "PUT /new.bin HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", int64(10)<<30)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 413 ") {
		t.Errorf("10 GiB with Expect: 100-continue: %q, %v; want 413 at once", line, err)
	}
	conn.Close()

	if _, err := os.Lstat(filepath.Join(dir, "new.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("new.bin: %v, want it absent", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "old.bin")); err != nil || !bytes.Equal(got, old) {
		t.Errorf("old.bin changed (%v)", err)
	}
	if left := tempFiles(t, dir); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	// At the limit exactly: accepted.
	file := filepath.Join(src, "1000")
	data := randomData(1000, 3)
	must(t, os.WriteFile(file, data, 0o644))
	if code := curlPut(t, file, ts.url+"/new.bin"); code != http.StatusCreated {
		t.Errorf("curl -T 1000 bytes: status %d, want 201", code)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "new.bin")); !bytes.Equal(got, data) {
		t.Errorf("new.bin: %d bytes that differ from the upload", len(got))
	}
}

// TestServeUploadConfinement checks that no PUT writes outside DIR: the
// directory next to DIR, and every symbolic link's target out there, stay
// as they were.
func TestServeUploadConfinement(t *testing.T) {
	requireCurl(t)
	base := t.TempDir()
	dir := filepath.Join(base, "www")
	outside := filepath.Join(base, "outside")
	must(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	must(t, os.MkdirAll(outside, 0o755))
	must(t, os.WriteFile(filepath.Join(outside, "victim.txt"), []byte("victim"), 0o644))
	must(t, os.Symlink("../outside", filepath.Join(dir, "out")))
	must(t, os.Symlink("../outside/victim.txt", filepath.Join(dir, "escape")))
	must(t, os.Symlink(filepath.Join(outside, "victim.txt"), filepath.Join(dir, "abs")))
	must(t, os.Symlink(outside, filepath.Join(dir, "absdir")))
	must(t, os.Symlink("../..", filepath.Join(dir, "sub", "up")))
	must(t, os.Symlink("/", filepath.Join(dir, "slash")))
	before := tree(t, base, dir)
	ts := startServe(t, dir, func(o *serveOptions) { o.upload = true })
	body := []byte("OVERWRITTEN")

	refused := []string{
		"/../outside/victim.txt",
		"/../../outside/victim.txt",
		"/sub/../../outside/victim.txt",
		"/%2e%2e/outside/victim.txt",
		"/%2e%2e%2foutside%2fvictim.txt",
		"/..%2foutside%2fvictim.txt",
		"/%2E%2E%2Foutside%2Fvictim.txt",
		"/sub/%2e%2e%2f%2e%2e%2foutside%2fnew.txt",
		"//../outside/new.txt",
		"/out/victim.txt",
		"/out/new.txt",
		"/escape",
		"/abs",
		"/absdir/new.txt",
		"/sub/up/outside/new.txt",
		"/slash" + outside + "/new.txt",
		"/" + strings.TrimPrefix(outside, "/") + "/new.txt",
		outside + "/new.txt",
		"/victim.txt%00",
	}
	for _, target := range refused {
		if code := rawPut(t, ts.addr, target, body); code < 400 {
			t.Errorf("PUT %s: status %d, want a refusal", target, code)
		}
	}
	// Confined: these land inside DIR, if anywhere.
	for _, target := range []string{"/..\\outside\\victim.txt", "/%252e%252e%252foutside%252fvictim.txt", "/..%252foutside%252fnew.txt"} {
		rawPut(t, ts.addr, target, body)
	}
	if code := curlPut(t, "-", ts.url+"/../outside/victim.txt", "--path-as-is"); code < 400 {
		t.Errorf("curl --path-as-is -T - /../outside/victim.txt: status %d, want a refusal", code)
	}
	after := tree(t, base, dir)
	for k, v := range after {
		if before[k] != v {
			t.Errorf("outside DIR, %s is now %q, was %q", k, v, before[k])
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			t.Errorf("outside DIR, %s is gone", k)
		}
	}
	if left := tempFiles(t, base); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestServeUploadStatus checks the path rules of PUT, and what GET and
// other methods say with --upload.
func TestServeUploadStatus(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "site"), 0o755))
	must(t, unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(t, os.Symlink("a.txt", filepath.Join(dir, "inlink")))
	ts := startServe(t, dir, func(o *serveOptions) { o.upload = true })
	c := newClient(t)

	for _, tc := range []struct {
		path string
		hdr  []string
		code int
	}{
		{"/site", nil, http.StatusConflict},
		{"/site/", nil, http.StatusConflict},
		{"/", nil, http.StatusConflict},
		{"/missing/new.txt", nil, http.StatusConflict},
		{"/a.txt/new.txt", nil, http.StatusConflict},
		{"/fifo", nil, http.StatusConflict},
		{"/inlink", nil, http.StatusConflict},
		{"/" + tempPrefix + "0123456789abcdef", nil, http.StatusForbidden},
		{"/site/" + tempPrefix + "x", nil, http.StatusForbidden},
		{"/a.txt", []string{"Content-Range", "bytes 0-1/2"}, http.StatusBadRequest},
		{"/site/new.txt", nil, http.StatusCreated},
		{"/site/new.txt", nil, http.StatusNoContent},
	} {
		t.Run(tc.path, func(t *testing.T) {
			for _, chunked := range []bool{false, true} {
				want := tc.code
				if chunked && want == http.StatusCreated {
					want = http.StatusNoContent
				}
				if resp := goPut(t, c, ts.url+tc.path, []byte("PUT"), chunked, tc.hdr...); resp.StatusCode != want {
					t.Errorf("chunked %v: status %d, want %d", chunked, resp.StatusCode, want)
				}
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(dir, "a.txt")); err != nil || string(b) != "a" {
		t.Errorf("a.txt: %q, %v; want it unchanged", b, err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "inlink")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("inlink is no longer a symbolic link: %v", err)
	}
	resp, _ := do(t, c, "POST", ts.url+"/a.txt")
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD, PUT" {
		t.Errorf("POST: status %d, Allow %q; want 405 and GET, HEAD, PUT", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if left := tempFiles(t, dir); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestServeUploadDisabled: without --upload, PUT is refused and writes nothing.
func TestServeUploadDisabled(t *testing.T) {
	requireCurl(t)
	dir, src := t.TempDir(), t.TempDir()
	ts := startServe(t, dir, nil)
	file := filepath.Join(src, "f")
	must(t, os.WriteFile(file, []byte("data"), 0o644))
	if code := curlPut(t, file, ts.url+"/f"); code != http.StatusMethodNotAllowed {
		t.Errorf("curl -T: status %d, want 405", code)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("DIR holds %v after a refused PUT", entries)
	}
}

// TestServeUploadMetrics checks that PUT bodies with a Content-Length go
// through the Sender's Receive: its received bytes grow by them.
func TestServeUploadMetrics(t *testing.T) {
	requireCurl(t)
	dir, src := t.TempDir(), t.TempDir()
	ts := startServe(t, dir, func(o *serveOptions) { o.upload = true })
	c := newClient(t)
	before := scrape(t, c, ts.metricsURL)
	method := senderMethod(t, before)
	if _, ok := total(before, "sendfile2_received_bytes_total", `method="`+method+`"`); !ok {
		t.Fatalf("no sendfile2_received_bytes_total for %s before any upload", method)
	}
	const size = 8 << 20
	file := filepath.Join(src, "f")
	must(t, os.WriteFile(file, randomData(size, 1), 0o644))
	if code := curlPut(t, file, ts.url+"/a.bin"); code != http.StatusCreated {
		t.Fatalf("curl -T: status %d", code)
	}
	if resp := goPut(t, c, ts.url+"/b.bin", randomData(size, 2), false); resp.StatusCode != http.StatusCreated {
		t.Fatalf("Go client: status %d", resp.StatusCode)
	}
	const uploads = 2
	// Receive counts its bytes before the response is written; the request
	// counter moves, and the access log line comes, once the handler returns.
	waitRequest(t, ts, "method=PUT path=/a.bin status=201")
	line := waitRequest(t, ts, "method=PUT path=/b.bin status=201")
	if !strings.Contains(line, fmt.Sprintf("bytes=%d ", size)) || !strings.Contains(line, "via=receive") {
		t.Errorf("access log line %q: want bytes=%d and via=receive", line, size)
	}
	after := scrape(t, c, ts.metricsURL)
	received, _ := total(after, "sendfile2_received_bytes_total")
	before0, _ := total(before, "sendfile2_received_bytes_total")
	// net/http reads the start of a body (up to its 4 KiB buffer) along
	// with the header; the handler writes that part itself.
	if grew := int64(received - before0); grew < uploads*(size-4096) || grew > uploads*size {
		t.Errorf("sendfile2_received_bytes_total grew by %d for %d uploads of %d bytes: the bodies did not go through Receive", grew, uploads, size)
	}
	if n, _ := total(after, "sendfile2_receives_total"); n < uploads {
		t.Errorf("sendfile2_receives_total %v, want at least %d", n, uploads)
	}
	if n, _ := total(after, "sendfile2_receive_errors_total"); n != 0 {
		t.Errorf("sendfile2_receive_errors_total %v", n)
	}
	if n, _ := total(after, "sendfile2_http_requests_total", `code="201"`); n != uploads {
		t.Errorf("sendfile2_http_requests_total{code=201} %v, want %d", n, uploads)
	}
}

// TestServeUploadShutdown: on SIGINT or SIGTERM an upload in flight
// completes; past --shutdown-timeout it is cancelled and leaves nothing.
func TestServeUploadShutdown(t *testing.T) {
	const size = 4 << 20
	data := randomData(size, 5)
	// start sends the header and the first MiB, and returns once the
	// handler runs: its temporary file exists.
	start := func(t *testing.T, ts *testServer, dir string) (net.Conn, *bufio.Reader) {
		conn, err := net.Dial("tcp", ts.addr)
		must(t, err)
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(time.Minute))
		fmt.Fprintf(conn, "PUT /up.bin HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n", size)
		_, err = conn.Write(data[:1<<20])
		must(t, err)
		for i := 0; len(tempFiles(t, dir)) == 0; i++ {
			if i == 3000 {
				t.Fatalf("no temporary file after 30s:\n%s", ts.log.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		return conn, bufio.NewReader(conn)
	}
	waitShutdown := func(t *testing.T, ts *testServer) {
		for range 3000 {
			if strings.Contains(ts.log.String(), "shutting down") {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("serve did not start shutting down:\n%s", ts.log.String())
	}

	t.Run("graceful", func(t *testing.T) {
		dir := t.TempDir()
		ts := startServe(t, dir, func(o *serveOptions) { o.upload = true })
		conn, br := start(t, ts, dir)
		ts.cancel()
		waitShutdown(t, ts)
		_, err := conn.Write(data[1<<20:])
		must(t, err)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading the response: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("status %d, want 201", resp.StatusCode)
		}
		must(t, ts.stop())
		if got, err := os.ReadFile(filepath.Join(dir, "up.bin")); err != nil || !bytes.Equal(got, data) {
			t.Errorf("up.bin: %d bytes that differ from the upload (%v)", len(got), err)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		dir := t.TempDir()
		ts := startServe(t, dir, func(o *serveOptions) {
			o.upload = true
			o.shutdownTimeout = 100 * time.Millisecond
		})
		conn, br := start(t, ts, dir) // and never sends the rest
		ts.cancel()
		if err := ts.stop(); err != nil {
			t.Fatalf("serve: %v", err)
		}
		if resp, err := http.ReadResponse(br, nil); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("status %d for an upload cut by the shutdown, want an error", resp.StatusCode)
			}
		}
		conn.Close()
		if _, err := os.Lstat(filepath.Join(dir, "up.bin")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("up.bin: %v, want it absent", err)
		}
		if left := tempFiles(t, dir); len(left) > 0 {
			t.Errorf("temporary files left: %v", left)
		}
	})
}

// TestServeUploadCommand runs `sendfile2 serve --upload --max-upload` as
// main does.
func TestServeUploadCommand(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &syncBuffer{}
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--upload", "--max-upload", "1KiB",
			"--access-log", "--log-format", "json", dir}, io.Discard, stderr)
	}()
	var addr string
	for i := 0; addr == "" && i < 1000; i++ {
		for line := range strings.Lines(stderr.String()) {
			var e map[string]any
			if json.Unmarshal([]byte(line), &e) == nil && e["msg"] == "serving" {
				addr, _ = e["addr"].(string)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if addr == "" {
		cancel()
		<-code
		t.Fatalf("serve did not start:\n%s", stderr.String())
	}
	c := newClient(t)
	if resp := goPut(t, c, "http://"+addr+"/k.bin", randomData(1024, 1), false); resp.StatusCode != http.StatusCreated {
		t.Errorf("1 KiB: status %d, want 201", resp.StatusCode)
	}
	if resp := goPut(t, c, "http://"+addr+"/k.bin", randomData(1025, 1), false); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("1 KiB + 1: status %d, want 413", resp.StatusCode)
	}
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("exit %d:\n%s", c, stderr.String())
	}
	var logged []string
	for line := range strings.Lines(stderr.String()) {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil && e["msg"] == "request" && e["method"] == "PUT" {
			logged = append(logged, fmt.Sprintf("%v %v %v %v", e["path"], e["status"], e["bytes"], e["via"]))
		}
	}
	slices.Sort(logged) // the 201 may be logged after the 413: it is answered before its handler returns
	if want := []string{"/k.bin 201 1024 receive", "/k.bin 413 0 <nil>"}; !slices.Equal(logged, want) {
		t.Errorf("access log: %q, want %q", logged, want)
	}
}

func TestServeMaxUploadFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1073741824", 1 << 30, true},
		{"1GiB", 1 << 30, true},
		{"1 GiB", 1 << 30, true},
		{"500MB", 500e6, true},
		{"64k", 64e3, true},
		{"0", 0, true},
		{"", 0, false},
		{"lots", 0, false},
		{"-1", 0, false},
		{"9EiB", 0, false},
		{"1.5", 0, false},
		{"0.3KiB", 0, false},
		{"1.5KiB", 1536, true},
	} {
		f := serveCommand().Flags()
		err := f.Set("max-upload", tc.in)
		got := *f.Lookup("max-upload").Value.(*sizeFlag[int64]).p
		if (err == nil) != tc.ok || tc.ok && got != tc.want {
			t.Errorf("--max-upload %q: %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if got := serveCommand().Flags().Lookup("max-upload").DefValue; got != "1GiB" {
		t.Errorf("default shows as %q", got)
	}
}

// TestServeHidesUploadsInProgress: the temporary file of an upload in
// progress is never served, even by its exact name.
func TestServeHidesUploadsInProgress(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, tempPrefix+"0123"), []byte("half written"), 0o644))
	// Other ways in: symbolic links to it, from DIR and from below.
	must(t, os.Symlink(tempPrefix+"0123", filepath.Join(dir, "link")))
	must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	must(t, os.Symlink("../"+tempPrefix+"0123", filepath.Join(dir, "sub", "link")))
	must(t, os.WriteFile(filepath.Join(dir, "sub", "file"), []byte("whole"), 0o644))
	must(t, os.Symlink("file", filepath.Join(dir, "sub", "other")))
	for _, lean := range []bool{true, false} {
		ts := startServe(t, dir, func(o *serveOptions) { o.lean = lean; o.http.browse = true })
		c := newClient(t)
		for _, name := range []string{tempPrefix + "0123", "link", "sub/link"} {
			if resp, _ := do(t, c, "GET", ts.url+"/"+name); resp.StatusCode != http.StatusNotFound {
				t.Errorf("lean %v: GET /%s, an upload's temporary file: %d, want 404", lean, name, resp.StatusCode)
			}
		}
		// A listing shows what a GET serves: a link to a whole file, not
		// one to an upload.
		for dir, want := range map[string]string{"/": "sub", "/sub/": "file,other"} {
			_, body := do(t, c, "GET", ts.url+dir, "Accept", "application/json")
			var list struct{ Entries []struct{ Name string } }
			must(t, json.Unmarshal(body, &list))
			var names []string
			for _, e := range list.Entries {
				names = append(names, e.Name)
			}
			if got := strings.Join(names, ","); got != want {
				t.Errorf("lean %v: listing of %s: %s, want %s", lean, dir, got, want)
			}
		}
	}
}
