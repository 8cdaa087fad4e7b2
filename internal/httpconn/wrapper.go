package httpconn

import (
	"io"
	"io/fs"
	"net"
	"reflect"
	"syscall"
)

// Inner returns the conn that c wraps, when c is a wrapper known to pass
// writes, deadlines and every method but Close straight to it, or nil.
//
// The one known today is golang.org/x/net/netutil.LimitListener's conn: it
// embeds the accepted net.Conn and adds only a Close that frees its slot,
// but it hides SyscallConn, ReadFrom, CloseRead and CloseWrite. A wrapper
// of your own that writes to the socket unchanged can expose the socket's
// descriptor itself: implement syscall.Conn with the wrapped conn's
// SyscallConn, and New sends on it.
func Inner(c net.Conn) net.Conn {
	t := reflect.TypeOf(c)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().PkgPath() != "golang.org/x/net/netutil" || t.Elem().Name() != "limitListenerConn" {
		return nil
	}
	return Embedded(c)
}

// Embedded returns the net.Conn that c embeds, when c is a struct, or a
// pointer to one, with an embedded field of type net.Conn; else nil. Such a
// wrapper may change what it writes, so only Inner's are sent through; but
// Find sees through all of them.
func Embedded(c net.Conn) net.Conn {
	v := reflect.ValueOf(c)
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	f, ok := v.Type().FieldByName("Conn")
	if !ok || !f.Anonymous || len(f.Index) != 1 || f.Type != reflect.TypeFor[net.Conn]() {
		return nil
	}
	inner, _ := v.Field(f.Index[0]).Interface().(net.Conn)
	return inner
}

// WriterOnly hides every method of a writer but Write: ReadFrom (no
// recursion into a conn's own ReadFrom) and SyscallConn.
type WriterOnly struct{ io.Writer }

// HiddenFile reports whether r reads a regular file without exposing a
// descriptor (an fs.File that is not an *os.File), as ReadFrom sees it:
// possibly bounded by an *io.LimitedReader or in an *io.SectionReader.
func HiddenFile(r io.Reader) bool {
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
