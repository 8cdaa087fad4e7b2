package sendfile2_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2"
)

// sniffLen is what net/http writes through its own buffer, for content
// sniffing, before it hands a body to the conn's ReadFrom.
const sniffLen = 512

// listenerMethods are the Sender methods the listener tests run with.
var listenerMethods = []sendfile2.Method{sendfile2.Auto, sendfile2.Copy}

// engineBytes is the number of bytes s has sent, all methods together, once
// no send is in flight: a peer can have every byte before the send that
// sent them has returned and counted them.
func engineBytes(s *sendfile2.Sender) int64 {
	for i := 0; s.Stats().InFlight != 0 && i < 3000; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	var n int64
	for _, ms := range s.Stats().Methods {
		n += ms.Bytes
	}
	return n
}

// viaReadFrom is how many of a body's bytes net/http hands to the conn's
// ReadFrom: all but the first sniffLen.
func viaReadFrom(size int) int64 { return int64(max(0, size-sniffLen)) }

// fileSet is a directory of files of random bytes.
type fileSet struct {
	dir  string
	data map[string][]byte // by name
}

func newFileSet(t testing.TB, sizes ...int) *fileSet {
	t.Helper()
	fs := &fileSet{dir: t.TempDir(), data: map[string][]byte{}}
	for _, size := range sizes {
		data := make([]byte, size)
		rand.NewChaCha8([32]byte{byte(size), byte(size >> 8), byte(size >> 16), 'L'}).Read(data)
		name := fmt.Sprintf("f-%d.bin", size)
		if err := os.WriteFile(filepath.Join(fs.dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		fs.data[name] = data
	}
	return fs
}

func (fs *fileSet) name(size int) string { return fmt.Sprintf("f-%d.bin", size) }

func (fs *fileSet) open(t testing.TB, name string) *os.File {
	t.Helper()
	f, err := os.Open(filepath.Join(fs.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// fileHandlers serve the files of dir in the ways net/http offers.
func fileHandlers(dir string) []struct {
	name string
	h    http.Handler
} {
	serveContent := func(section bool) http.HandlerFunc {
		return contentHandler(dir, section, http.ServeContent)
	}
	return []struct {
		name string
		h    http.Handler
	}{
		{"FileServer", http.FileServer(http.Dir(dir))},
		{"ServeFile", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.ServeFile(w, r, filepath.Join(dir, path.Base(r.URL.Path)))
		})},
		{"ServeContent", serveContent(false)},
		{"ServeContentSection", serveContent(true)},
	}
}

// contentHandler serves the files of dir with serve (http.ServeContent or
// sendfile2.ServeContent), from the *os.File or from an io.SectionReader of
// it.
func contentHandler(dir string, section bool, serve func(http.ResponseWriter, *http.Request, string, time.Time, io.ReadSeeker)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(filepath.Join(dir, path.Base(r.URL.Path)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		var content io.ReadSeeker = f
		if section {
			content = io.NewSectionReader(f, 0, st.Size())
		}
		serve(w, r, st.Name(), st.ModTime(), content)
	}
}

// startServer serves h with an http.Server on a wrapped listener on
// 127.0.0.1 until the end of the test, and returns its base URL.
func startServer(t testing.TB, s *sendfile2.Sender, h http.Handler, configure ...func(*http.Server)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	for _, f := range configure {
		f(srv)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sendfile2.NewListener(ln, s)) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// newClient returns a client that keeps at most one connection to a host,
// and counts its dials.
func newClient(t testing.TB) (*http.Client, *atomic.Int64) {
	var dials atomic.Int64
	var d net.Dialer
	tr := &http.Transport{
		MaxConnsPerHost:    1,
		DisableCompression: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, &dials
}

// get fetches url with the request headers h (pairs of name and value).
func get(t testing.TB, c *http.Client, method, url string, h ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Set(h[i], h[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp, body
}

// TestHTTPFiles: every way net/http serves files delivers them byte-exact
// through a wrapped listener, and the Sender sends what net/http hands to
// ReadFrom (its own sendfile would bypass the Sender).
func TestHTTPFiles(t *testing.T) {
	sizes := []int{0, 1, 4 << 10, 1<<20 + 1, 64 << 20}
	fs := newFileSet(t, sizes...)
	for _, m := range listenerMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			for _, h := range fileHandlers(fs.dir) {
				t.Run(h.name, func(t *testing.T) {
					url := startServer(t, s, h.h)
					c, _ := newClient(t)
					for _, size := range sizes {
						before := engineBytes(s)
						resp, body := get(t, c, "GET", url+"/"+fs.name(size))
						if resp.StatusCode != 200 || resp.Close || !bytes.Equal(body, fs.data[fs.name(size)]) {
							t.Fatalf("size %d: status %d, close %v, %d bytes that differ from the file", size, resp.StatusCode, resp.Close, len(body))
						}
						if got, want := engineBytes(s)-before, viaReadFrom(size); got != want {
							t.Errorf("size %d: the Sender sent %d bytes, want %d", size, got, want)
						}
					}
				})
			}
			if ms := safeTotals(s.Stats()); ms.Errors != 0 || ms.Bytes == 0 {
				t.Errorf("stats of the safe methods: %+v", ms)
			}
		})
	}
}

// TestHTTPRanges: single ranges go through the Sender, multiple ranges arrive
// as multipart/byteranges with every part right, and HEAD and 304 send no body.
func TestHTTPRanges(t *testing.T) {
	const size = 1<<20 + 1
	fs := newFileSet(t, size)
	name := fs.name(size)
	data := fs.data[name]
	for _, m := range listenerMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			for _, h := range fileHandlers(fs.dir) {
				t.Run(h.name, func(t *testing.T) {
					url := startServer(t, s, h.h) + "/" + name
					c, _ := newClient(t)

					single := []struct {
						spec       string
						start, end int // the bytes [start, end)
					}{
						{"bytes=100-200099", 100, 200100},
						{"bytes=1000-", 1000, size},
						{"bytes=-70000", size - 70000, size},
						{"bytes=5-5", 5, 6},
						{"bytes=0-", 0, size},
					}
					for _, r := range single {
						before := engineBytes(s)
						resp, body := get(t, c, "GET", url, "Range", r.spec)
						if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[r.start:r.end]) {
							t.Fatalf("%s: status %d, %d bytes that differ from the range", r.spec, resp.StatusCode, len(body))
						}
						if got, want := engineBytes(s)-before, viaReadFrom(r.end-r.start); got != want {
							t.Errorf("%s: the Sender sent %d bytes, want %d", r.spec, got, want)
						}
					}

					resp, body := get(t, c, "GET", url, "Range", "bytes=0-99,4096-8191,1048000-")
					checkMultipart(t, resp, body, data, [][2]int{{0, 100}, {4096, 8192}, {1048000, size}})

					before := engineBytes(s)
					resp, body = get(t, c, "HEAD", url)
					if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != size {
						t.Errorf("HEAD: status %d, Content-Length %d, %d body bytes", resp.StatusCode, resp.ContentLength, len(body))
					}
					resp, body = get(t, c, "GET", url, "If-Modified-Since", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
					if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
						t.Errorf("If-Modified-Since: status %d, %d body bytes", resp.StatusCode, len(body))
					}
					if n := engineBytes(s) - before; n != 0 {
						t.Errorf("HEAD and 304 sent %d bytes with the Sender", n)
					}
				})
			}
		})
	}
}

func checkMultipart(t *testing.T, resp *http.Response, body, data []byte, want [][2]int) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusPartialContent || err != nil || mt != "multipart/byteranges" {
		t.Fatalf("multiple ranges: status %d, Content-Type %q (%v)", resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			if i != len(want) {
				t.Fatalf("%d parts, want %d", i, len(want))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(want) {
			t.Fatalf("more than %d parts", len(want))
		}
		pb, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		start, end := want[i][0], want[i][1]
		cr := fmt.Sprintf("bytes %d-%d/%d", start, end-1, len(data))
		if got := p.Header.Get("Content-Range"); got != cr || !bytes.Equal(pb, data[start:end]) {
			t.Fatalf("part %d: Content-Range %q (want %q), %d bytes, equal: %v", i, got, cr, len(pb), bytes.Equal(pb, data[start:end]))
		}
	}
}

// TestHTTPHeadRaw: a HEAD response carries Content-Length and not one body
// byte on the wire.
func TestHTTPHeadRaw(t *testing.T) {
	const size = 1<<20 + 1
	fs := newFileSet(t, size)
	s := newSender(t, sendfile2.Config{Method: sendfile2.Auto})
	for _, h := range fileHandlers(fs.dir) {
		t.Run(h.name, func(t *testing.T) {
			url := startServer(t, s, h.h)
			c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "HEAD /%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", fs.name(size))
			raw, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			head, rest, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
			if !ok || len(rest) != 0 {
				t.Fatalf("response %q: %d bytes after the header", head, len(rest))
			}
			if !bytes.Contains(head, []byte("Content-Length: "+strconv.Itoa(size)+"\r\n")) {
				t.Fatalf("no Content-Length %d in %q", size, head)
			}
		})
	}
}

// TestHTTPKeepAlive: requests whose bodies went through the Sender leave the
// connection open for the next: a client with one connection per host dials
// once, and one raw connection serves every request in turn.
func TestHTTPKeepAlive(t *testing.T) {
	sizes := []int{4 << 10, 1<<20 + 1, 0, 300000, 1, 2 << 20}
	fs := newFileSet(t, sizes...)
	for _, m := range listenerMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			url := startServer(t, s, http.FileServer(http.Dir(fs.dir)))

			// The Transport gives a connection up, and dials again, when its
			// writer goroutine has not reported the request written within
			// 50ms of the response's end (maxWriteWaitBeforeConnReuse): on a
			// loaded machine that happens without any fault of the server.
			// The server closing connections would fail every attempt.
			var dials int64
			for attempt := 1; attempt <= 3; attempt++ {
				c, d := newClient(t)
				for _, size := range sizes {
					resp, body := get(t, c, "GET", url+"/"+fs.name(size))
					if resp.StatusCode != 200 || !bytes.Equal(body, fs.data[fs.name(size)]) {
						t.Fatalf("size %d: status %d, %d bytes that differ from the file", size, resp.StatusCode, len(body))
					}
				}
				c.CloseIdleConnections()
				if dials = d.Load(); dials == 1 {
					break
				}
				t.Logf("attempt %d: %d dials for %d requests", attempt, dials, len(sizes))
			}
			if dials != 1 {
				t.Errorf("%d dials for %d requests, want 1", dials, len(sizes))
			}

			raw, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			br := bufio.NewReader(raw)
			before := engineBytes(s)
			var want int64
			for _, size := range sizes {
				req, _ := http.NewRequest("GET", url+"/"+fs.name(size), nil)
				if err := req.Write(raw); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(br, req)
				if err != nil {
					t.Fatalf("size %d: %v", size, err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.Close || !bytes.Equal(body, fs.data[fs.name(size)]) {
					t.Fatalf("size %d: %v, close %v, %d bytes", size, err, resp.Close, len(body))
				}
				want += viaReadFrom(size)
			}
			if got := engineBytes(s) - before; got != want {
				t.Errorf("the Sender sent %d bytes, want %d", got, want)
			}
		})
	}
}

