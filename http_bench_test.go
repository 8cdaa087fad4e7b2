package sendfile2_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/sendfile2/sendfile2"
)

// httpBenchServers are the servers BenchmarkHTTP compares: net/http on a
// plain listener (its own sendfile(2)), and on a NewListener-wrapped one with
// a Sender of each method.
var httpBenchServers = []struct {
	name   string
	method sendfile2.Method // "": no Sender, no wrapper
	// The handler: http.FileServer, or one that calls
	// sendfile2.ServeContent with an io.SectionReader of the file, on a
	// server with ConnContext when held is set.
	serveContent, held bool
}{
	{"net-http", "", false, false},
	{"sendfile2-auto", sendfile2.Auto, false, false},
	{"sendfile2-uring", sendfile2.URing, false, false},
	{"sendfile2-copy", sendfile2.Copy, false, false},
	{"sendfile2-auto-servecontent", sendfile2.Auto, true, false},
	{"sendfile2-auto-servecontent-held", sendfile2.Auto, true, true},
}

// BenchmarkHTTP serves one file with http.FileServer over loopback and GETs
// it again and again on one keep-alive connection, discarding the body, for
// each server and file size. The server and the client share the machine's
// CPUs. Compare servers with benchstat.
func BenchmarkHTTP(b *testing.B) {
	for _, srv := range httpBenchServers {
		for _, size := range []int{16 << 10, 1 << 20, 64 << 20} {
			b.Run(fmt.Sprintf("server=%s/size=%s", srv.name, sizeName(size)), func(b *testing.B) {
				var s *sendfile2.Sender
				if srv.method != "" {
					s = newSender(b, sendfile2.Config{Method: srv.method})
				}
				benchHTTP(b, s, size, srv.serveContent, srv.held)
			})
		}
	}
}

func benchHTTP(b *testing.B, s *sendfile2.Sender, size int, serveContent, held bool) {
	f, _ := tempFile(b, size)
	dir, name := filepath.Split(f.Name())
	var h http.Handler = http.FileServer(http.Dir(dir))
	if serveContent {
		h = serveContentHandler(dir, true)
	}
	url := serveBench(b, s, h, held) + "/" + name
	c, dials := newClient(b)
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		// Not io.Copy(io.Discard, ...): io.Discard reads in 8 KiB.
		var n int
		for err == nil {
			var k int
			k, err = resp.Body.Read(buf)
			n += k
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !errors.Is(err, io.EOF) || n != size {
			b.Fatalf("GET %s: %s, %d bytes of %d, %v", url, resp.Status, n, size, err)
		}
	}
	if d := dials.Load(); d != 1 {
		b.Errorf("the client dialed %d connections, want 1 kept alive", d)
	}
}

// serveBench serves h on 127.0.0.1 until the end of the benchmark, on a
// listener wrapped with NewListener for s, or unwrapped if s is nil, with
// sendfile2.ConnContext if held, and returns its base URL. Not MPTCP
// (net.Listen's default), whose sockets refuse zero-copy sends.
func serveBench(b *testing.B, s *sendfile2.Sender, h http.Handler, held bool) string {
	b.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	if s != nil {
		ln = sendfile2.NewListener(ln, s)
	}
	srv := &http.Server{Handler: h}
	if held {
		srv.ConnContext = sendfile2.ConnContext
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	b.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			b.Errorf("Serve: %v", err)
		}
	})
	return url
}
