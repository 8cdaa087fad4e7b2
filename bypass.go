package sendfile2

// Bypass names a reason why a file body went around the Sender: the bytes
// were copied through a buffer, which keeps the guarantee (the copy is made
// before the write returns) without zero copy. Stats.Bypassed counts them.
type Bypass string

const (
	// BypassNoDescriptor: a conn of NewListener got a regular file whose
	// reader hides its descriptor, as http.FileServerFS, http.FS and
	// embed.FS give, and copied it. Serve with http.FileServer(http.Dir(dir))
	// or ServeContent with an *os.File instead.
	BypassNoDescriptor Bypass = "no-descriptor"
	// BypassWrappedConn: ServeContent, or a handler under Handler, served a
	// file on a conn of NewListener that a wrapper around it hides from
	// net/http (netutil.LimitListener(NewListener(ln, s), n), or a conn
	// type of your own that embeds the net.Conn). Wrap the other way round:
	// NewListener(netutil.LimitListener(ln, n), s).
	BypassWrappedConn Bypass = "wrapped-conn"
	// BypassWriter: ServeContent, or a handler under Handler, served a file
	// through a ResponseWriter without ReadFrom, whose Unwrap chain has none
	// either. Give the middleware's writer an Unwrap method, or a ReadFrom
	// that calls the wrapped writer's.
	BypassWriter Bypass = "writer"
	// BypassEncoded: ServeContent, or a handler under Handler, served a file
	// through a ResponseWriter without ReadFrom, on a response with a
	// Content-Encoding: a middleware (gzip) may be transforming the body, so
	// it was not passed under the middleware to the ReadFrom of the writer
	// it wraps.
	BypassEncoded Bypass = "encoded"
	// BypassHTTP2: ServeContent, or a handler under Handler, served a file
	// over HTTP/2 (h2c on a conn of NewListener): HTTP/2 frames every body
	// through a buffer. Serve HTTP/1.1 where the Sender should send.
	BypassHTTP2 Bypass = "http2"
)

// bypasses lists the reasons, in the order of a Sender's counters.
var bypasses = [...]Bypass{BypassNoDescriptor, BypassWrappedConn, BypassWriter, BypassEncoded, BypassHTTP2}

// Bypasses lists every reason that Stats.Bypassed counts.
func Bypasses() []Bypass { return append([]Bypass(nil), bypasses[:]...) }