// TestHTTPWriteOrder: what a handler writes before the file reaches the client
// before the file, whether net/http still holds it in its buffer or has
// written the header already.
func TestHTTPWriteOrder(t *testing.T) {
	const size = 300000
	fs := newFileSet(t, size)
	data := fs.data[fs.name(size)]
	for _, m := range listenerMethods {
		for _, prefix := range []int{5, 100, 4096, 100000} {
			t.Run(fmt.Sprintf("%s/prefix=%d", m, prefix), func(t *testing.T) {
				s := newSender(t, sendfile2.Config{Method: m})
				pre := bytes.Repeat([]byte{'p'}, prefix)
				errc := make(chan error, 1)
				url := startServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					f, err := os.Open(filepath.Join(fs.dir, fs.name(size)))
					if err != nil {
						errc <- err
						return
					}
					defer f.Close()
					w.Header().Set("Content-Length", strconv.Itoa(prefix+size))
					w.Write(pre)
					_, err = io.Copy(w, f)
					errc <- err
				}))
				c, _ := newClient(t)
				before := engineBytes(s)
				_, body := get(t, c, "GET", url)
				if err := <-errc; err != nil {
					t.Fatalf("handler: %v", err)
				}
				if !bytes.Equal(body, append(pre, data...)) {
					t.Fatalf("got %d bytes that are not the prefix then the file", len(body))
				}
				// A prefix larger than net/http's buffer (2 KiB) has written
				// the header: no sniffing, the whole file goes to ReadFrom.
				want := int64(size - sniffLen)
				if prefix > 2048 {
					want = size
				}
				if got := engineBytes(s) - before; got != want {
					t.Errorf("the Sender sent %d bytes, want %d", got, want)
				}
			})
		}
	}
}

