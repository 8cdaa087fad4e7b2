package sendfile2_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/netutil"

	"github.com/sendfile2/sendfile2"
)

// serveOn serves h on ln until the end of the test, with ConnContext set,
// and returns its base URL.
func serveOn(t *testing.T, ln net.Listener, h http.Handler, configure ...func(*http.Server)) string {
	t.Helper()
	srv := &http.Server{Handler: h, ConnContext: sendfile2.ConnContext}
	for _, f := range configure {
		f(srv)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		// Shutdown, unlike Close, waits for the conns that net/http lingers
		// on after a response that left the body unread.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// hidingWriter is a middleware's ResponseWriter: it hides ReadFrom, and
// exposes the writer it wraps with Unwrap, as http.ResponseController wants.
type hidingWriter struct {
	http.ResponseWriter
	status int
}

func (w *hidingWriter) WriteHeader(code int)        { w.status = code; w.ResponseWriter.WriteHeader(code) }
func (w *hidingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// opaqueWriter hides ReadFrom and has no Unwrap.
type opaqueWriter struct{ http.ResponseWriter }

func middleware(h http.Handler, wrap func(http.ResponseWriter) http.ResponseWriter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(wrap(w), r) })
}

// encodingMiddleware sets a Content-Encoding, as a compressing middleware
// would, and hides ReadFrom.
func encodingMiddleware(h http.Handler) http.Handler {
	return middleware(h, func(w http.ResponseWriter) http.ResponseWriter {
		w.Header().Set("Content-Encoding", "identity")
		return &hidingWriter{ResponseWriter: w}
	})
}

// TestBypass: each way around NewListener either sends the file body with
// the Sender, or copies it (byte-exact) and counts it in Stats.Bypassed.
func TestBypass(t *testing.T) {
	const size = 1 << 20
	fs := newFileSet(t, size)
	name := fs.name(size)
	serveContent := contentHandler(fs.dir, false, sendfile2.ServeContent)
	fileServer := http.FileServer(http.Dir(fs.dir))
	encoding := encodingMiddleware(serveContent)
	tests := []struct {
		name   string
		listen func(net.Listener, *sendfile2.Sender) net.Listener
		h      http.Handler
		sent   int64 // bytes the Sender sends
		bypass sendfile2.Bypass
	}{
		{
			name: "NewListener(LimitListener)/FileServer",
			listen: func(ln net.Listener, s *sendfile2.Sender) net.Listener {
				return sendfile2.NewListener(netutil.LimitListener(ln, 10), s)
			},
			h:    http.FileServer(http.Dir(fs.dir)),
			sent: viaReadFrom(size),
		},
		{
			name: "NewListener(LimitListener)/ServeContent",
			listen: func(ln net.Listener, s *sendfile2.Sender) net.Listener {
				return sendfile2.NewListener(netutil.LimitListener(ln, 10), s)
			},
			h:    serveContent,
			sent: size + 1, // the head too: at least one byte more than the body
		},
		{
			name: "LimitListener(NewListener)/ServeContent",
			listen: func(ln net.Listener, s *sendfile2.Sender) net.Listener {
				return netutil.LimitListener(sendfile2.NewListener(ln, s), 10)
			},
			h:      serveContent,
			bypass: sendfile2.BypassWrappedConn,
		},
		{
			// Neither the conn nor ServeContent takes part: net/http copies
			// unseen (listed in NewListener's documentation).
			name: "LimitListener(NewListener)/FileServer",
			listen: func(ln net.Listener, s *sendfile2.Sender) net.Listener {
				return netutil.LimitListener(sendfile2.NewListener(ln, s), 10)
			},
			h: http.FileServer(http.Dir(fs.dir)),
		},
		{
			name:   "middleware with Unwrap/ServeContent",
			listen: sendfile2.NewListener,
			h: middleware(serveContent, func(w http.ResponseWriter) http.ResponseWriter {
				return flushingWriter{&hidingWriter{ResponseWriter: w}}
			}),
			sent: size + 1,
		},
		{
			name:   "middleware with Unwrap, no Flush/ServeContent",
			listen: sendfile2.NewListener,
			h:      middleware(serveContent, func(w http.ResponseWriter) http.ResponseWriter { return &hidingWriter{ResponseWriter: w} }),
			bypass: sendfile2.BypassWriter,
		},
		{
			name:   "middleware without Unwrap/ServeContent",
			listen: sendfile2.NewListener,
			h:      middleware(serveContent, func(w http.ResponseWriter) http.ResponseWriter { return opaqueWriter{w} }),
			bypass: sendfile2.BypassWriter,
		},
		{
			name:   "encoding middleware/ServeContent",
			listen: sendfile2.NewListener,
			h:      encoding,
			bypass: sendfile2.BypassEncoded,
		},
		{
			// A conn wrapper of one's own around NewListener's, embedding it:
			// ServeContent finds the conn through it.
			name: "wrapper(NewListener)/ServeContent",
			listen: func(ln net.Listener, s *sendfile2.Sender) net.Listener {
				return opaqueListener{sendfile2.NewListener(ln, s)}
			},
			h:      serveContent,
			bypass: sendfile2.BypassWrappedConn,
		},
		{
			// A wrapper that passes ReadFrom on hides nothing.
			name: "wrapper with ReadFrom(NewListener)/ServeContent",
			listen: func(ln net.Listener, s *sendfile2.Sender) net.Listener {
				return readFromListener{sendfile2.NewListener(ln, s)}
			},
			h:    serveContent,
			sent: size + 1,
		},
		{
			name:   "NewListener/Handler(FileServer)",
			listen: sendfile2.NewListener,
			h:      sendfile2.Handler(fileServer),
			sent:   viaReadFrom(size),
		},
		{
			name: "LimitListener(NewListener)/Handler(FileServer)",
			listen: func(ln net.Listener, s *sendfile2.Sender) net.Listener {
				return netutil.LimitListener(sendfile2.NewListener(ln, s), 10)
			},
			h:      sendfile2.Handler(fileServer),
			bypass: sendfile2.BypassWrappedConn,
		},
		{
			name: "wrapper(NewListener)/Handler(FileServer)",
			listen: func(ln net.Listener, s *sendfile2.Sender) net.Listener {
				return opaqueListener{sendfile2.NewListener(ln, s)}
			},
			h:      sendfile2.Handler(fileServer),
			bypass: sendfile2.BypassWrappedConn,
		},
		{
			// net/http copies unseen (listed in NewListener's documentation).
			name:   "middleware with Unwrap/FileServer",
			listen: sendfile2.NewListener,
			h:      middleware(fileServer, func(w http.ResponseWriter) http.ResponseWriter { return &hidingWriter{ResponseWriter: w} }),
		},
		{
			name:   "middleware with Unwrap/Handler(FileServer)",
			listen: sendfile2.NewListener,
			h: middleware(sendfile2.Handler(fileServer), func(w http.ResponseWriter) http.ResponseWriter {
				return flushingWriter{&hidingWriter{ResponseWriter: w}}
			}),
			// The header is flushed down before the body goes around the
			// middleware, so net/http sniffs nothing: every byte is sent.
			sent: size,
		},
		{
			// It may hold the status back: without a Flush of its own,
			// the body goes through its Write.
			name:   "middleware with Unwrap, no Flush/Handler(FileServer)",
			listen: sendfile2.NewListener,
			h:      middleware(sendfile2.Handler(fileServer), func(w http.ResponseWriter) http.ResponseWriter { return &hidingWriter{ResponseWriter: w} }),
			bypass: sendfile2.BypassWriter,
		},
		{
			name:   "middleware without Unwrap/Handler(FileServer)",
			listen: sendfile2.NewListener,
			h:      middleware(sendfile2.Handler(fileServer), func(w http.ResponseWriter) http.ResponseWriter { return opaqueWriter{w} }),
			bypass: sendfile2.BypassWriter,
		},
		{
			// Outside the middleware, Handler sees writes, not a file.
			name:   "Handler(middleware without Unwrap)/FileServer",
			listen: sendfile2.NewListener,
			h:      sendfile2.Handler(middleware(fileServer, func(w http.ResponseWriter) http.ResponseWriter { return opaqueWriter{w} })),
		},
		{
			name:   "encoding middleware/Handler(FileServer)",
			listen: sendfile2.NewListener,
			h:      encodingMiddleware(sendfile2.Handler(fileServer)),
			bypass: sendfile2.BypassEncoded,
		},
		{
			// Handler and ServeContent both on the path: one send, no count.
			name:   "middleware with Unwrap/Handler(ServeContent)",
			listen: sendfile2.NewListener,
			h: middleware(sendfile2.Handler(serveContent), func(w http.ResponseWriter) http.ResponseWriter {
				return flushingWriter{&hidingWriter{ResponseWriter: w}}
			}),
			sent: size + 1,
		},
		{
			name:   "FileServerFS",
			listen: sendfile2.NewListener,
			h:      http.FileServerFS(os.DirFS(fs.dir)),
			bypass: sendfile2.BypassNoDescriptor,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: sendfile2.Copy})
			url := serveOn(t, tt.listen(listenTCP(t), s), tt.h)
			c, _ := newClient(t)
			for range 2 {
				resp, body := get(t, c, "GET", url+"/"+name)
				if resp.StatusCode != 200 || !bytes.Equal(body, fs.data[name]) {
					t.Fatalf("status %d, %d bytes that differ from the file", resp.StatusCode, len(body))
				}
			}
			st := s.Stats()
			sent := engineBytes(s)
			switch {
			case tt.bypass != "":
				if sent != 0 || st.Bypassed[tt.bypass] != 2 || len(st.Bypassed) != 1 {
					t.Fatalf("Sender sent %d bytes, Bypassed %v; want 0 bytes and %s: 2", sent, st.Bypassed, tt.bypass)
				}
			case tt.sent > size:
				if sent <= 2*size || st.Bypassed != nil {
					t.Fatalf("Sender sent %d bytes, Bypassed %v; want every byte of two responses, nothing bypassed", sent, st.Bypassed)
				}
			default:
				if sent != 2*tt.sent || st.Bypassed != nil {
					t.Fatalf("Sender sent %d bytes, Bypassed %v; want %d, nothing bypassed", sent, st.Bypassed, 2*tt.sent)
				}
			}
		})
	}
}

