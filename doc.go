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
//     only after the notification of its last send.
//   - URingMmap (Linux 6.0+): IORING_OP_SEND_ZC straight from a mapping of the
//     file. No copy where the device can send from the page cache; Send waits
//     for every notification.
//   - Copy (any Linux): send(2) from a mapping or a pread(2) buffer. The
//     kernel copies the data before send(2) returns.
//   - Sendfile and Splice: the unsafe system calls, kept only as baselines to
//     measure against and to show unsafe (sendfile2 check). Never chosen
//     automatically.
//   - Auto picks URing where io_uring offers IORING_OP_SEND_ZC and
//     IORING_OP_READ_FIXED and the buffers can be registered, else Copy.
//
// Zero-copy applies to TCP only: on other stream sockets (unix) URing and
// URingMmap send with Copy and count a fallback in Stats. On loopback and veth
// the kernel copies every zero-copy send anyway; Stats reports those bytes as
// CopiedBytes (IORING_SEND_ZC_REPORT_USAGE, Linux 6.2+).
//
// # Cancellation
//
// When the context ends (or the Sender is closed), Send returns the bytes
// sent so far with context.Cause(ctx) (or an error matching ErrClosed):
//
//   - URing cancels its reads and sends in flight (IORING_OP_ASYNC_CANCEL)
//     and returns once they have completed. The file is no longer read; the
//     registered buffers that the kernel may still send from stay parked in
//     the Sender until their notifications arrive.
//   - URingMmap cancels its sends in flight and then waits for the
//     notifications of the data already queued, because those reference the
//     file's own pages: that lasts as long as the peer takes to acknowledge
//     them.
//   - Copy, Sendfile and Splice stop at their next wait for room in the
//     socket buffer.
//
// Send uses a duplicate of the socket's descriptor: deadlines set on dst do
// not apply, and closing dst does not interrupt it. Use ctx.
//
// # Requirements
//
// Linux. io_uring with IORING_FEAT_SINGLE_MMAP (5.4) for the ring, and
// IORING_OP_SEND_ZC (6.0) for URing and URingMmap; RWF_DONTCACHE reads
// (Config.DontCache) need 6.14 and a file system that supports them, and fall
// back to plain reads elsewhere. On other systems every call fails with an
// error matching ErrNotSupported.
package sendfile2