// TestHTTPResponseController: SetWriteDeadline, SetReadDeadline, Flush and
// EnableFullDuplex work through the wrapped conn.
func TestHTTPResponseController(t *testing.T) {
	const size = 1 << 20
	fs := newFileSet(t, size)
	for _, m := range listenerMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			errc := make(chan error, 1)
			url := startServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				errc <- func() error {
					rc := http.NewResponseController(w)
					if err := errors.Join(rc.EnableFullDuplex(), rc.SetWriteDeadline(time.Now().Add(time.Minute)), rc.SetReadDeadline(time.Now().Add(time.Minute))); err != nil {
						return err
					}
					f, err := os.Open(filepath.Join(fs.dir, fs.name(size)))
					if err != nil {
						return err
					}
					defer f.Close()
					w.Header().Set("Content-Length", strconv.Itoa(size))
					w.WriteHeader(200)
					if err := rc.Flush(); err != nil {
						return err
					}
					_, err = io.Copy(w, f)
					return err
				}()
			}))
			c, _ := newClient(t)
			before := engineBytes(s)
			_, body := get(t, c, "GET", url)
			if err := <-errc; err != nil {
				t.Fatalf("handler: %v", err)
			}
			if !bytes.Equal(body, fs.data[fs.name(size)]) {
				t.Fatal("wrong bytes")
			}
			// The header went out with Flush: no sniffing, all through ReadFrom.
			if got := engineBytes(s) - before; got != size {
				t.Errorf("the Sender sent %d bytes, want %d", got, size)
			}
		})
	}
}

