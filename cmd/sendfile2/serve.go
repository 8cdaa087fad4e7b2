package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
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

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/sendfile2/sendfile2"
)

// Server limits. Downloads have no write timeout: a send cannot be bounded
// by a connection deadline (Sender.Send works on a duplicate of the socket),
// and a large file to a slow client may rightly take long.
const (
	// The defaults of --read-header-timeout and --idle-timeout.
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
	// maxRanges is the most ranges a Range header may ask for: a header
	// with more is ignored and the whole file served (RFC 9110 section 14.2
	// allows it; Apache's MaxRanges is 200 too). Each range is a part of a
	// multipart response with its own header, seek and read: 10000 one-byte
	// ranges, 40 KB of request, cost net/http about 100 ms of CPU.
	maxRanges = 200

	// replyTimeout bounds the write of a response on a hijacked upload
	// conn, whose client may have stopped reading.
	replyTimeout = 10 * time.Second
	// After a failed upload, the rest of the body that is drained before
	// the conn closes, at most (see closeUnread).
	lingerTimeout = time.Second
	lingerBytes   = 1 << 20
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
	maxUpload       byteSize
	allowHardlinks  bool
	// 0: readHeaderTimeout, idleTimeout.
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
}

// byteSize is a flag holding a byte count: a plain number of bytes, or one
// with a unit as github.com/dustin/go-humanize parses it ("1GiB", "500MB",
// "64KiB"; "k", "M", "G" are powers of 1000, "Ki", "Mi", "Gi" of 1024).
type byteSize int64

func (b *byteSize) Set(s string) error {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return fmt.Errorf("want a byte count such as 1073741824, 1GiB or 500MB: %w", err)
	}
	if n > math.MaxInt64 {
		return fmt.Errorf("%s is too large", s)
	}
	*b = byteSize(n)
	return nil
}

func (b *byteSize) String() string { return humanize.IBytes(uint64(*b)) }
func (b *byteSize) Type() string   { return "bytes" }