// TestBypassLimitListenerHalfClose: the conns of
// NewListener(netutil.LimitListener(ln)) keep the socket's CloseWrite, which
// netutil's conns hide, and Close still frees the limit's slot.
func TestBypassLimitListenerHalfClose(t *testing.T) {
	s := newSender(t, sendfile2.Config{Method: sendfile2.Copy})
	ln := sendfile2.NewListener(netutil.LimitListener(listenTCP(t), 1), s)
	defer ln.Close()
	for range 2 { // a slot not freed would block the second Accept
		d, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		cw, ok := c.(interface{ CloseWrite() error })
		if !ok {
			t.Fatalf("%T has no CloseWrite", c)
		}
		if err := cw.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if n, err := d.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Fatalf("read after CloseWrite = %d, %v; want EOF", n, err)
		}
		c.Close()
		d.Close()
	}
}

// TestBypassH2C: over HTTP/2 without TLS, the file bodies of ServeContent,
// and of http.FileServer under Handler, are copied and counted.
func TestBypassH2C(t *testing.T) {
	const size = 1 << 20
	fs := newFileSet(t, size)
	for _, tt := range []struct {
		name string
		h    http.Handler
	}{
		{"ServeContent", contentHandler(fs.dir, false, sendfile2.ServeContent)},
		{"Handler(FileServer)", sendfile2.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := w.(http.Pusher); !ok { // HTTP/2's writer has Push
				t.Errorf("%T has no Push", w)
			}
			http.FileServer(http.Dir(fs.dir)).ServeHTTP(w, r)
		}))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: sendfile2.Copy})
			var p http.Protocols
			p.SetUnencryptedHTTP2(true)
			url := serveOn(t, sendfile2.NewListener(listenTCP(t), s), tt.h, func(srv *http.Server) { srv.Protocols = &p })
			tr := &http.Transport{Protocols: &p, TLSClientConfig: &tls.Config{}}
			defer tr.CloseIdleConnections()
			resp, body := get(t, &http.Client{Transport: tr}, "GET", url+"/"+fs.name(size))
			if resp.ProtoMajor != 2 || !bytes.Equal(body, fs.data[fs.name(size)]) {
				t.Fatalf("%s, %d bytes that differ from the file", resp.Proto, len(body))
			}
			if st := s.Stats(); st.Bypassed[sendfile2.BypassHTTP2] != 1 || len(st.Bypassed) != 1 {
				t.Fatalf("Bypassed %v, want http2: 1", st.Bypassed)
			}
		})
	}
}