// TestHTTPDeadlines: a write deadline in the past fails the body at once,
// and one that passes during the send (ResponseController's, or the
// server's WriteTimeout) stops it, with os.ErrDeadlineExceeded.
func TestHTTPDeadlines(t *testing.T) {
	const size = 64 << 20
	fs := newFileSet(t, size)
	tests := []struct {
		name     string
		deadline func() time.Time // set by the handler, if not nil
		timeout  time.Duration    // the server's WriteTimeout
	}{
		{"past", func() time.Time { return time.Now().Add(-time.Second) }, 0},
		{"ResponseController", func() time.Time { return time.Now().Add(300 * time.Millisecond) }, 0},
		{"WriteTimeout", nil, 300 * time.Millisecond},
	}
	for _, m := range listenerMethods {
		for _, tt := range tests {
			t.Run(string(m)+"/"+tt.name, func(t *testing.T) {
				s := newSender(t, sendfile2.Config{Method: m})
				errc := make(chan error, 1)
				url := startServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					f, err := os.Open(filepath.Join(fs.dir, fs.name(size)))
					if err != nil {
						errc <- err
						return
					}
					defer f.Close()
					w.Header().Set("Content-Length", strconv.Itoa(size))
					if tt.deadline != nil {
						if err := http.NewResponseController(w).SetWriteDeadline(tt.deadline()); err != nil {
							errc <- err
							return
						}
					}
					_, err = io.Copy(w, f)
					errc <- err
				}), func(srv *http.Server) { srv.WriteTimeout = tt.timeout })
				// A client that asks and never reads, with a small window.
				c := smallWindowDial(t, strings.TrimPrefix(url, "http://"))
				fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
				var err error
				select {
				case err = <-errc:
				case <-time.After(30 * time.Second):
					t.Fatal("the body did not fail within 30s")
				}
				var ne net.Error
				if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("handler's io.Copy = %v, want a timeout matching os.ErrDeadlineExceeded", err)
				}
			})
		}
	}
}

// smallWindowDial connects to addr with a receive buffer of a few KiB, closed
// at the end of the test.
func smallWindowDial(t testing.TB, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestHTTPHijack: the conn that Hijack returns is the wrapped one: a
// net.Conn whose ReadFrom still sends with the Sender.
func TestHTTPHijack(t *testing.T) {
	const size = 1<<20 + 1
	fs := newFileSet(t, size)
	for _, m := range listenerMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			errc := make(chan error, 1)
			url := startServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				errc <- func() error {
					conn, _, err := http.NewResponseController(w).Hijack()
					if err != nil {
						return err
					}
					defer conn.Close()
					rf, ok := conn.(io.ReaderFrom)
					if !ok {
						return fmt.Errorf("hijacked conn %T has no ReadFrom", conn)
					}
					if _, ok := conn.(interface{ CloseWrite() error }); !ok {
						return fmt.Errorf("hijacked conn %T has no CloseWrite", conn)
					}
					f, err := os.Open(filepath.Join(fs.dir, fs.name(size)))
					if err != nil {
						return err
					}
					defer f.Close()
					if _, err := fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", size); err != nil {
						return err
					}
					if n, err := rf.ReadFrom(f); n != size || err != nil {
						return fmt.Errorf("ReadFrom = %d, %v", n, err)
					}
					return conn.(interface{ CloseWrite() error }).CloseWrite()
				}()
			}))
			c, _ := newClient(t)
			before := engineBytes(s)
			_, body := get(t, c, "GET", url)
			if err := <-errc; err != nil {
				t.Fatalf("handler: %v", err)
			}
			if !bytes.Equal(body, fs.data[fs.name(size)]) {
				t.Fatal("wrong bytes")
			}
			if got := engineBytes(s) - before; got != size {
				t.Errorf("the Sender sent %d bytes, want %d", got, size)
			}
		})
	}
}

// wrappedPair returns a conn accepted from a listener wrapped with s, and the
// client's end.
func wrappedPair(t testing.TB, s *sendfile2.Sender, lc *net.ListenConfig) (net.Conn, *net.TCPConn) {
	t.Helper()
	if lc == nil {
		lc = &net.ListenConfig{}
	}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wl := sendfile2.NewListener(ln, s)
	defer wl.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := wl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); a.Close() })
	return a, c.(*net.TCPConn)
}

// noWriteTo hides a reader's WriteTo and keeps its SyscallConn, like the
// wrapper (*os.File).WriteTo hands to io.Copy.
type noWriteTo struct {
	io.Reader
	syscall.Conn
}

func fileOffset(f *os.File) int64 {
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return -1
	}
	return off
}

