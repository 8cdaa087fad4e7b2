package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sendfile2/sendfile2"
)

// Server limits. Downloads have no write timeout: a send cannot be bounded
// by a connection deadline (Sender.Send works on a duplicate of the socket),
// and a large file to a slow client may rightly take long.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
)

// serveOptions are the flags and argument of `sendfile2 serve`.
type serveOptions struct {
	dir             string
	addr            string
	metricsAddr     string
	maxConns        int
	method          string
	bufferSize      int
	buffers         int
	dontCache       bool
	accessLog       bool
	logFormat       string
	shutdownTimeout time.Duration
}

func serveCommand() *cobra.Command {
	o := serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve [flags] [DIR]",
		Short: "Serve the files under DIR over HTTP, sending their bodies with sendfile2",
		Long: `serve is a static file server on net/http whose file bodies go through a
sendfile2 Sender: each response returns only when the kernel holds no reference
to the file's pages, so files may be rewritten while they are being served.

DIR (default: the current directory) is opened as an os.Root: no path, ".."
or symbolic link can reach a file outside it. Only regular files are served; a
directory serves its index.html (and redirects to the path with a trailing
slash), else 404; FIFOs, devices and sockets give 404. GET and HEAD only.
ETag ("<mtime ns>-<size>" in hex), Last-Modified, Range, multiple ranges and
conditional requests are handled.

On SIGINT or SIGTERM, serve stops accepting connections, waits up to
--shutdown-timeout for the responses in flight, then closes the Sender, which
waits for the kernel's last notification.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.dir = "."
			if len(args) == 1 {
				o.dir = args[0]
			}
			if err := o.validate(); err != nil {
				return err
			}
			log, err := newLogger(cmd.ErrOrStderr(), o.logFormat)
			if err != nil {
				return err
			}
			ln, err := listen(cmd.Context(), o.addr)
			if err != nil {
				return err
			}
			var mln net.Listener
			if o.metricsAddr != "" {
				if mln, err = listen(cmd.Context(), o.metricsAddr); err != nil {
					ln.Close()
					return err
				}
			}
			return serve(cmd.Context(), o, ln, mln, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address to listen on")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at /metrics on this address (default: none)")
	f.IntVar(&o.maxConns, "max-conns", 10000, "most connections open at once; more wait to be accepted")
	f.StringVar(&o.method, "method", string(sendfile2.Auto), "send method: auto, uring, uring-mmap, msgzc, copy, or the unsafe sendfile, splice")
	f.IntVar(&o.bufferSize, "buffer-size", 0, "bytes per registered buffer and per send chunk (0: 256 KiB)")
	f.IntVar(&o.buffers, "buffers", 0, "registered buffers shared by all sends (0: 16)")
	f.BoolVar(&o.dontCache, "dontcache", false, "drop the file pages that sends read from the page cache (RWF_DONTCACHE, Linux 6.14+)")
	f.BoolVar(&o.accessLog, "access-log", false, "log every request to stderr")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT or SIGTERM, how long to wait for responses in flight before closing their connections")
	return cmd
}

func (o *serveOptions) validate() error {
	if _, err := sendfile2.ParseMethod(o.method); err != nil {
		return err
	}
	if o.maxConns < 1 {
		return fmt.Errorf("--max-conns %d: want at least 1", o.maxConns)
	}
	if o.shutdownTimeout < 0 {
		return fmt.Errorf("--shutdown-timeout %v: want 0 or more", o.shutdownTimeout)
	}
	return nil
}

// listen listens on the TCP address addr. Not with MPTCP, which Go (1.24+)
// picks by default for listeners on Linux: the sockets an MPTCP listener
// accepts, even those that fell back to plain TCP, refuse
// IORING_OP_SEND_ZC with EOPNOTSUPP (measured on Linux 6.18), so every
// zero-copy send to them would fail.
func listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc.Listen(ctx, "tcp", addr)
}

func newLogger(w io.Writer, format string) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// serve serves o.dir on ln, and metrics on mln unless it is nil, until ctx
// ends; then it shuts down gracefully and returns. It closes both listeners.
func serve(ctx context.Context, o serveOptions, ln, mln net.Listener, log *slog.Logger) (err error) {
	closeListeners := func() {
		ln.Close()
		if mln != nil {
			mln.Close()
		}
	}
	if err := o.validate(); err != nil {
		closeListeners()
		return err
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		closeListeners()
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		closeListeners()
		return err
	}
	defer root.Close()

	m := newMetrics()
	sender, err := sendfile2.NewSender(sendfile2.Config{
		Method:     sendfile2.Method(o.method),
		BufferSize: o.bufferSize,
		Buffers:    o.buffers,
		DontCache:  o.dontCache,
		Observer:   m,
	})
	if err != nil {
		closeListeners()
		return err
	}
	m.watch(sender)

	var accessLog *slog.Logger
	if o.accessLog {
		accessLog = log
	}
	var handlers sync.WaitGroup // outlive srv.Close; waited for before returning
	h := &fileHandler{root: root}
	srv := &http.Server{
		Handler:           instrument(h, &handlers, m, accessLog),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnState:         m.connState,
	}
	// The limit sits beneath NewListener, so that the conns net/http gets
	// are the Sender's (with ReadFrom) and a closed conn frees its slot.
	hln := sendfile2.NewListener(limitListener(ln, o.maxConns), sender)

	errc := make(chan error, 2)
	servers := []*http.Server{srv}
	go func() { errc <- srv.Serve(hln) }()
	attrs := []any{"addr", ln.Addr().String(), "dir", dir, "method", sender.Method()}
	if mln != nil {
		msrv := &http.Server{
			Handler:           m.handler(),
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		servers = append(servers, msrv)
		go func() { errc <- msrv.Serve(mln) }()
		attrs = append(attrs, "metrics", mln.Addr().String())
	}
	log.Info("serving", attrs...)

	running := len(servers)
	select {
	case <-ctx.Done():
		log.Info("shutting down", "cause", context.Cause(ctx), "timeout", o.shutdownTimeout)
	case err = <-errc: // a listener failed: stop the rest
		running--
		log.Error("serve", "err", err)
	}

	// Downloads first, metrics last: they stay scrapeable while we drain.
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	for _, s := range servers {
		if serr := s.Shutdown(sctx); serr != nil {
			log.Warn("shutdown: closing connections still busy", "err", serr)
			s.Close()
		}
	}
	// After a graceful Shutdown no send is left. After a forced Close, the
	// sends still running are cancelled (by their conn's Close, else by the
	// Sender's); Sender.Close waits for them and for the notifications of
	// what they had queued, and then the last handlers return.
	if cerr := sender.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close sender: %w", cerr)
	}
	handlers.Wait()
	for ; running > 0; running-- {
		if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
	}
	if err == nil {
		log.Info("stopped")
	}
	return err
}

// fileHandler serves the regular files under root.
type fileHandler struct {
	root *os.Root
}

func (h *fileHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	upath := r.URL.Path // percent-decoded once, as it should be
	if !strings.HasPrefix(upath, "/") {
		upath = "/" + upath
	}
	// Clean drops every ".." that would climb above "/"; the Root refuses
	// anything (symbolic links included) that would still leave it.
	name := strings.TrimPrefix(path.Clean(upath), "/")
	if name == "" {
		name = "."
	}
	f, fi, err := h.open(name)
	if err != nil {
		httpError(w, err)
		return
	}
	if fi.IsDir() {
		f.Close()
		name = path.Join(name, "index.html")
		if f, fi, err = h.open(name); err != nil {
			httpError(w, err)
			return
		}
		if !fi.Mode().IsRegular() {
			f.Close()
			http.NotFound(w, r)
			return
		}
		if !strings.HasSuffix(upath, "/") {
			f.Close()
			redirect(w, r, path.Base(upath)+"/")
			return
		}
	} else if !fi.Mode().IsRegular() {
		f.Close() // a FIFO, device or socket: never read from
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	hdr := w.Header()
	hdr.Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.ModTime().UnixNano(), fi.Size()))
	if ct := mime.TypeByExtension(path.Ext(name)); ct != "" {
		hdr.Set("Content-Type", ct)
	} // else ServeContent sniffs the first 512 bytes
	hdr.Set("X-Content-Type-Options", "nosniff")
	// ServeContent copies the body with io.CopyN: net/http hands the
	// *os.File, or an *io.LimitedReader around it, to the ReadFrom of the
	// conn that NewListener made, which sends it with the Sender.
	http.ServeContent(w, r, name, fi.ModTime(), f)
}

// open opens name under the root without blocking, whatever it is: a FIFO
// opened O_RDONLY would wait for a writer, so it is opened O_NONBLOCK and
// checked with fstat on the descriptor itself (no race with a rename between
// a stat and the open). O_NONBLOCK changes nothing for regular files.
func (h *fileHandler) open(name string) (*os.File, fs.FileInfo, error) {
	f, err := h.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// httpError answers for a failed open. Whatever hides a file (missing, a
// path that escapes the root, a symbolic link out of it) is 404.
func httpError(w http.ResponseWriter, err error) {
	code := http.StatusNotFound
	switch {
	case errors.Is(err, fs.ErrPermission):
		code = http.StatusForbidden
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE), errors.Is(err, syscall.ENOMEM):
		code = http.StatusServiceUnavailable
	}
	http.Error(w, http.StatusText(code), code)
}

// redirect sends a relative redirect to target, keeping the query.
func redirect(w http.ResponseWriter, r *http.Request, target string) {
	if q := r.URL.RawQuery; q != "" {
		target += "?" + q
	}
	w.Header().Set("Location", target)
	w.WriteHeader(http.StatusMovedPermanently)
}

// instrument wraps h: it counts requests by status, writes the access log
// when log is not nil, and tracks the handlers running in wg.
func instrument(h http.Handler, wg *sync.WaitGroup, m *metrics, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		defer func() {
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			m.requests.WithLabelValues(strconv.Itoa(status)).Inc()
			if log != nil {
				attrs := []slog.Attr{
					slog.String("method", r.Method),
					slog.String("path", r.URL.Path),
					slog.Int("status", status),
					slog.Int64("bytes", rec.bytes),
					slog.Duration("duration", time.Since(start)),
					slog.String("remote", r.RemoteAddr),
					slog.String("proto", r.Proto),
				}
				if rec.err != nil { // ServeContent drops it: a body cut short
					attrs = append(attrs, slog.String("err", rec.err.Error()))
				}
				log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
			}
		}()
		h.ServeHTTP(rec, r)
	})
}

// recorder notes the status and body bytes of a response. It keeps the
// ReadFrom of net/http's ResponseWriter visible: without it, io.Copy would
// push the file through a buffer and never reach the Sender.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	err    error // of the body's last write
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	if err != nil {
		r.err = err
	}
	return n, err
}

func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{r.ResponseWriter}, src)
	}
	r.bytes += n
	if err != nil {
		r.err = err
	}
	return n, err
}

// Unwrap lets http.ResponseController reach net/http's ResponseWriter.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// limitListener returns a Listener that accepts at most n connections at
// once from ln, as golang.org/x/net/netutil.LimitListener does. netutil's
// conns hide every method of the accepted conn but net.Conn's, SyscallConn
// among them, and NewListener leaves a conn without SyscallConn unwrapped:
// net/http would then copy every body itself and the Sender would send
// nothing. These conns keep SyscallConn, CloseRead and CloseWrite.
func limitListener(ln net.Listener, n int) net.Listener {
	return &limitedListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	sem       chan struct{} // one token per open conn
	closeOnce sync.Once
	done      chan struct{} // closed by Close
}

// Accept waits for a free slot, then for a connection.
func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	lc := &limitedConn{Conn: c, release: func() { <-l.sem }}
	if tc, ok := c.(*net.TCPConn); ok {
		return limitedTCPConn{lc, tc}, nil
	}
	return lc, nil
}

func (l *limitedListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

// limitedConn frees its slot when closed.
type limitedConn struct {
	net.Conn
	releaseOnce sync.Once
	release     func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.releaseOnce.Do(c.release)
	return err
}

// limitedTCPConn is a limitedConn around a *net.TCPConn. It does not keep
// ReadFrom: that is NewListener's.
type limitedTCPConn struct {
	*limitedConn
	tc *net.TCPConn
}

func (c limitedTCPConn) SyscallConn() (syscall.RawConn, error) { return c.tc.SyscallConn() }
func (c limitedTCPConn) CloseRead() error                      { return c.tc.CloseRead() }
func (c limitedTCPConn) CloseWrite() error                     { return c.tc.CloseWrite() }
