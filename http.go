package sendfile2

import (
	"context"
	"io"
	"net"
	"net/http"
	"time"
)

type connKey struct{}

// ConnContext is a function for http.Server's ConnContext field: it puts the
// conn that NewListener accepted in the context of the requests it carries,
// for ServeContent. Other conns leave ctx as it is. A ConnContext of your own
// can call it.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if h := heldConn(c); h != nil {
		return context.WithValue(ctx, connKey{}, h)
	}
	return ctx
}

// ServeContent is http.ServeContent, which it calls, with one send fewer per
// response: when r came on a conn of NewListener to a server whose
// ConnContext is ConnContext, the response head that net/http writes before
// it hands the file to the conn's ReadFrom (with the body's first 512 bytes)
// is held by the conn and goes out with the file, in the same send or io_uring
// submission. That is one syscall and one small TCP segment fewer per
// response, as nginx's tcp_nopush gives; the guarantee is unchanged.
//
// content is a file as the conn's ReadFrom recognises it (an *os.File, or an
// *io.SectionReader of one, which spares ServeContent's seeks a syscall each).
// Anything the conn writes during the call that no file follows (a 304, a
// range error, a body ReadFrom copies) goes out at its next write, or when
// ServeContent returns. Elsewhere ServeContent is http.ServeContent.
func ServeContent(w http.ResponseWriter, r *http.Request, name string, modtime time.Time, content io.ReadSeeker) {
	if c, _ := r.Context().Value(connKey{}).(*conn); c != nil && c.holdWrite() {
		defer c.release()
	}
	http.ServeContent(w, r, name, modtime, content)
}
