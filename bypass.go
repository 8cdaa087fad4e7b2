package sendfile2

import (
	"io"
	"io/fs"
	"net"
	"reflect"
	"syscall"
)

// innerConn returns the conn that c wraps, when c is a wrapper known to pass
// writes, deadlines and every method but Close straight to it, or nil.
//
// The one known today is golang.org/x/net/netutil.LimitListener's conn: it
// embeds the accepted net.Conn and adds only a Close that frees its slot,
// but it hides SyscallConn, ReadFrom, CloseRead and CloseWrite. A wrapper
// of your own that writes to the socket unchanged can expose the socket's
// descriptor itself: implement syscall.Conn with the wrapped conn's
// SyscallConn, and NewListener sends on it.
func innerConn(c net.Conn) net.Conn {
	v := reflect.ValueOf(c)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return nil
	}
	t := v.Type().Elem()
	if t.Kind() != reflect.Struct || t.PkgPath() != "golang.org/x/net/netutil" || t.Name() != "limitListenerConn" {
		return nil
	}
	f, ok := t.FieldByName("Conn")
	if !ok || !f.Anonymous || f.Type != reflect.TypeFor[net.Conn]() {
		return nil
	}
	inner, _ := v.Elem().FieldByIndex(f.Index).Interface().(net.Conn)
	return inner
}

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
	// BypassWrappedConn: ServeContent served a file on a conn of
	// NewListener that a wrapper around it hides from net/http
	// (netutil.LimitListener(NewListener(ln, s), n)). Wrap the other way
	// round: NewListener(netutil.LimitListener(ln, n), s).
	BypassWrappedConn Bypass = "wrapped-conn"
	// BypassWriter: ServeContent served a file through a ResponseWriter
	// without ReadFrom, whose Unwrap chain has none either. Give the
	// middleware's writer an Unwrap method, or a ReadFrom that calls the
	// wrapped writer's.
	BypassWriter Bypass = "writer"
	// BypassEncoded: ServeContent served a file through a ResponseWriter
	// without ReadFrom, on a response with a Content-Encoding: a middleware
	// (gzip) may be transforming the body, so ServeContent did not pass it
	// under the middleware to the ReadFrom of the writer it wraps.
	BypassEncoded Bypass = "encoded"
	// BypassHTTP2: ServeContent served a file over HTTP/2 (h2c on a conn of
	// NewListener): HTTP/2 frames every body through a buffer. Serve
	// HTTP/1.1 where the Sender should send.
	BypassHTTP2 Bypass = "http2"
)

// bypasses lists the reasons, in the order of a Sender's counters.
var bypasses = [...]Bypass{BypassNoDescriptor, BypassWrappedConn, BypassWriter, BypassEncoded, BypassHTTP2}

// Bypasses lists every reason that Stats.Bypassed counts.
func Bypasses() []Bypass { return append([]Bypass(nil), bypasses[:]...) }

// hiddenFile reports whether r reads a regular file without exposing a
// descriptor (an fs.File that is not an *os.File), as ReadFrom sees it:
// possibly bounded by an *io.LimitedReader or in an *io.SectionReader.
func hiddenFile(r io.Reader) bool {
	if lr, ok := r.(*io.LimitedReader); ok {
		r = lr.R
	}
	var x any = r
	if sr, ok := r.(*io.SectionReader); ok {
		x, _, _ = sr.Outer()
	}
	if _, ok := x.(syscall.Conn); ok {
		return false
	}
	st, ok := x.(interface{ Stat() (fs.FileInfo, error) })
	if !ok {
		return false
	}
	fi, err := st.Stat()
	return err == nil && fi.Mode().IsRegular()
}