// TestListenerReadFrom: the wrapped conn's ReadFrom sends what
// (*net.TCPConn).ReadFrom sends and leaves every reader where it leaves it,
// and sends file readers with the Sender.
func TestListenerReadFrom(t *testing.T) {
	const size = 1<<20 + 7
	f0, data := tempFile(t, size)
	cases := []struct {
		name   string
		engine bool // sent with the Sender
		// reader returns a fresh reader and a description of its state.
		reader func(t *testing.T) (io.Reader, func() string)
	}{
		{"File", true, func(t *testing.T) (io.Reader, func() string) {
			f := open(t, f0.Name())
			return f, func() string { return fmt.Sprint("offset ", fileOffset(f)) }
		}},
		{"File/offset", true, func(t *testing.T) (io.Reader, func() string) {
			f := open(t, f0.Name())
			f.Seek(12345, io.SeekStart)
			return f, func() string { return fmt.Sprint("offset ", fileOffset(f)) }
		}},
		{"File/past EOF", true, func(t *testing.T) (io.Reader, func() string) {
			f := open(t, f0.Name())
			f.Seek(size+10, io.SeekStart)
			return f, func() string { return fmt.Sprint("offset ", fileOffset(f)) }
		}},
		{"SyscallConn", true, func(t *testing.T) (io.Reader, func() string) {
			f := open(t, f0.Name())
			f.Seek(99, io.SeekStart)
			return noWriteTo{f, f}, func() string { return fmt.Sprint("offset ", fileOffset(f)) }
		}},
		{"LimitedReader", true, func(t *testing.T) (io.Reader, func() string) {
			f := open(t, f0.Name())
			f.Seek(100, io.SeekStart)
			lr := &io.LimitedReader{R: f, N: 300000}
			return lr, func() string { return fmt.Sprint("offset ", fileOffset(f), " N ", lr.N) }
		}},
		{"LimitedReader/past EOF", true, func(t *testing.T) (io.Reader, func() string) {
			f := open(t, f0.Name())
			f.Seek(size-1000, io.SeekStart)
			lr := &io.LimitedReader{R: f, N: 5000}
			return lr, func() string { return fmt.Sprint("offset ", fileOffset(f), " N ", lr.N) }
		}},
		{"LimitedReader/N=0", true, func(t *testing.T) (io.Reader, func() string) {
			f := open(t, f0.Name())
			lr := &io.LimitedReader{R: f, N: 0}
			return lr, func() string { return fmt.Sprint("offset ", fileOffset(f), " N ", lr.N) }
		}},
		{"LimitedReader/SyscallConn", true, func(t *testing.T) (io.Reader, func() string) {
			f := open(t, f0.Name())
			lr := &io.LimitedReader{R: noWriteTo{f, f}, N: 70000}
			return lr, func() string { return fmt.Sprint("offset ", fileOffset(f), " N ", lr.N) }
		}},
		{"SectionReader", true, func(t *testing.T) (io.Reader, func() string) {
			f := open(t, f0.Name())
			f.Seek(7, io.SeekStart)
			sr := io.NewSectionReader(f, 1000, 500000)
			return sr, func() string {
				p, _ := sr.Seek(0, io.SeekCurrent)
				return fmt.Sprint("offset ", fileOffset(f), " pos ", p)
			}
		}},
		{"SectionReader/position", true, func(t *testing.T) (io.Reader, func() string) {
			f := open(t, f0.Name())
			sr := io.NewSectionReader(f, 1000, 500000)
			sr.Seek(4321, io.SeekStart)
			return sr, func() string {
				p, _ := sr.Seek(0, io.SeekCurrent)
				return fmt.Sprint("offset ", fileOffset(f), " pos ", p)
			}
		}},
		{"SectionReader/past EOF", true, func(t *testing.T) (io.Reader, func() string) {
			f := open(t, f0.Name())
			sr := io.NewSectionReader(f, size-3000, 1<<40)
			return sr, func() string {
				p, _ := sr.Seek(0, io.SeekCurrent)
				return fmt.Sprint("offset ", fileOffset(f), " pos ", p)
			}
		}},
		{"SectionReader/position past end", true, func(t *testing.T) (io.Reader, func() string) {
			f := open(t, f0.Name())
			sr := io.NewSectionReader(f, 10, 100)
			sr.Seek(200, io.SeekStart)
			return sr, func() string {
				p, _ := sr.Seek(0, io.SeekCurrent)
				return fmt.Sprint("offset ", fileOffset(f), " pos ", p)
			}
		}},
		{"LimitedReader/SectionReader", true, func(t *testing.T) (io.Reader, func() string) {
			f := open(t, f0.Name())
			sr := io.NewSectionReader(f, 333, size-333)
			sr.Seek(1, io.SeekStart)
			lr := &io.LimitedReader{R: sr, N: 80000}
			return lr, func() string {
				p, _ := sr.Seek(0, io.SeekCurrent)
				return fmt.Sprint("offset ", fileOffset(f), " pos ", p, " N ", lr.N)
			}
		}},
		{"bytes.Reader", false, func(t *testing.T) (io.Reader, func() string) {
			br := bytes.NewReader(data)
			return br, func() string { return fmt.Sprint("left ", br.Len()) }
		}},
		{"LimitedReader/bytes.Reader", false, func(t *testing.T) (io.Reader, func() string) {
			lr := &io.LimitedReader{R: bytes.NewReader(data), N: 12345}
			return lr, func() string { return fmt.Sprint("N ", lr.N) }
		}},
		{"pipe", false, func(t *testing.T) (io.Reader, func() string) {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pr.Close() })
			go func() { pw.Write(data[:200000]); pw.Close() }()
			return pr, func() string { return "" }
		}},
		{"directory", false, func(t *testing.T) (io.Reader, func() string) {
			return open(t, t.TempDir()), func() string { return "" }
		}},
	}
	for _, m := range listenerMethods {
		s := newSender(t, sendfile2.Config{Method: m})
		for _, tc := range cases {
			t.Run(string(m)+"/"+tc.name, func(t *testing.T) {
				type result struct {
					n     int64
					err   error
					got   []byte
					state string
				}
				run := func(dst io.ReaderFrom, peer net.Conn) result {
					got := receive(peer)
					r, state := tc.reader(t)
					n, err := dst.ReadFrom(r)
					dst.(net.Conn).Close()
					return result{n, err, <-got, state()}
				}
				a, b := tcpPair(t)
				std := run(a, b)
				wa, wb := wrappedPair(t, s, nil)
				before := engineBytes(s)
				wrapped := run(wa.(io.ReaderFrom), wb)
				sent := engineBytes(s) - before
				if wrapped.n != std.n || (wrapped.err == nil) != (std.err == nil) || wrapped.state != std.state || !bytes.Equal(wrapped.got, std.got) {
					t.Fatalf("wrapped ReadFrom = %d, %v, %d bytes received, %s\n(*net.TCPConn).ReadFrom = %d, %v, %d bytes received, %s",
						wrapped.n, wrapped.err, len(wrapped.got), wrapped.state, std.n, std.err, len(std.got), std.state)
				}
				if want := map[bool]int64{true: wrapped.n, false: 0}[tc.engine]; sent != want {
					t.Errorf("the Sender sent %d bytes, want %d", sent, want)
				}
			})
		}
	}
}

