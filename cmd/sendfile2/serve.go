package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/sendfile2/sendfile2"
)

// Server limits. Downloads have no write timeout: a large file to a slow
// client may rightly take long. --send-timeout bounds the time a peer may
// take no byte of a response instead, and --body-timeout the time between
// two bytes of a request body (timeouts.go).
const (
	// The defaults of --read-header-timeout and --idle-timeout.
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
	upload          bool
	maxUpload       int64
	allowHardlinks  bool
	openFiles       int // files kept open between requests (opencache.go)
	// 0: readHeaderTimeout, idleTimeout.
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	// 0: no limit.
	bodyTimeout time.Duration
	sendTimeout time.Duration
	lean        bool        // the lean path for plain HTTP (lean.go)
	http        httpOptions // httpflags.go
}

// serveLong is the help of `sendfile2 serve`.
const serveLong = `serve is a static file server on net/http whose file bodies go through a
sendfile2 Sender: each response returns only when the kernel holds no reference
to the file's pages, so files may be rewritten while they are being served.
On plain HTTP, a kept-alive HTTP/1.1 GET or HEAD of a file, without body,
range, condition, coding or credentials, is answered by a lean path of
serve's own, with the bytes net/http would send; the first
request on a connection that it does not answer so goes, with the
connection, to net/http (--lean=false: net/http answers all).

DIR (default: the current directory) is opened as an os.Root: no path, ".."
or symbolic link can reach a file outside it. Only regular files are served; a
directory serves its index.html (and redirects to the path with a trailing
slash), else 404 (or a listing with --browse); FIFOs, devices and sockets
give 404, and are never opened.
A regular file with more than one hard link gives 403 unless
--allow-hardlinks: a hard link in DIR may name a file that also lives outside
it, and nothing tells which of its names is the real one. GET and HEAD, and
PUT with --upload. ETag ("<mtime ns>-<size>" in hex), Last-Modified, Range,
multiple ranges (up to 200; more are ignored) and conditional requests are
handled.

With --upload, PUT stores the request body at the path (201 Created, or 204 No
Content for a file replaced), under the same rules: the parent directory must
exist in DIR (else 409), and the target must be a regular file or absent (a
directory, symbolic link, FIFO or device gives 409). The body goes to a
temporary file (".sendfile2-upload-*", mode 0644) in the target's directory,
which is fsynced and renamed over the target only once it is complete; the
directory is fsynced too before the response. A failed or partial upload
leaves the old file and no temporary file. A body with a Content-Length is
received with the Sender (on the hijacked connection, which then closes); a
chunked one is read through net/http. Bodies over --max-upload give 413.
At start, serve --upload removes the temporary files that a killed serve
left: regular files named ".sendfile2-upload-" and 16 hex digits, not
modified for twice --body-timeout and a minute (a day with --body-timeout
0), in DIR and below (never through a symbolic link, at most 64 directories
deep and 1,000,000 entries). A live upload writes its file more often than
that or is cut, so those of another serve on the same DIR (an overlapping
restart) stay.

Limits: a client that sends no byte of a request body for --body-timeout,
or takes no byte of a response for --send-timeout (while the response waits
in the socket), has its connection closed (reset, for a response: what it
did not take is dropped at once). --max-conns is lowered, and logged, to
what RLIMIT_NOFILE holds (a connection may hold 4 descriptors, 7 with
--upload, 2 more with splice; the soft limit is raised to the hard one
first), so that accepting never fails for want of one; when every slot is
taken, the longest idle keep-alive connection is closed to make room.
Each limit reached is logged and counted (sendfile2_http_limit_closes_total).

Started by systemd with listening sockets (socket activation: LISTEN_FDS,
LISTEN_PID, LISTEN_FDNAMES), serve serves the files on the one not named
"metrics" and the metrics on the one that is, and refuses --addr. Zero-copy
sends need a plain TCP socket (ListenStream=PORT, not MPTCP nor a Unix
socket); on others every body is copied, safely, and the log says so.

With --tls-cert and --tls-key, serve speaks HTTPS, and HTTP/2 over it.
crypto/tls copies each body into its records: the guarantee holds, but
without zero-copy; plain HTTP (behind a TLS-terminating proxy) is the
zero-copy path, and is HTTP/1.1 only (no h2c). --precompressed serves
NAME.br, NAME.zst or NAME.gz, under the same rules as NAME, to a client
whose Accept-Encoding takes it, with NAME's type and an ETag of its own;
nothing is compressed on the fly. --header adds headers to every response.
--htpasswd requires Basic authentication (bcrypt hashes) for PUT, or with
--auth-all for every request; --upload on an address other than loopback
needs it, or --upload-open. --browse lists a directory without index.html
(HTML, or JSON for Accept: application/json): what a GET would serve, names
escaped, at most 10,000 entries read (past them the listing says it was
cut). SIGHUP reloads the certificate and the htpasswd file; a file that
fails to load leaves the one in use.

On SIGINT or SIGTERM, serve stops accepting connections, waits up to
--shutdown-timeout for the responses in flight, then resets the connections
still busy (as --send-timeout does) and closes the Sender, which waits up to
5s more for the kernel's last notification.`