// opaqueListener accepts conns wrapped in a type that hides the socket.
type opaqueListener struct{ net.Listener }

type opaqueConn struct{ net.Conn }

func (l opaqueListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return opaqueConn{c}, nil
}

// readFromListener accepts conns wrapped in a type that passes ReadFrom
// on to the conn it wraps.
type readFromListener struct{ net.Listener }

type readFromConn struct{ net.Conn }

func (l readFromListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return readFromConn{c}, nil
}

func (c readFromConn) ReadFrom(r io.Reader) (int64, error) { return c.Conn.(io.ReaderFrom).ReadFrom(r) }

// TestBypassOpaqueConn: a conn wrapper under NewListener that hides the
// socket is logged once, with its type; the file bodies are copied, exact.
func TestBypassOpaqueConn(t *testing.T) {
	const size = 100 << 10
	fs := newFileSet(t, size)
	logs := &syncWriter{w: &strings.Builder{}}
	s := newSender(t, sendfile2.Config{Method: sendfile2.Copy, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	url := serveOn(t, sendfile2.NewListener(opaqueListener{listenTCP(t)}, s), http.FileServer(http.Dir(fs.dir)))
	for range 2 {
		tr := &http.Transport{}
		resp, body := get(t, &http.Client{Transport: tr}, "GET", url+"/"+fs.name(size))
		tr.CloseIdleConnections()
		if resp.StatusCode != 200 || !bytes.Equal(body, fs.data[fs.name(size)]) {
			t.Fatalf("status %d, %d bytes that differ", resp.StatusCode, len(body))
		}
	}
	if n := engineBytes(s); n != 0 {
		t.Fatalf("the Sender sent %d bytes", n)
	}
	out := logs.String()
	if strings.Count(out, "expose no socket") != 1 || !strings.Contains(out, "sendfile2_test.opaqueConn") {
		t.Fatalf("log %q: want one warning naming sendfile2_test.opaqueConn", out)
	}
}

// syncWriter serializes writes to w, and reads of it.
type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// countingWriter is a middleware's ResponseWriter that counts the body
// bytes written through it, hides ReadFrom, and has Unwrap.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n.Add(int64(n))
	return n, err
}

func (w countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestHandlerResponseWriter: the ResponseWriter that Handler gives under a
// middleware that hides ReadFrom flushes and hijacks as the one it wraps,
// and passes bodies that are not files through the middleware.
func TestHandlerResponseWriter(t *testing.T) {
	release := make(chan struct{})
	var written atomic.Int64
	handlers := map[string]http.HandlerFunc{
		// Each flush must reach the client before release.
		"/flusher": func(w http.ResponseWriter, r *http.Request) {
			f, ok := w.(http.Flusher)
			if !ok {
				http.Error(w, "no Flusher", 500)
				return
			}
			io.WriteString(w, "head")
			f.Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			io.WriteString(w, "tail")
		},
		"/controller": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "head")
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("Flush: %v", err)
			}
			select {
			case <-release:
			case <-r.Context().Done():
			}
			io.WriteString(w, "tail")
		},
		"/hijack": func(w http.ResponseWriter, r *http.Request) {
			hj, ok := w.(http.Hijacker)
			if !ok {
				http.Error(w, "no Hijacker", 500)
				return
			}
			c, brw, err := hj.Hijack()
			if err != nil {
				t.Errorf("Hijack: %v", err)
				return
			}
			defer c.Close()
			brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
			brw.Flush()
		},
		// A reader without WriteTo: io.Copy hands it to ReadFrom.
		"/stream": func(w http.ResponseWriter, r *http.Request) {
			io.Copy(w, struct{ io.Reader }{strings.NewReader(strings.Repeat("stream", 1000))})
		},
	}
	s := newSender(t, sendfile2.Config{Method: sendfile2.Copy})
	h := middleware(sendfile2.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers[r.URL.Path](w, r)
	})), func(w http.ResponseWriter) http.ResponseWriter { return countingWriter{w, &written} })
	url := serveOn(t, sendfile2.NewListener(listenTCP(t), s), h)
	c, _ := newClient(t)
	c.Timeout = time.Minute // a flush that does not reach the client fails here
	for _, path := range []string{"/flusher", "/controller"} {
		t.Run(path[1:], func(t *testing.T) {
			resp, err := c.Get(url + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			head := make([]byte, 4)
			if _, err := io.ReadFull(resp.Body, head); err != nil || string(head) != "head" {
				t.Fatalf("read %q, %v; want head", head, err)
			}
			release <- struct{}{}
			if rest, err := io.ReadAll(resp.Body); err != nil || string(rest) != "tail" {
				t.Fatalf("read %q, %v; want tail", rest, err)
			}
		})
	}
	t.Run("hijack", func(t *testing.T) {
		resp, body := get(t, c, "GET", url+"/hijack")
		if resp.StatusCode != 200 || string(body) != "hijacked" {
			t.Fatalf("status %d, body %q", resp.StatusCode, body)
		}
	})
	t.Run("stream", func(t *testing.T) {
		written.Store(0)
		resp, body := get(t, c, "GET", url+"/stream")
		if want := strings.Repeat("stream", 1000); resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("status %d, %d bytes that differ", resp.StatusCode, len(body))
		}
		if n := written.Load(); n != 6000 {
			t.Fatalf("the middleware saw %d bytes of 6000", n)
		}
	})
	if st := s.Stats(); st.Bypassed != nil {
		t.Fatalf("Bypassed %v", st.Bypassed)
	}
}