func serveCommand() *cobra.Command {
	o := serveOptions{maxUpload: 1 << 30}
	cmd := &cobra.Command{
		Use:   "serve [flags] [DIR]",
		Short: "Serve the files under DIR over HTTP, sending their bodies with sendfile2",
		Long: `serve is a static file server on net/http whose file bodies go through a
sendfile2 Sender: each response returns only when the kernel holds no reference
to the file's pages, so files may be rewritten while they are being served.

DIR (default: the current directory) is opened as an os.Root: no path, ".."
or symbolic link can reach a file outside it. Only regular files are served; a
directory serves its index.html (and redirects to the path with a trailing
slash), else 404; FIFOs, devices and sockets give 404, and are never opened.
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
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT or SIGTERM, how long to wait for responses and uploads in flight before closing their connections")
	f.BoolVar(&o.upload, "upload", false, "accept PUT: store the request body at the path, atomically")
	f.Var(&o.maxUpload, "max-upload", "largest PUT body accepted (bytes, or with a unit: 1GiB, 500MB)")
	f.BoolVar(&o.allowHardlinks, "allow-hardlinks", false, "serve regular files that have more than one hard link (by default 403: a hard link in DIR can name a file outside it)")
	f.DurationVar(&o.readHeaderTimeout, "read-header-timeout", readHeaderTimeout, "how long a client may take to send a request's header; the connection is closed after it")
	f.DurationVar(&o.idleTimeout, "idle-timeout", idleTimeout, "how long a kept-alive connection may wait for its next request before it is closed")
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
	h := &fileHandler{root: root, upload: o.upload, maxUpload: int64(o.maxUpload), allowHardlinks: o.allowHardlinks,
		sender: sender, uploads: newUploadGroup()}
	defer h.uploads.cancel(errors.New("serve returned"))
	srv := &http.Server{
		Handler:           instrument(h, &handlers, m, accessLog),
		ReadHeaderTimeout: cmp.Or(o.readHeaderTimeout, readHeaderTimeout),
		IdleTimeout:       cmp.Or(o.idleTimeout, idleTimeout),
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnState:         m.connState,
		ConnContext:       sendfile2.ConnContext, // for sendfile2.ServeContent
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
	for i, s := range servers {
		if serr := s.Shutdown(sctx); serr != nil {
			log.Warn("shutdown: closing connections still busy", "err", serr)
			s.Close()
		}
		if i == 0 {
			// Shutdown neither waits for nor closes hijacked conns: wait
			// for the uploads on them within the same timeout, then
			// cancel those still running (they fail and leave no file).
			if uerr := h.uploads.wait(sctx); uerr != nil {
				log.Warn("shutdown: cancelling uploads still running", "err", uerr)
			}
			h.uploads.cancel(errors.New("server shut down"))
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

// fileHandler serves the regular files under root, and stores PUT bodies
// there when upload is set.
type fileHandler struct {
	root           *os.Root
	upload         bool
	maxUpload      int64
	allowHardlinks bool
	sender         *sendfile2.Sender
	uploads        *uploadGroup
}

func (h *fileHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut && h.upload {
		h.put(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		allow := "GET, HEAD"
		if h.upload {
			allow += ", PUT"
		}
		w.Header().Set("Allow", allow)
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
	if strings.HasPrefix(path.Base(name), tempPrefix) {
		http.NotFound(w, r) // an upload in progress: never serve it half written
		return
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
	hdr.Set("ETag", etag(fi))
	if ct := mime.TypeByExtension(path.Ext(name)); ct != "" {
		hdr.Set("Content-Type", ct)
	} // else ServeContent sniffs the first 512 bytes
	hdr.Set("X-Content-Type-Options", "nosniff")
	if rng := r.Header.Get("Range"); rng != "" {
		if rng = fixRange(rng, fi.Size()); rng == "" {
			r.Header.Del("Range")
		} else {
			r.Header.Set("Range", rng)
		}
	}
	// ServeContent copies the body with io.CopyN: net/http hands the
	// reader, or an *io.LimitedReader around it, to the ReadFrom of the
	// conn that NewListener made, which sends it with the Sender, the
	// response head in the same send (sendfile2.ServeContent). An
	// io.SectionReader of the size fstat gave answers ServeContent's seeks
	// (to learn the size, to a range) without lseek(2), and reads with
	// pread(2); the conn's ReadFrom recognises it as the file.
	sendfile2.ServeContent(w, r, name, fi.ModTime(), io.NewSectionReader(f, 0, fi.Size()))
}

// invalidRange is a Range value that ServeContent refuses with 416.
const invalidRange = "bytes=-"

var (
	// errNotServed refuses what is neither a regular file nor a directory.
	errNotServed = errors.New("neither a regular file nor a directory")
	// errHardLinked refuses a regular file with more than one hard link.
	errHardLinked = errors.New("a regular file with more than one hard link (see --allow-hardlinks)")
)

// open opens name under the root if it is a directory or a regular file
// (with a single hard link, unless allowHardlinks), without blocking. It
// looks before it opens: open(2) of a FIFO waits for a writer, and open(2)
// of a device runs its driver's open, which may act (a watchdog starts its
// timer, a tape rewinds), so neither is ever opened. What the descriptor
// itself is (fstat) decides, so that a rename between the look and the open
// changes nothing; should a FIFO take the file's place there, O_NONBLOCK
// keeps the open from waiting (it changes nothing for regular files).
func (h *fileHandler) open(name string) (*os.File, fs.FileInfo, error) {
	if fi, err := h.root.Stat(name); err != nil {
		return nil, nil, err
	} else if !fi.Mode().IsRegular() && !fi.IsDir() {
		return nil, nil, fmt.Errorf("%s (%v): %w", name, fi.Mode().Type(), errNotServed)
	}
	f, err := h.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.Mode().IsRegular() && !h.allowHardlinks && links(fi) > 1 {
		err = fmt.Errorf("%s: %w", name, errHardLinked)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// links is the number of hard links of the file that fi describes. A hard
// link in DIR to a file outside it is that file, which no path check can
// tell: it is refused as any file with more than one link is.
func links(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

// fixRange returns the Range header value that ServeContent should see for a
// file of size bytes, or "" to ignore the header. It corrects where
// net/http departs from RFC 9110 section 14, and bounds the work:
//
//   - a unit other than "bytes" (in any case) is ignored, not refused (416);
//   - on an empty file, the header is ignored: ServeContent answers a suffix
//     range there 206 with "Content-Range: bytes 0--1/0", and ignores the
//     others itself;
//   - with more than maxRanges ranges, the header is ignored;
//   - a suffix range of length 0 ("-0") is unsatisfiable and dropped
//     (ServeContent answers it 206 with "Content-Range: bytes 10-9/10");
//   - a position too large for an int64 is still a position: a last-pos
//     means the end of the file, a suffix the whole file, and a first-pos
//     makes its range unsatisfiable (ServeContent refuses all three: 416).
//
// A range outside the grammar (digits only, around one "-") makes it return
// invalidRange, which ServeContent refuses (416): its own reading is lenient
// ("-+0" is a suffix of 0). When it has dropped every range, it asks for one
// that starts at the end of the file, which ServeContent answers 416 with
// "Content-Range: bytes */size". Either way ServeContent still checks the
// request's preconditions first (If-Range).
func fixRange(h string, size int64) string {
	unit, set, ok := strings.Cut(h, "=")
	if !ok || !strings.EqualFold(unit, "bytes") || size == 0 {
		return ""
	}
	digits := func(s string) bool { return strings.Trim(s, "0123456789") == "" }
	fits := func(s string) bool { _, err := strconv.ParseInt(s, 10, 64); return err == nil }
	var specs []string
	n, dropped := 0, false
	for spec := range strings.SplitSeq(set, ",") {
		spec = strings.Trim(spec, " \t")
		if spec == "" {
			continue
		}
		if n++; n > maxRanges {
			return ""
		}
		first, last, ok := strings.Cut(spec, "-")
		first, last = strings.Trim(first, " \t"), strings.Trim(last, " \t")
		switch {
		case !ok || !digits(first) || !digits(last) || first == "" && last == "":
			return invalidRange
		case first == "" && strings.Trim(last, "0") == "":
			dropped = true
			continue
		case first == "" && !fits(last):
			spec = "0-"
		case first != "" && !fits(first):
			dropped = true
			continue
		case last != "" && !fits(last):
			spec = first + "-"
		}
		specs = append(specs, spec)
	}
	if len(specs) == 0 && dropped {
		return "bytes=" + strconv.FormatInt(size, 10) + "-"
	}
	return "bytes=" + strings.Join(specs, ",")
}

// etag is the entity tag of a file: its modification time in nanoseconds
// and its size, in hex.
func etag(fi fs.FileInfo) string {
	return fmt.Sprintf(`"%x-%x"`, fi.ModTime().UnixNano(), fi.Size())
}

// httpError answers for a failed open. Whatever hides a file (missing, a
// path that escapes the root, a symbolic link out of it, a FIFO, device or
// socket) is 404; a file with more than one hard link is 403.
func httpError(w http.ResponseWriter, err error) {
	code := http.StatusNotFound
	switch {
	case errors.Is(err, fs.ErrPermission), errors.Is(err, errHardLinked):
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

// tempPrefix starts the names of the temporary files that uploads write
// before renaming them into place; PUT refuses such names as targets.
const tempPrefix = ".sendfile2-upload-"

// uploadNote is what the access log says of a PUT.
type uploadNote struct {
	status int    // of the response written on a hijacked conn; 0: net/http wrote it
	stored int64  // bytes of the body written to the temporary file
	via    string // "receive" (the Sender, on the hijacked conn) or "body" (net/http's reader)
	err    error
}

// put stores the request body at the request's path, atomically: the body
// goes to a temporary file in the target's directory, which is fsynced and
// renamed over the target only when it is complete, so that readers see the
// old file or the new one, whole, and a failed upload leaves nothing behind.
//
// A body with a Content-Length is received with the Sender: put hijacks the
// conn, writes the bytes net/http has already buffered, then calls Receive
// for the rest, answers itself and closes the conn. A chunked body (no
// Content-Length) is read through net/http instead, which decodes the chunks.
func (h *fileHandler) put(w http.ResponseWriter, r *http.Request) {
	note := &uploadNote{}
	if rec, ok := w.(*recorder); ok {
		rec.upload = note
	}
	refuse := func(code int, err error) {
		note.err = err
		if code == http.StatusRequestEntityTooLarge {
			w.Header().Set("Connection", "close") // the body stays unread
		}
		http.Error(w, http.StatusText(code), code)
	}
	if r.Header.Get("Content-Range") != "" {
		// Partial PUT is not supported; RFC 9110 section 14.5 says to refuse it.
		refuse(http.StatusBadRequest, errors.New("Content-Range in a PUT"))
		return
	}
	if r.ContentLength > h.maxUpload {
		refuse(http.StatusRequestEntityTooLarge, fmt.Errorf("Content-Length %d over --max-upload %d", r.ContentLength, h.maxUpload))
		return
	}
	u, code, err := h.prepare(r.URL.Path)
	if err != nil {
		refuse(code, err)
		return
	}
	defer u.dir.Close()
	if !h.uploads.add() {
		u.abort()
		refuse(http.StatusServiceUnavailable, errors.New("shutting down"))
		return
	}
	defer h.uploads.done()
	u.note = note

	if r.ContentLength > 0 {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err == nil {
			note.via = "receive"
			h.receive(r, conn, brw.Reader, u)
			return
		}
		// Not HTTP/1 (HTTP/2 cannot hijack): read the body through net/http.
	}
	note.via = "body"
	n, err := io.Copy(u.tmp, http.MaxBytesReader(w, r.Body, h.maxUpload))
	note.stored = n
	if err != nil {
		u.abort()
		var tooLarge *http.MaxBytesError
		var pe *fs.PathError
		switch {
		case errors.As(err, &tooLarge):
			code = http.StatusRequestEntityTooLarge
		case errors.As(err, &pe): // writing the temporary file
			code = putStatus(err)
		default: // reading the body: the client's
			code = http.StatusBadRequest
		}
		refuse(code, err)
		return
	}
	code, tag, err := u.commit()
	if err != nil {
		refuse(code, err)
		return
	}
	w.Header().Set("ETag", tag)
	w.WriteHeader(code)
}

// upload is a PUT in progress: its temporary file, in the target's directory.
type upload struct {
	dir     *os.Root // the target's directory, under the root
	name    string   // the target's name in dir
	tmp     *os.File // the temporary file, open for writing
	tmpName string   // its name in dir
	note    *uploadNote
}

// prepare checks that a PUT may write upath, as downloads read it: cleaned,
// under the root (no ".." or symbolic link out of it), in a directory that
// exists, over nothing or a regular file. It creates the temporary file, or
// returns the status that refuses the upload.
func (h *fileHandler) prepare(upath string) (*upload, int, error) {
	if !strings.HasPrefix(upath, "/") {
		upath = "/" + upath
	}
	name := strings.TrimPrefix(path.Clean(upath), "/")
	if name == "" || strings.HasSuffix(upath, "/") {
		return nil, http.StatusConflict, errors.New("the path names a directory")
	}
	dirName, base := path.Split(name)
	if strings.HasPrefix(base, tempPrefix) {
		return nil, http.StatusForbidden, fmt.Errorf("%q is a name for temporary files", base)
	}
	if dirName == "" {
		dirName = "."
	}
	// The directory, opened once, holds the temporary file and the rename:
	// a concurrent rename of a parent cannot split them.
	dir, err := h.root.OpenRoot(dirName)
	if err != nil {
		return nil, putStatus(err), err
	}
	if fi, err := dir.Lstat(base); err == nil && !fi.Mode().IsRegular() {
		dir.Close()
		return nil, http.StatusConflict, fmt.Errorf("%s is not a regular file (%v)", name, fi.Mode())
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		dir.Close()
		return nil, putStatus(err), err
	}
	for range 100 {
		tmpName := fmt.Sprintf("%s%016x", tempPrefix, rand.Uint64())
		f, err := dir.OpenFile(tmpName, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			dir.Close()
			return nil, putStatus(err), err
		}
		return &upload{dir: dir, name: base, tmp: f, tmpName: tmpName}, 0, nil
	}
	dir.Close()
	return nil, http.StatusInternalServerError, errors.New("no free name for a temporary file")
}

// abort closes and removes the temporary file.
func (u *upload) abort() {
	u.tmp.Close()
	u.dir.Remove(u.tmpName)
}

// commit makes the complete temporary file the target: fsync(2), so that
// the rename can never expose a file whose data a crash lost, the rename,
// then fsync(2) of the directory, so that the response means the upload
// survives a crash. It returns 201 Created or 204 No Content (a file
// replaced) and the new file's ETag, or the status of a failure, after which
// the target is the old file (unless only the directory's fsync failed).
func (u *upload) commit() (int, string, error) {
	err := u.tmp.Sync()
	var fi fs.FileInfo
	if err == nil {
		fi, err = u.tmp.Stat()
	}
	if err != nil {
		u.abort()
		return putStatus(err), "", err
	}
	if err := u.tmp.Close(); err != nil {
		u.dir.Remove(u.tmpName)
		return putStatus(err), "", err
	}
	code := http.StatusCreated
	if old, err := u.dir.Lstat(u.name); err == nil {
		if !old.Mode().IsRegular() { // changed since prepare
			u.dir.Remove(u.tmpName)
			return http.StatusConflict, "", fmt.Errorf("%s is not a regular file (%v)", u.name, old.Mode())
		}
		code = http.StatusNoContent
	}
	if err := u.dir.Rename(u.tmpName, u.name); err != nil {
		u.dir.Remove(u.tmpName)
		return putStatus(err), "", err
	}
	d, err := u.dir.Open(".")
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		return http.StatusInternalServerError, "", fmt.Errorf("fsync of the directory after the rename: %w", err)
	}
	return code, etag(fi), nil
}

// receive reads the body of r, of r.ContentLength bytes, from the hijacked
// conn into u's temporary file (the bytes br holds already, then the rest
// with the Sender's Receive), commits it, answers and closes the conn.
func (h *fileHandler) receive(r *http.Request, conn net.Conn, br *bufio.Reader, u *upload) {
	// The upload stops when serve stops waiting for uploads at shutdown.
	// (The request's context does not end before the handler returns once
	// the conn is hijacked; Receive sees the client leave by itself.)
	ctx := h.uploads.ctx
	size := r.ContentLength
	var err error
	if expectsContinue(r) {
		// net/http would send it at the body's first read; we read the
		// socket ourselves.
		conn.SetWriteDeadline(time.Now().Add(replyTimeout))
		_, err = io.WriteString(conn, "HTTP/1.1 100 Continue\r\n\r\n")
	}
	var n int64
	if err == nil {
		// The start of the body, which net/http read along with the header.
		p, _ := br.Peek(int(min(int64(br.Buffered()), size)))
		var k int
		k, err = u.tmp.WriteAt(p, 0)
		n = int64(k)
	}
	if err == nil && n < size {
		var k int64
		if sc, ok := conn.(syscall.Conn); ok {
			k, err = h.sender.Receive(ctx, sc, u.tmp, n, size-n)
		} else { // a conn without a descriptor: copy
			k, err = io.Copy(io.NewOffsetWriter(u.tmp, n), io.LimitReader(conn, size-n))
			if err == nil && k < size-n {
				err = io.ErrUnexpectedEOF
			}
		}
		n += k
	}
	u.note.stored = n
	if err != nil {
		u.abort()
		code := receiveStatus(ctx, err)
		u.note.status, u.note.err = code, err
		reply(conn, code, "")
		closeUnread(conn)
		return
	}
	code, tag, err := u.commit()
	u.note.status, u.note.err = code, err
	reply(conn, code, tag)
	conn.Close()
}

// expectsContinue reports whether the client waits for "100 Continue"
// before it sends the body, as net/http decides it.
func expectsContinue(r *http.Request) bool {
	if !r.ProtoAtLeast(1, 1) {
		return false
	}
	for _, v := range r.Header.Values("Expect") {
		for tok := range strings.SplitSeq(v, ",") {
			// Optional whitespace around list elements is spaces and tabs
			// only (RFC 9110, section 5.6.1).
			if strings.EqualFold(strings.Trim(tok, " \t"), "100-continue") {
				return true
			}
		}
	}
	return false
}

// receiveStatus is the status of an upload whose body could not be received.
func receiveStatus(ctx context.Context, err error) int {
	switch {
	case ctx.Err() != nil, errors.Is(err, sendfile2.ErrClosed):
		return http.StatusServiceUnavailable // shutting down
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ETIMEDOUT),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ENOTCONN):
		return http.StatusBadRequest // the client ended the body early
	}
	return putStatus(err)
}

// putStatus is the status of a PUT that failed on the file system with err.
func putStatus(err error) int {
	var errno syscall.Errno
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return http.StatusConflict // no such parent directory, or a file in its place
	case errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.EEXIST), errors.Is(err, syscall.ENOTEMPTY):
		return http.StatusConflict // the target is a directory
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS), errors.Is(err, syscall.ELOOP):
		return http.StatusForbidden
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return http.StatusInsufficientStorage
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE), errors.Is(err, syscall.ENOMEM):
		return http.StatusServiceUnavailable
	case errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.ENAMETOOLONG):
		return http.StatusBadRequest // a name the file system refuses (NUL, too long)
	case !errors.As(err, &errno):
		return http.StatusForbidden // the root refused the path: it leaves DIR
	}
	return http.StatusInternalServerError
}

// reply writes a response without a body (or with its status text for an
// error) on a hijacked conn, which closes after it. 204 carries no
// Content-Length (RFC 9110 section 8.6).
func reply(conn net.Conn, code int, tag string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nDate: %s\r\n", code, http.StatusText(code), time.Now().UTC().Format(http.TimeFormat))
	body := ""
	if code >= 400 {
		body = http.StatusText(code) + "\n"
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n")
	}
	if tag != "" {
		fmt.Fprintf(&b, "ETag: %s\r\n", tag)
	}
	if code != http.StatusNoContent {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	b.WriteString(body)
	conn.SetWriteDeadline(time.Now().Add(replyTimeout))
	_, err := io.WriteString(conn, b.String())
	return err
}

// closeUnread closes a hijacked conn whose request body may not have been
// read to its end. A socket closed with unread bytes resets the connection,
// which can destroy the response before the client reads it (net/http's
// closeWriteAndWait avoids the same): shut down the sending side first, then
// drain what the client still sends, for a bounded time and size.
func closeUnread(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		conn.SetReadDeadline(time.Now().Add(lingerTimeout))
		io.CopyN(io.Discard, conn, lingerBytes)
	}
	conn.Close()
}

// uploadGroup tracks the uploads in flight. http.Server.Shutdown neither
// waits for nor closes hijacked conns, so serve waits for them itself, and
// cancels ctx when it stops waiting: the uploads still running then fail, and
// later ones are refused.
type uploadGroup struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	n      int
	idle   chan struct{} // closed when n drops to 0, while someone waits
}

func newUploadGroup() *uploadGroup {
	g := &uploadGroup{}
	g.ctx, g.cancel = context.WithCancelCause(context.Background())
	return g
}

// add counts an upload in, unless ctx has ended.
func (g *uploadGroup) add() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx.Err() != nil {
		return false
	}
	g.n++
	return true
}

func (g *uploadGroup) done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n--; g.n == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// wait waits until no upload runs, or until ctx ends.
func (g *uploadGroup) wait(ctx context.Context) error {
	g.mu.Lock()
	if g.n == 0 {
		g.mu.Unlock()
		return nil
	}
	if g.idle == nil {
		g.idle = make(chan struct{})
	}
	idle := g.idle
	g.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
			status, bytes, err := rec.status, rec.bytes, rec.err
			u := rec.upload
			if u != nil {
				// bytes: those of the request body that were stored.
				if u.status != 0 { // answered on the hijacked conn
					status = u.status
				}
				bytes = u.stored
				if u.err != nil {
					err = u.err
				}
			}
			if status == 0 {
				status = http.StatusOK
			}
			m.requests.WithLabelValues(strconv.Itoa(status)).Inc()
			if log != nil {
				attrs := []slog.Attr{
					slog.String("method", r.Method),
					slog.String("path", r.URL.Path),
					slog.Int("status", status),
					slog.Int64("bytes", bytes),
					slog.Duration("duration", time.Since(start)),
					slog.String("remote", r.RemoteAddr),
					slog.String("proto", r.Proto),
				}
				if u != nil && u.via != "" {
					attrs = append(attrs, slog.String("via", u.via))
				}
				if err != nil { // ServeContent drops it: a body cut short
					attrs = append(attrs, slog.String("err", err.Error()))
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
	err    error       // of the body's last write
	upload *uploadNote // set by a PUT
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