func serveCommand() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve [flags] [DIR]",
		Short: "Serve the files under DIR over HTTP, sending their bodies with sendfile2",
		Long:  serveLong,
		Args:  cobra.MaximumNArgs(1),
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
			ln, mln, err := serveListeners(cmd.Context(), o, cmd.Flags().Changed, log)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), o, ln, mln, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address to listen on (not with a listening socket from systemd)")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at /metrics on this address (default: none)")
	countVar(f, &o.maxConns, "max-conns", 10000, 1, "most connections open at once (lowered to fit RLIMIT_NOFILE); at the limit, the longest idle keep-alive connection is closed to make room, else new ones wait")
	choiceVar(f, &o.method, "method", string(sendfile2.Auto), "method", methodNames(), "send method: auto, uring, uring-mmap, msgzc, copy, or the unsafe sendfile, splice")
	sizeVar(f, &o.bufferSize, "buffer-size", 0, 4<<10, 1<<30, "bytes per registered buffer and per send chunk, a multiple of 4KiB (0: 256KiB)").align = 4 << 10
	countVar(f, &o.buffers, "buffers", 0, 0, "registered buffers shared by all sends (0: 16)")
	f.BoolVar(&o.dontCache, "dontcache", false, "drop the file pages that sends read from the page cache (RWF_DONTCACHE, Linux 6.14+)")
	f.BoolVar(&o.accessLog, "access-log", false, "log every request to stderr")
	choiceVar(f, &o.logFormat, "log-format", "text", "log format", []string{"text", "json"}, "log format: text or json")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT or SIGTERM, how long to wait for responses and uploads in flight before closing their connections")
	f.BoolVar(&o.upload, "upload", false, "accept PUT: store the request body at the path, atomically")
	sizeVar(f, &o.maxUpload, "max-upload", 1<<30, 0, math.MaxInt64, "largest PUT body accepted (bytes, or with a unit: 1GiB, 500MB)")
	countVar(f, &o.openFiles, "open-files", defaultOpenFiles, 0, "files kept open between requests for their name, each checked again with a stat(2) per request (lowered to a quarter of the descriptors RLIMIT_NOFILE leaves; 0: none)")
	f.BoolVar(&o.allowHardlinks, "allow-hardlinks", false, "serve regular files that have more than one hard link (by default 403: a hard link in DIR can name a file outside it)")
	f.DurationVar(&o.readHeaderTimeout, "read-header-timeout", readHeaderTimeout, "how long a client may take to send a request's header; the connection is closed after it")
	f.DurationVar(&o.idleTimeout, "idle-timeout", idleTimeout, "how long a kept-alive connection may wait for its next request before it is closed")
	f.DurationVar(&o.bodyTimeout, "body-timeout", defaultBodyTimeout, "how long a client may send no byte of a request body (an upload, or a body no handler reads) before the connection is closed (0: no limit)")
	f.DurationVar(&o.sendTimeout, "send-timeout", defaultSendTimeout, "how long a client may take no byte of a response before the connection is reset (0: no limit)")
	f.BoolVar(&o.lean, "lean", true, "answer plain-HTTP GET and HEAD of files on a lean HTTP/1.1 path of serve's own, and hand every other request, with its connection, to net/http (false: net/http answers all)")
	o.http.addFlags(f)
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
	if o.maxUpload < 0 {
		return fmt.Errorf("--max-upload %d: want 0 or more", o.maxUpload)
	}
	if o.readHeaderTimeout < 0 {
		return fmt.Errorf("--read-header-timeout %v: want 0 (the default) or more", o.readHeaderTimeout)
	}
	if o.idleTimeout < 0 {
		return fmt.Errorf("--idle-timeout %v: want 0 (the default) or more", o.idleTimeout)
	}
	if o.bodyTimeout < 0 {
		return fmt.Errorf("--body-timeout %v: want 0 (no limit) or more", o.bodyTimeout)
	}
	if o.sendTimeout < 0 {
		return fmt.Errorf("--send-timeout %v: want 0 (no limit) or more", o.sendTimeout)
	}
	return o.validateHTTP()
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
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: durationSeconds})), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// serve serves o.dir on ln, and metrics on mln unless it is nil, until ctx
// ends; then it shuts down gracefully and returns. It closes both listeners.
func serve(ctx context.Context, o serveOptions, ln, mln net.Listener, log *slog.Logger) error {
	err := o.checkUploadListener(ln) // httpflags.go
	var s *server
	if err == nil {
		s, err = newServer(o, log)
	}
	if err != nil {
		ln.Close()
		if mln != nil {
			mln.Close()
		}
		return err
	}
	defer s.close()
	s.start(ln, mln)
	return s.shutdown(s.wait(ctx))
}

