// Package sendfile2 sends a file range to a socket and returns only when the
// kernel holds no reference to the data: when Send returns, the caller may
// overwrite, truncate or remove the file, or reuse its buffer, and the peer
// still receives the bytes the file held when they were read.
//
// sendfile(2) and splice(2) do not give that guarantee: they return while
// socket buffers still reference the file's page-cache pages, so a file
// rewritten afterwards can reach the peer with its new contents. sendfile2
// sends with io_uring's zero-copy send (IORING_OP_SEND_ZC) and waits for both
// the completion and the notification that the kernel has let go of the data.
//
// # Methods
//
// A Sender uses one Method:
//
//   - URing (Linux 6.0+): IORING_OP_READ_FIXED copies the file into registered
//     buffers, IORING_OP_SEND_ZC sends from them, several chunks in flight.
//     The file is safe once the reads have completed; each buffer is lent again
//     only after the notification of its last send. A send takes buffers only
//     for what the socket can take at the moment (it waits for room holding
//     none), a quarter of the Sender's buffers when others need them; when
//     every buffer is lent it copies the next part with send(2) instead of
//     waiting (Stats.PoolShort), so peers that stall cannot keep the others
//     waiting.
//   - URingMmap (Linux 6.0+): IORING_OP_SEND_ZC straight from a mapping of the
//     file. No copy where the device can send from the page cache; Send waits
//     for every notification.
//   - MsgZC (Linux 4.14+): send(2) with MSG_ZEROCOPY straight from a mapping
//     of the file; Send waits until the socket's error queue has notified
//     every call. The zero-copy path where io_uring is refused (container
//     seccomp profiles, kernel.io_uring_disabled).
//   - Copy (any Linux): send(2) from a mapping or a pread(2) buffer. The
//     kernel copies the data before send(2) returns. A Sender keeps the
//     mappings of files it sends again (from the second send of 64 KiB or
//     more within 5 s; URingMmap and MsgZC from the first send) and unmaps
//     those unused for 5 s: a removed file's blocks may stay allocated for
//     up to 10 s after its last send, or until Close.
//   - Sendfile and Splice: the unsafe system calls, kept only as baselines to
//     measure against and to show unsafe (sendfile2 check). Never chosen
//     automatically.
//   - Auto picks URing where io_uring offers IORING_OP_SEND_ZC and
//     IORING_OP_READ_FIXED and the buffers can be registered, else MsgZC
//     (io_uring refused by a seccomp filter, as in Docker's and containerd's
//     default profiles, or by kernel.io_uring_disabled), else Copy. On a
//     route where the kernel reports that it copies every zero-copy send
//     (loopback, veth, devices without scatter-gather), it sends with Copy;
//     sends under 16 KiB copy from the start. Until a route's zero-copy sends
//     have been seen to leave without a copy, at most three are out at once
//     and the others copy; each of those sends its first MiB zero-copy, and
//     the rest as the route then says. A method the kernel refuses at run
//     time (EPERM, ENOSYS) is demoted once to the next one.
//
// Zero-copy applies to TCP only: on other stream sockets (unix) URing,
// URingMmap and MsgZC send with Copy and count a fallback in Stats. On
// loopback and veth the kernel copies every zero-copy send anyway; Stats
// reports those bytes as CopiedBytes (IORING_SEND_ZC_REPORT_USAGE, Linux 6.2+;
// SO_EE_CODE_ZEROCOPY_COPIED for MsgZC).
//
// # Cancellation
//
// When the context ends (or the Sender is closed: Close, or Shutdown, which
// bounds Close's wait by a context), Send returns the bytes
// sent so far with context.Cause(ctx) (or an error matching ErrClosed). If
// ctx has already ended when Send is called, nothing is sent. Otherwise:
//
//   - URing cancels its reads and sends in flight (IORING_OP_ASYNC_CANCEL)
//     and returns once they have completed. The file is no longer read; the
//     registered buffers that the kernel may still send from stay parked in
//     the Sender until their notifications arrive.
//   - URingMmap cancels its sends in flight and then waits for the
//     notifications of the data already queued, because those reference the
//     file's own pages: that lasts as long as the peer takes to acknowledge
//     them.
//   - MsgZC stops sending and waits, in the same way, for the notifications
//     of what it sent. If that wait itself fails (epoll), it resets the
//     connection and waits at most 10 s more; an error matching
//     ErrNotReleased says it gave up, the one case where Send returns while
//     the kernel may still read the file.
//   - Copy, Sendfile and Splice stop at their next wait for room in the
//     socket buffer.
//
// Send uses a duplicate of the socket's descriptor: deadlines set on dst do
// not apply, and closing dst does not interrupt it. Use ctx. (The conns of
// NewListener differ: their deadlines and Close do stop a send.)
//
// # HTTP servers
//
// NewListener wraps a net.Listener so that net/http sends file bodies with a
// Sender (http.FileServer, http.ServeFile, http.ServeContent), also under
// golang.org/x/net/netutil.LimitListener. A handler that calls ServeContent
// on a server whose ConnContext is ConnContext also sends the response head
// with the file, in one send, and reaches the conn past middleware that
// hides ReadFrom but has Unwrap; Handler does the latter for any handler
// (http.FileServer). File bodies that go around the Sender (copied, safely)
// are counted by reason in Stats.Bypassed, those that net/http alone copies
// unseen only under ServeContent or Handler; NewListener's documentation
// lists the setups that do it and what to do instead.
//
// ReceiveBody writes an HTTP request body to a file, with Receive on the
// hijacked conn when the body has a Content-Length, and CreateReplacement
// gives the temporary file that Commit fsyncs and renames over its target:
// an upload handler's atomic replace.
//
// # Files that change during a send
//
// A file truncated during a send ends it with the bytes sent and an error
// matching io.ErrUnexpectedEOF, never with SIGBUS. The methods that send from
// a mapping of the file (URingMmap, MsgZC, and Copy from 1 MiB, or from 64
// KiB for a file whose mapping it keeps) may
// count, and send, the zeros that the mapping shows from the new end to the
// end of its page before they see the error. A file extended during a send
// does not lengthen it; a file renamed over the path is not seen at all: the
// descriptor's file is sent.
//
// # Receiving
//
// Receive is the other direction, the write path of a file server: it reads
// count bytes (or, with count < 0, everything until the peer closes) from a
// stream socket and writes them to a file at an offset. The count it returns
// is always the number of bytes written contiguously from the offset, and
// those bytes are the stream's; nothing past them is written. A stream that
// ends early gives io.ErrUnexpectedEOF. When ctx ends or the peer fails,
// Receive stops reading and writes what it had already taken from the socket,
// so the count is also the number of bytes consumed; only a failing file
// (ENOSPC, EIO) loses the bytes that were received but could not be written.
//
//   - URing receives with IORING_OP_RECV, for the bytes the socket holds,
//     into the Sender's registered buffers (a share of them, as sends; it
//     waits for data holding none, and receives with recv(2) when every
//     buffer is lent), linked in stream order, and writes them with
//     IORING_OP_WRITE_FIXED, linked in file order, several buffers in
//     flight; with Config.DontCache the writes carry RWF_DONTCACHE (Linux
//     6.14; where the file system refuses it, plain writes and a fallback in
//     Stats).
//   - Copy uses recv(2) and pwrite(2); Splice moves the bytes through a pipe
//     with splice(2). Both wait for data in the Sender's epoll instance.
//   - URingMmap, MsgZC and Sendfile receive with Copy.
//   - Auto receives with Splice, which copies each byte once (the pipe holds
//     the socket's pages) where Copy and URing copy it twice; with
//     Config.DontCache, with URing, whose writes alone carry RWF_DONTCACHE.
//     Stats count each receive under the method it chose, and a fallback
//     when a file system refuses splice(2) and Copy finishes it.
//
// With Config.Sync, Receive returns only after fdatasync(2) (for URing,
// IORING_OP_FSYNC with IORING_FSYNC_DATASYNC).
//
// # Requirements
//
// Linux. io_uring with IORING_FEAT_SINGLE_MMAP (5.4) for the ring, and
// IORING_OP_SEND_ZC (6.0) for URing and URingMmap; SO_ZEROCOPY and
// MSG_ZEROCOPY on TCP (4.14) for MsgZC; RWF_DONTCACHE reads
// (Config.DontCache) need 6.14 and a file system that supports them, and fall
// back to plain reads elsewhere. On other systems every call fails with an
// error matching ErrNotSupported.
package sendfile2