func open(t testing.TB, name string) *os.File {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestListenerIOCopy: io.Copy(conn, file) sends with the Sender, not with
// sendfile(2): the wrapped conn's SyscallConn does not expose the socket to
// the os package.
func TestListenerIOCopy(t *testing.T) {
	const size = 3<<20 + 5
	for _, m := range listenerMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			f, data := tempFile(t, size)
			f.Seek(17, io.SeekStart)
			a, b := wrappedPair(t, s, nil)
			got := receive(b)
			n, err := io.Copy(a, f)
			a.Close()
			if err != nil || n != size-17 {
				t.Fatalf("io.Copy = %d, %v", n, err)
			}
			if !bytes.Equal(<-got, data[17:]) {
				t.Fatal("wrong bytes")
			}
			if off := fileOffset(f); off != size {
				t.Errorf("file offset %d after io.Copy, want %d", off, size)
			}
			if ms := safeTotals(s.Stats()); ms.Bytes != size-17 || ms.Sends != 1 {
				t.Errorf("stats of the safe methods: %+v, want %d bytes in 1 send", ms, size-17)
			}
			rc, err := a.(syscall.Conn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := reflect.TypeOf(rc).MethodByName("PollFD"); ok {
				t.Errorf("the wrapped conn's RawConn %T has PollFD", rc)
			}
		})
	}
}

// TestListenerSyscallConn: the RawConn reaches the socket, for options.
func TestListenerSyscallConn(t *testing.T) {
	s := newSender(t, sendfile2.Config{Method: sendfile2.Copy})
	a, _ := wrappedPair(t, s, nil)
	rc, err := a.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var typ int
	var serr error
	if err := rc.Control(func(fd uintptr) { typ, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE) }); err != nil || serr != nil || typ != unix.SOCK_STREAM {
		t.Fatalf("SO_TYPE through SyscallConn = %d, %v, %v", typ, err, serr)
	}
}