// server is a running `sendfile2 serve`: the file server, the metrics
// server when there is one, and what they share.
type server struct {
	o        serveOptions
	log      *slog.Logger
	dir      string // o.dir, absolute
	root     *os.Root
	metrics  *metrics
	sender   *sendfile2.Sender
	files    *fileHandler
	http     *httpFeatures
	conns    *connTracker
	maxConns int            // o.maxConns, or less to fit RLIMIT_NOFILE (fdbudget.go)
	handlers sync.WaitGroup // outlive srv.Close; waited for before returning
	lean     *leanServer    // nil: net/http answers every request
	servers  []*http.Server // the file server, then the metrics server
	errc     chan error     // what each server's Serve returned
	running  int            // servers whose Serve has not returned
}

// newServer opens o.dir as a root and makes the Sender.
func newServer(o serveOptions, log *slog.Logger) (*server, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return nil, err
	}
	hf, err := newHTTPFeatures(o, log)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	m := newMetrics()
	sender, err := sendfile2.NewSender(sendfile2.Config{
		Method:     sendfile2.Method(o.method),
		BufferSize: o.bufferSize,
		Buffers:    o.buffers,
		DontCache:  o.dontCache,
		Observer:   m,
	})
	if err != nil {
		root.Close()
		return nil, err
	}
	m.watch(sender)
	maxConns, openFiles := fitConns(o, log)
	cache := newFileCache(openFiles, fileCacheIdle)
	m.watchCache(cache)
	if o.upload {
		removeStaleUploads(root, time.Now().Add(-staleAge(o.bodyTimeout)), log)
	}
	return &server{
		o: o, log: log, dir: dir, root: root, metrics: m, sender: sender,
		files: &fileHandler{root: root, upload: o.upload, maxUpload: int64(o.maxUpload), allowHardlinks: o.allowHardlinks,
			sender: sender, uploads: newUploadGroup(), guard: newLinkGuard(root, log), cache: cache,
			browse: o.http.browse, codings: mustCodings(o.http.precompressed)},
		http:     hf,
		conns:    newConnTracker(log, m.limitCloses, o.sendTimeout, o.bodyTimeout),
		maxConns: maxConns,
		errc:     make(chan error, 2),
	}, nil
}

// start serves the files on ln, and the metrics on mln unless it is nil.
func (s *server) start(ln, mln net.Listener) {
	var accessLog *slog.Logger
	if s.o.accessLog {
		accessLog = s.log
	}
	uploads := func(r *http.Request) bool { return s.o.upload && r.Method == http.MethodPut }
	acct := &accounting{m: s.metrics, log: s.log, accessLog: accessLog}
	srv := &http.Server{
		Handler:           instrument(s.http.wrap(s.conns.guardBodies(s.files, uploads)), &s.handlers, acct),
		ReadHeaderTimeout: cmp.Or(s.o.readHeaderTimeout, readHeaderTimeout),
		IdleTimeout:       cmp.Or(s.o.idleTimeout, idleTimeout),
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ConnState: func(c net.Conn, st http.ConnState) {
			s.metrics.connState(c, st)
			s.conns.connState(c, st)
		},
		ConnContext: s.conns.connContext, // for sendfile2.ServeContent too
	}
	// The limit sits beneath NewListener, so that the conns net/http gets
	// are the Sender's (with ReadFrom) and a closed conn frees its slot; the
	// tracker above it, to see the conns as net/http does.
	var hln net.Listener = trackingListener{sendfile2.NewListener(limitReclaiming(ln, s.maxConns, s.conns), s.sender), s.conns}
	if leanable(s.o) {
		s.lean = s.newLean(acct, srv)
		hln = s.lean.listener(hln)
	}
	s.servers = append(s.servers, srv)
	go func() { s.errc <- s.http.serve(srv, hln) }()
	s.http.watch()
	attrs := append([]any{"addr", ln.Addr().String(), "dir", s.dir, "method", s.sender.Method()}, s.http.attrs()...)
	if mln != nil {
		mln = limitListener(mln, metricsMaxConns)
		msrv := &http.Server{
			Handler:           s.metrics.handler(),
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
		s.servers = append(s.servers, msrv)
		go func() { s.errc <- msrv.Serve(mln) }()
		attrs = append(attrs, "metrics", mln.Addr().String())
	}
	s.running = len(s.servers)
	s.log.Info("serving", attrs...)
}

// wait waits until ctx ends (nil) or a server fails (its error).
func (s *server) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		s.log.Info("shutting down", "cause", context.Cause(ctx), "timeout", s.o.shutdownTimeout)
		return nil
	case err := <-s.errc: // a listener failed: stop the rest
		s.running--
		s.log.Error("serve", "err", err)
		return err
	}
}