// lazyWriter is a middleware's writer that holds the status back until the
// first Write, as compressing middlewares do, and has Unwrap.
type lazyWriter struct {
	http.ResponseWriter
	code int
}

func (w *lazyWriter) WriteHeader(code int) { w.code = code }
func (w *lazyWriter) Write(p []byte) (int, error) {
	w.pass()
	return w.ResponseWriter.Write(p)
}
func (w *lazyWriter) pass() {
	if w.code != 0 {
		w.ResponseWriter.WriteHeader(w.code)
		w.code = 0
	}
}
func (w *lazyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestHandlerLazyMiddleware: under a middleware that holds the status back
// until its first Write or Flush, Handler(FileServer) answers a range request
// with 206 and the range, sent through the Sender; a middleware that holds it
// and cannot flush gets the body through its Write, counted as a bypass.
func TestHandlerLazyMiddleware(t *testing.T) {
	const size = 1 << 20
	fs := newFileSet(t, size)
	name := fs.name(size)
	for _, flush := range []bool{true, false} {
		t.Run(fmt.Sprintf("flush=%v", flush), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: sendfile2.Copy})
			wrap := func(w http.ResponseWriter) http.ResponseWriter {
				if flush {
					return flushingLazy{&lazyWriter{ResponseWriter: w}}
				}
				return &lazyWriter{ResponseWriter: w}
			}
			url := serveOn(t, sendfile2.NewListener(listenTCP(t), s), middleware(sendfile2.Handler(http.FileServer(http.Dir(fs.dir))), wrap))
			c, _ := newClient(t)
			resp, body := get(t, c, "GET", url+"/"+name, "Range", "bytes=1000-200999")
			if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, fs.data[name][1000:201000]) {
				t.Fatalf("status %d, %d bytes; want 206 and bytes 1000-200999 of the file", resp.StatusCode, len(body))
			}
			st := s.Stats()
			if flush && (engineBytes(s) != 200000 || st.Bypassed != nil) {
				t.Errorf("Sender sent %d bytes, Bypassed %v; want the range, nothing bypassed", engineBytes(s), st.Bypassed)
			}
			if !flush && st.Bypassed[sendfile2.BypassWriter] != 1 {
				t.Errorf("Bypassed %v; want writer: 1", st.Bypassed)
			}
		})
	}
}

// flushingLazy is a lazyWriter with a Flush that passes the status on.
type flushingLazy struct{ *lazyWriter }

func (w flushingLazy) Flush() {
	w.pass()
	http.NewResponseController(w.ResponseWriter).Flush()
}

// flushingWriter is a hidingWriter with a Flush of its own.
type flushingWriter struct{ *hidingWriter }

func (w flushingWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }
