// Package httpconn holds the conns of sendfile2.NewListener: a net.Conn
// whose ReadFrom finds the file behind the reader net/http hands it (an
// *os.File, an *io.LimitedReader or *io.SectionReader of one) and sends it
// through a Policy, with the response head that a Write before it held; the
// conn's write lock, its write deadline as a context, and the copy of
// everything else through Write. It knows nothing of the Sender: what to
// send with, and what to count, is the Policy's.
package httpconn