// shutdown stops the servers, the uploads and the Sender, within
// o.shutdownTimeout where it can, and returns err, else the first failure.
func (s *server) shutdown(err error) error {
	// Downloads first, metrics last: they stay scrapeable while we drain.
	sctx, cancel := context.WithTimeout(context.Background(), s.o.shutdownTimeout)
	defer cancel()
	for i, srv := range s.servers {
		// The lean conns first: they may still hand a request to srv.
		// While they finish, srv's own conns close once idle and answer
		// no request after their current one, as in srv.Shutdown: a
		// lean download that is slow to end must not keep them open.
		if i == 0 && s.lean != nil {
			srv.SetKeepAlivesEnabled(false)
		}
		leanDone := i != 0 || s.lean == nil || s.lean.shutdown(sctx.Done())
		serr := srv.Shutdown(sctx)
		if serr == nil && !leanDone {
			serr = context.Cause(sctx)
		}
		if serr != nil {
			if i == 0 {
				// Reset them first: Close alone waits for the sends
				// in flight, which a peer that reads nothing holds
				// for --send-timeout, or for ever.
				n := s.conns.abortAll()
				s.log.Warn("shutdown: resetting connections still busy", "err", serr, "conns", n)
			} else {
				s.log.Warn("shutdown: closing connections still busy", "err", serr)
			}
			srv.Close()
		}
		if i == 0 {
			// Shutdown neither waits for nor closes hijacked conns: wait
			// for the uploads on them within the same timeout, then
			// cancel those still running (they fail and leave no file).
			if uerr := s.files.uploads.wait(sctx); uerr != nil {
				s.log.Warn("shutdown: cancelling uploads still running", "err", uerr)
			}
			s.files.uploads.cancel(errors.New("server shut down"))
		}
	}
	// After a graceful Shutdown no send is left. After a forced Close, the
	// sends still running are cancelled (by their conn's reset and Close,
	// else by the Sender's); Sender.Shutdown waits for them and for the
	// notifications of what they had queued, and then the last handlers
	// return. Both waits are bounded: serve returns even if the kernel
	// keeps a send.
	cctx, ccancel := context.WithTimeout(context.Background(), senderShutdownTimeout)
	defer ccancel()
	if cerr := s.sender.Shutdown(cctx); errors.Is(cerr, context.DeadlineExceeded) {
		s.log.Warn("shutdown: sends still running, the Sender left open", "timeout", senderShutdownTimeout)
	} else if cerr != nil && err == nil {
		err = fmt.Errorf("close sender: %w", cerr)
	}
	if !waitGroupCtx(cctx, &s.handlers) {
		s.log.Warn("shutdown: handlers still running", "timeout", senderShutdownTimeout)
	}
	for ; s.running > 0; s.running-- {
		if serr := <-s.errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
	}
	if err == nil {
		s.log.Info("stopped")
	}
	return err
}

// senderShutdownTimeout bounds how long shutdown waits, after the servers
// closed, for the Sender to release its sends and for the last handlers.
const senderShutdownTimeout = 5 * time.Second

// waitGroupCtx waits for wg until ctx ends, and reports whether wg was done.
func waitGroupCtx(ctx context.Context, wg *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// close ends the uploads that are left, stops the connection tracker and
// closes the root.
func (s *server) close() {
	s.http.stop()
	s.files.uploads.cancel(errors.New("serve returned"))
	s.conns.close()
	s.files.cache.close()
	s.files.guard.close()
	s.root.Close()
}