// TestListenerDeadline: a write deadline in the past fails ReadFrom at once
// with a timeout, clearing it lets ReadFrom send again, and a deadline moved
// into the past stops a ReadFrom in flight.
func TestListenerDeadline(t *testing.T) {
	smallWindow := &net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096) })
	}}
	for _, m := range listenerMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			f, data := tempFile(t, 64<<20)
			for _, set := range []string{"SetDeadline", "SetWriteDeadline"} {
				a, b := wrappedPair(t, s, nil)
				setDeadline := a.SetWriteDeadline
				if set == "SetDeadline" {
					setDeadline = a.SetDeadline
				}
				if err := setDeadline(time.Now().Add(-time.Second)); err != nil {
					t.Fatal(err)
				}
				n, err := a.(io.ReaderFrom).ReadFrom(io.NewSectionReader(f, 0, 1000))
				var ne net.Error
				if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("%s in the past: ReadFrom = %d, %v; want 0, a timeout matching os.ErrDeadlineExceeded", set, n, err)
				}
				if _, err := a.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("%s in the past: Write = %v", set, err)
				}
				if err := setDeadline(time.Time{}); err != nil {
					t.Fatal(err)
				}
				got := receive(b)
				if n, err := a.(io.ReaderFrom).ReadFrom(io.NewSectionReader(f, 0, 1000)); n != 1000 || err != nil {
					t.Fatalf("%s cleared: ReadFrom = %d, %v", set, n, err)
				}
				a.Close()
				if !bytes.Equal(<-got, data[:1000]) {
					t.Fatal("wrong bytes")
				}
			}

			// In flight: the peer does not read; a far deadline moved into
			// the past stops the send.
			a, b := wrappedPair(t, s, smallWindow)
			defer b.Close()
			if err := a.SetWriteDeadline(time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			n := stoppedReadFrom(t, s, a, f, len(data), os.ErrDeadlineExceeded, func() {
				if err := a.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
					t.Fatal(err)
				}
			})
			if off := fileOffset(f); off != n {
				t.Errorf("file offset %d after sending %d bytes", off, n)
			}
		})
	}
}

// stoppedReadFrom starts a.ReadFrom(f) of a file of size bytes, calls stop
// once s has the send in flight, and returns the bytes ReadFrom sent. It
// fails the test unless ReadFrom returns within 30 s with fewer than size
// bytes and an error matching want.
func stoppedReadFrom(t *testing.T, s *sendfile2.Sender, a net.Conn, f *os.File, size int, want error, stop func()) int64 {
	t.Helper()
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := a.(io.ReaderFrom).ReadFrom(f)
		done <- result{n, err}
	}()
	waitInFlight(t, s)
	stop()
	select {
	case r := <-done:
		if !errors.Is(r.err, want) || r.n >= int64(size) {
			t.Fatalf("ReadFrom stopped = %d, %v; want fewer than %d bytes and an error matching %v", r.n, r.err, size, want)
		}
		return r.n
	case <-time.After(30 * time.Second):
		t.Fatal("ReadFrom went on after it was stopped")
	}
	return 0
}

// waitInFlight waits until s has a send in flight.
func waitInFlight(t *testing.T, s *sendfile2.Sender) {
	t.Helper()
	for i := 0; s.Stats().InFlight == 0; i++ {
		if i == 3000 {
			t.Fatal("no send in flight after 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestListenerCloseStopsReadFrom: Close stops a ReadFrom in flight, which
// returns an error matching net.ErrClosed; later calls fail the same way.
func TestListenerCloseStopsReadFrom(t *testing.T) {
	for _, m := range listenerMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			f, data := tempFile(t, 64<<20)
			a, b := wrappedPair(t, s, nil)
			defer b.Close()
			stoppedReadFrom(t, s, a, f, len(data), net.ErrClosed, func() { a.Close() })
			if _, err := a.(io.ReaderFrom).ReadFrom(f); !errors.Is(err, net.ErrClosed) {
				t.Errorf("ReadFrom after Close = %v", err)
			}
			if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Write after Close = %v", err)
			}
		})
	}
}

// TestListenerSenderCloseStopsReadFrom: closing the Sender stops a ReadFrom
// in flight on a conn of its listener, which returns an error matching
// ErrClosed, as do later ReadFroms of a file; the conn itself stays open for
// Write.
func TestListenerSenderCloseStopsReadFrom(t *testing.T) {
	for _, m := range listenerMethods {
		t.Run(string(m), func(t *testing.T) {
			s, err := sendfile2.NewSender(sendfile2.Config{Method: m})
			if err != nil {
				t.Skip(err)
			}
			f, data := tempFile(t, 64<<20)
			a, b := wrappedPair(t, s, nil)
			closed := make(chan error, 1)
			stoppedReadFrom(t, s, a, f, len(data), sendfile2.ErrClosed, func() { go func() { closed <- s.Close() }() })
			// Drain what was sent, so that the Close's wait for the
			// notifications of the sends it cancelled can end.
			go io.Copy(io.Discard, b)
			if err := <-closed; err != nil {
				t.Fatalf("Sender.Close = %v", err)
			}
			if _, err := a.(io.ReaderFrom).ReadFrom(f); !errors.Is(err, sendfile2.ErrClosed) {
				t.Errorf("ReadFrom after the Sender's Close = %v", err)
			}
			if _, err := a.Write([]byte("x")); err != nil {
				t.Errorf("Write after the Sender's Close = %v", err)
			}
		})
	}
}

