package sendfile2_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sendfile2/sendfile2"
)

// countingConn counts the bytes read from a conn.
type countingConn struct {
	net.Conn
	n int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n += int64(n)
	return n, err
}

// serveContentHandler serves the files of dir with sendfile2.ServeContent,
// from the *os.File or from an io.SectionReader of it.
func serveContentHandler(dir string, section bool) http.HandlerFunc {
	return contentHandler(dir, section, sendfile2.ServeContent)
}

// rawGet sends GET path on c and returns the response, its body and the
// bytes the whole response took on the wire.
func rawGet(t *testing.T, c *countingConn, br *bufio.Reader, p string) (*http.Response, []byte, int64) {
	t.Helper()
	before := c.n - int64(br.Buffered())
	c.SetDeadline(time.Now().Add(20 * time.Second)) // a head held for ever fails here
	if _, err := io.WriteString(c, "GET "+p+" HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body, c.n - int64(br.Buffered()) - before
}

// TestServeContentHoldsHead: with ConnContext, the response head that
// net/http writes before it hands the file to the conn's ReadFrom goes out
// in the Sender's send, with the whole file (none of it copied by net/http
// first, even below 512 bytes): the Sender sends every byte of the
// response. Without ConnContext, ServeContent is http.ServeContent, and the
// Sender sends what net/http hands to ReadFrom.
func TestServeContentHoldsHead(t *testing.T) {
	sizes := []int{0, 1, sniffLen, sniffLen + 1, 16 << 10, 1<<20 + 1}
	fs := newFileSet(t, sizes...)
	for _, m := range listenerMethods {
		for _, section := range []bool{false, true} {
			for _, wired := range []bool{true, false} {
				name := string(m) + "/file"
				if section {
					name = string(m) + "/section"
				}
				if !wired {
					name += "/no-ConnContext"
				}
				t.Run(name, func(t *testing.T) {
					s := newSender(t, sendfile2.Config{Method: m})
					url := startServer(t, s, serveContentHandler(fs.dir, section), func(srv *http.Server) {
						if wired {
							srv.ConnContext = sendfile2.ConnContext
						}
					})
					nc, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
					if err != nil {
						t.Fatal(err)
					}
					defer nc.Close()
					c := &countingConn{Conn: nc}
					br := bufio.NewReader(c)
					for _, size := range sizes {
						before := engineBytes(s)
						resp, body, wire := rawGet(t, c, br, "/"+fs.name(size))
						if resp.StatusCode != 200 || !bytes.Equal(body, fs.data[fs.name(size)]) {
							t.Fatalf("size %d: status %d, %d bytes that differ from the file", size, resp.StatusCode, len(body))
						}
						want := viaReadFrom(size)
						if wired && size > 0 {
							// The head and the whole body: net/http's
							// 512-byte sniff copy is skipped too.
							want = wire
						}
						if got := engineBytes(s) - before; got != want {
							t.Errorf("size %d: the Sender sent %d bytes of a %d-byte response, want %d", size, got, wire, want)
						}
					}
				})
			}
		}
	}
}

// TestServeContentReleases: responses that hand no file to the conn's
// ReadFrom (HEAD, 304, 416, multiple ranges, a body that is not a file, any
// body on a listener without Sender) arrive whole and at once on a
// kept-alive conn: what the conn held goes out when ServeContent returns, or
// at the next write.
func TestServeContentReleases(t *testing.T) {
	const size = 100 << 10
	fs := newFileSet(t, size)
	data := fs.data[fs.name(size)]
	for _, withSender := range []bool{true, false} {
		t.Run(fmt.Sprintf("sender=%v", withSender), func(t *testing.T) {
			var s *sendfile2.Sender // nil: the conns copy file bodies with Write
			if withSender {
				s = newSender(t, sendfile2.Config{})
			}
			mux := http.NewServeMux()
			mux.Handle("/", serveContentHandler(fs.dir, true))
			mux.HandleFunc("/memory/", func(w http.ResponseWriter, r *http.Request) {
				sendfile2.ServeContent(w, r, "m.bin", time.Time{}, bytes.NewReader(data))
			})
			url := startServer(t, s, mux, func(srv *http.Server) { srv.ConnContext = sendfile2.ConnContext })
			c, dials := newClient(t)
			c.Timeout = 20 * time.Second // a held head that never left would stall here
			file := url + "/" + fs.name(size)
			resp, _ := get(t, c, "GET", file)
			modified := resp.Header.Get("Last-Modified")
			for _, tc := range []struct {
				method, url string
				header      []string
				status      int
				body        func([]byte) bool
			}{
				{"HEAD", file, nil, 200, func(b []byte) bool { return len(b) == 0 }},
				{"GET", file, []string{"If-Modified-Since", modified}, 304, func(b []byte) bool { return len(b) == 0 }},
				{"GET", file, []string{"Range", "bytes=999999-"}, 416, func([]byte) bool { return true }},
				{"GET", file, []string{"Range", "bytes=0-9,100-199"}, 206, func(b []byte) bool {
					return bytes.Contains(b, data[:10]) && bytes.Contains(b, data[100:200])
				}},
				{"GET", file, []string{"Range", "bytes=1000-"}, 206, func(b []byte) bool { return bytes.Equal(b, data[1000:]) }},
				{"GET", url + "/memory/", nil, 200, func(b []byte) bool { return bytes.Equal(b, data) }},
				{"GET", file, nil, 200, func(b []byte) bool { return bytes.Equal(b, data) }},
			} {
				resp, body := get(t, c, tc.method, tc.url, tc.header...)
				if resp.StatusCode != tc.status || !tc.body(body) {
					t.Errorf("%s %s %q: status %d, %d bytes", tc.method, tc.url, tc.header, resp.StatusCode, len(body))
				}
			}
			if n := dials.Load(); n != 1 {
				t.Errorf("%d connections for the requests, want 1", n)
			}
		})
	}
}

// TestHoldWrite: a conn holding a Write keeps the order of bytes and the
// deadline's verdict, sends the held bytes ahead of a file, before the next
// write, and at CloseWrite, and holds nothing larger than a response head.
func TestHoldWrite(t *testing.T) {
	s := newSender(t, sendfile2.Config{Method: sendfile2.Copy})
	f, data := tempFile(t, 1<<20)
	readN := func(t *testing.T, b net.Conn, n int) []byte {
		t.Helper()
		b.SetReadDeadline(time.Now().Add(20 * time.Second))
		got := make([]byte, n)
		if _, err := io.ReadFull(b, got); err != nil {
			t.Fatalf("reading %d bytes: %v", n, err)
		}
		return got
	}
	t.Run("ahead of a file", func(t *testing.T) {
		a, b := wrappedPair(t, s, nil)
		release := sendfile2.HoldWrite(a)
		defer release()
		before := engineBytes(s)
		if n, err := a.Write([]byte("head")); n != 4 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		f.Seek(0, io.SeekStart)
		if n, err := a.(io.ReaderFrom).ReadFrom(f); n != int64(len(data)) || err != nil {
			t.Fatalf("ReadFrom = %d, %v", n, err)
		}
		if got := engineBytes(s) - before; got != int64(4+len(data)) {
			t.Errorf("the Sender sent %d bytes, want %d", got, 4+len(data))
		}
		if got := readN(t, b, 4+len(data)); string(got[:4]) != "head" || !bytes.Equal(got[4:], data) {
			t.Error("the peer got other bytes than the head and the file")
		}
	})
	t.Run("before the next write", func(t *testing.T) {
		a, b := wrappedPair(t, s, nil)
		release := sendfile2.HoldWrite(a)
		defer release()
		a.Write([]byte("x"))
		if n, err := a.Write([]byte("y")); n != 1 || err != nil {
			t.Fatalf("second Write = %d, %v", n, err)
		}
		if got := readN(t, b, 2); string(got) != "xy" {
			t.Errorf("the peer got %q, want %q", got, "xy")
		}
	})
	t.Run("at release", func(t *testing.T) {
		a, b := wrappedPair(t, s, nil)
		release := sendfile2.HoldWrite(a)
		a.Write([]byte("x"))
		b.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _ := b.Read(make([]byte, 1)); n != 0 {
			t.Fatal("the held byte left before release")
		}
		if err := release(); err != nil {
			t.Fatal(err)
		}
		if got := readN(t, b, 1); string(got) != "x" {
			t.Errorf("the peer got %q", got)
		}
	})
	t.Run("at CloseWrite", func(t *testing.T) {
		a, b := wrappedPair(t, s, nil)
		release := sendfile2.HoldWrite(a)
		defer release()
		a.Write([]byte("x"))
		if err := a.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		b.SetReadDeadline(time.Now().Add(20 * time.Second))
		if got, err := io.ReadAll(b); string(got) != "x" || err != nil {
			t.Errorf("the peer got %q, %v; want %q and EOF", got, err, "x")
		}
	})
	t.Run("past the deadline", func(t *testing.T) {
		a, _ := wrappedPair(t, s, nil)
		release := sendfile2.HoldWrite(a)
		defer release()
		a.SetWriteDeadline(time.Now().Add(-time.Second))
		if _, err := a.Write([]byte("x")); !os.IsTimeout(err) {
			t.Errorf("held Write past the deadline = %v, want a timeout", err)
		}
	})
	t.Run("too large to hold", func(t *testing.T) {
		a, b := wrappedPair(t, s, nil)
		release := sendfile2.HoldWrite(a)
		defer release()
		big := data[:64<<10]
		if n, err := a.Write(big); n != len(big) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		if got := readN(t, b, len(big)); !bytes.Equal(got, big) {
			t.Error("the peer got other bytes")
		}
	})
}