// TestListenerReadFromShrinking: a file truncated during ReadFrom ends the
// send as EOF ends (*net.TCPConn).ReadFrom: the bytes sent, no error, and the
// offset after them.
func TestListenerReadFromShrinking(t *testing.T) {
	for _, m := range listenerMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			f, data := tempFile(t, 64<<20)
			a, b := wrappedPair(t, s, nil)
			w, err := os.OpenFile(f.Name(), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			got := make(chan []byte, 1)
			go func() {
				head := make([]byte, 1<<20)
				io.ReadFull(b, head)
				w.Truncate(2 << 20)
				rest, _ := io.ReadAll(b)
				got <- append(head, rest...)
			}()
			n, err := a.(io.ReaderFrom).ReadFrom(f)
			a.Close()
			if err != nil || n >= int64(len(data)) {
				t.Fatalf("ReadFrom = %d, %v; want fewer bytes and no error", n, err)
			}
			if r := <-got; int64(len(r)) != n || !bytes.Equal(r, data[:len(r)]) {
				t.Fatalf("received %d bytes for %d sent", len(r), n)
			}
			if off := fileOffset(f); off != n {
				t.Errorf("file offset %d after %d bytes", off, n)
			}
		})
	}
}

// TestListenerCloseWrite: CloseWrite and CloseRead reach the socket.
func TestListenerCloseWrite(t *testing.T) {
	s := newSender(t, sendfile2.Config{Method: sendfile2.Copy})
	a, b := wrappedPair(t, s, nil)
	f, data := tempFile(t, 100000)
	got := receive(b)
	if _, err := a.(io.ReaderFrom).ReadFrom(f); err != nil {
		t.Fatal(err)
	}
	if err := a.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(<-got, data) { // EOF came with CloseWrite, not Close
		t.Fatal("wrong bytes")
	}
	if err := a.(interface{ CloseRead() error }).CloseRead(); err != nil {
		t.Fatal(err)
	}
	if n, err := a.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("Read after CloseRead = %d, %v", n, err)
	}
}

// TestListenerNilSender: without a Sender, ReadFrom copies with Write and
// leaves the reader where io.Copy leaves it.
func TestListenerNilSender(t *testing.T) {
	f, data := tempFile(t, 200000)
	f.Seek(100, io.SeekStart)
	a, b := wrappedPair(t, nil, nil)
	got := receive(b)
	n, err := io.Copy(a, f)
	a.Close()
	if n != 199900 || err != nil || !bytes.Equal(<-got, data[100:]) {
		t.Fatalf("io.Copy = %d, %v", n, err)
	}
	if off := fileOffset(f); off != 200000 {
		t.Errorf("file offset %d", off)
	}
}

// TestListenerReadFromNilFile: a nil *os.File, alone or under a section
// reader, is not a file to send; ReadFrom fails as reading it fails, also
// as the first ReadFrom of a conn (whose look at files has kept none yet).
func TestListenerReadFromNilFile(t *testing.T) {
	s := newSender(t, sendfile2.Config{})
	for _, r := range []io.Reader{(*os.File)(nil), io.NewSectionReader((*os.File)(nil), 0, 10)} {
		a, _ := wrappedPair(t, s, nil)
		var n int64
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("ReadFrom(%T of a nil *os.File) panicked: %v", r, p)
				}
			}()
			n, err = a.(io.ReaderFrom).ReadFrom(r)
		}()
		if err == nil || n != 0 {
			t.Fatalf("ReadFrom(%T of a nil *os.File) = %d, %v; want 0 and an error", r, n, err)
		}
	}
}

// pipeListener accepts one end of a net.Pipe, which has no descriptor.
type pipeListener struct{ c net.Conn }

func (l pipeListener) Accept() (net.Conn, error) { return l.c, nil }
func (l pipeListener) Close() error              { return nil }
func (l pipeListener) Addr() net.Addr            { return l.c.LocalAddr() }

// TestListenerNoDescriptor: conns without a descriptor come back unchanged.
func TestListenerNoDescriptor(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c, err := sendfile2.NewListener(pipeListener{a}, nil).Accept()
	if err != nil || c != a {
		t.Fatalf("Accept = %v (%T), %v; want the pipe's conn", c, c, err)
	}
}

// safeTotals adds up the counters of the safe methods: an Auto Sender sends
// with copy where zero-copy cannot apply (a socket accepted from an MPTCP
// listener, a route that copies anyway), and the unsafe methods must never
// appear.
func safeTotals(st sendfile2.Stats) sendfile2.MethodStats {
	var t sendfile2.MethodStats
	for m, ms := range st.Methods {
		if !m.Safe() {
			panic("an unsafe method sent: " + string(m))
		}
		t.Sends += ms.Sends
		t.Errors += ms.Errors
		t.Bytes += ms.Bytes
	}
	return t
}
