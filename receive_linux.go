package sendfile2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/epoll"
	"github.com/sendfile2/sendfile2/internal/uring"
)

// Receive reads exactly count bytes from the connected stream socket src (or,
// when count < 0, until the peer closes its end) and writes them to dst at
// offset, and returns the number of bytes written.
//
// The count that Receive returns is always the number of bytes written to dst
// contiguously from offset, and those bytes are the ones src delivered; bytes
// of dst past offset+n are not written. When the peer closes early, Receive
// returns the bytes written and an error matching io.ErrUnexpectedEOF. When
// ctx ends (or the Sender is closed), Receive stops reading, writes what it
// had already taken from src, and returns with context.Cause(ctx) (or an error
// matching ErrClosed): then, as after a peer error, the count is also the
// number of bytes consumed from src. Only an error writing dst (ENOSPC, EIO,
// ...) leaves bytes that were consumed from src and not written: those the
// method held in its buffers (up to 8 x BufferSize for URing, 256 KiB for
// Copy, a pipe's 1 MiB for Splice).
//
// With Config.Sync, Receive returns without error only once the bytes are on
// stable storage (fdatasync(2) semantics, IORING_OP_FSYNC with
// IORING_FSYNC_DATASYNC for URing).
//
// dst must be a regular file opened for writing, without O_APPEND; Receive
// neither reads nor moves its file offset. src is typically a *net.TCPConn or
// *net.UnixConn: Receive reads from a duplicate of its descriptor, so it
// neither observes src's deadlines nor stops when src is closed from another
// goroutine (use ctx), and it does not see bytes that the caller has already
// read into a buffer of its own (a bufio.Reader).
//
// The method is the Sender's: URing receives into the Sender's registered
// buffers and writes them with IORING_OP_WRITE_FIXED (with RWF_DONTCACHE when
// Config.DontCache is set), Copy with recv(2) and pwrite(2), Splice through a
// pipe with splice(2). URingMmap, MsgZC and Sendfile have nothing to offer
// on this side and receive with Copy (counted under Copy in Stats).
func (s *Sender) Receive(ctx context.Context, src syscall.Conn, dst *os.File, offset, count int64) (int64, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, fmt.Errorf("sendfile2: receive: %w", ErrClosed)
	}
	s.sends.Add(1)
	s.mu.Unlock()
	defer s.sends.Done()

	if offset < 0 || count > 0 && count > math.MaxInt64-offset {
		return 0, fmt.Errorf("sendfile2: receive: offset %d, count %d: %w", offset, count, ErrRange)
	}
	if dst == nil || isNil(src) {
		return 0, fmt.Errorf("sendfile2: receive: nil src or dst: %w", os.ErrInvalid)
	}
	sock, _, err := dupSocket(src)
	if err != nil {
		return 0, fmt.Errorf("sendfile2: receive: src: %w", err)
	}
	defer unix.Close(sock)
	dstConn, err := dst.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("sendfile2: receive: dst: %w", err)
	}
	method := s.receiveMethod()
	var n int64
	// Control holds a reference on dst's descriptor for the whole receive,
	// so that a concurrent Close cannot let the number be reused under us.
	cerr := dstConn.Control(func(fd uintptr) {
		if err = checkWritable(int(fd)); err != nil || count == 0 {
			return
		}
		ctx, cancel := s.sendContext(ctx)
		defer cancel()
		r := receiver{s: s, ctx: ctx, sock: sock, file: int(fd), off: offset, count: count}
		switch method {
		case URing:
			n, err = r.uring()
		case Splice:
			n, err = r.splice()
		default:
			n, err = r.copy()
		}
		if err == nil && s.cfg.Sync && method != URing {
			err = fdatasync(int(fd))
		}
	})
	if err == nil {
		err = cerr
	}
	c := s.counter(method)
	c.receives.Add(1)
	c.received.Add(n)
	if err != nil {
		c.receiveErrors.Add(1)
		return n, fmt.Errorf("sendfile2: receive (%s): %w", method, err)
	}
	return n, nil
}

// Receive receives with the Sender shared by the whole program, created with
// the default Config on first use; see Sender.Receive.
func Receive(ctx context.Context, src syscall.Conn, dst *os.File, offset, count int64) (int64, error) {
	s, err := shared()
	if err != nil {
		return 0, err
	}
	return s.Receive(ctx, src, dst, offset, count)
}

// receiveMethod is the method Receive uses: URing where the Sender has its
// ring and registered buffers, Splice for Splice, else Copy.
func (s *Sender) receiveMethod() Method {
	switch s.Method() {
	case URing:
		p := s.loop.Probe()
		if s.pool != nil && p.Supports(uring.OpRecv) && p.Supports(uring.OpWriteFixed) {
			return URing
		}
		s.fallbacks.Add(1)
		return Copy
	case Splice:
		return Splice
	}
	return Copy
}

// checkWritable checks that fd is a regular file open for writing at an
// offset: not read-only, not O_APPEND (where pwrite(2) and io_uring writes
// ignore the offset and append).
func checkWritable(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("dst: %w", os.NewSyscallError("fstat", err))
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		return fmt.Errorf("dst is a directory: %w", unix.EISDIR)
	default:
		return fmt.Errorf("dst is not a regular file (mode %#o): %w", st.Mode&unix.S_IFMT, unix.ESPIPE)
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return fmt.Errorf("dst: %w", os.NewSyscallError("fcntl", err))
	}
	if fl&unix.O_PATH != 0 || fl&unix.O_ACCMODE == unix.O_RDONLY {
		return fmt.Errorf("dst is not open for writing: %w", unix.EBADF)
	}
	if fl&unix.O_APPEND != 0 {
		return fmt.Errorf("dst is open with O_APPEND, which ignores the offset: %w", unix.EINVAL)
	}
	return nil
}

func fdatasync(fd int) error {
	for {
		err := unix.Fdatasync(fd)
		if err != unix.EINTR {
			if err != nil {
				return os.NewSyscallError("fdatasync", err)
			}
			return nil
		}
	}
}

// receiver is one Receive in progress.
type receiver struct {
	s     *Sender
	ctx   context.Context
	sock  int
	file  int
	off   int64
	count int64 // < 0: until the end of the stream
}

// unexpectedEOF is the error of a stream that ended after got of want bytes.
func unexpectedEOF(got, want int64) error {
	return fmt.Errorf("end of stream after %d of %d bytes: %w", got, want, io.ErrUnexpectedEOF)
}

// Requests of a receive. request.HandleCQE treats them as it does reads: it
// pushes the CQE to the receive's inbox and drops the hold on the chunk.
const (
	reqRecv  reqKind = 16 + iota // IORING_OP_RECV from the socket into a chunk
	reqWrite                     // IORING_OP_WRITE_FIXED of a chunk to the file
	reqFsync                     // IORING_OP_FSYNC of the range written
)

// uring is the URing receive: IORING_OP_RECV with MSG_WAITALL from the
// socket into registered buffers, IORING_OP_WRITE_FIXED from them to the
// file, up to maxDepth buffers per receive.
//
// Receives land in stream order: they go out as one IOSQE_IO_LINK chain at a
// time, into the buffer being filled and then into new ones, each asking for
// the rest of its buffer with MSG_WAITALL. A receive that completes short (the
// end of the stream, an error, a cancellation) breaks the chain, and the
// kernel cancels the receives linked after it before they take any byte; the
// next chain starts where the short one stopped. Writes go out in stream
// order too, the full buffers at the front of the queue as one linked chain at
// a time: a short or failed write breaks that chain, so the file never holds
// bytes past the first one that failed, and the count returned is exact. A
// buffer goes back to the pool when its bytes are all written.
func (r *receiver) uring() (int64, error) {
	s, pool := r.s, r.s.pool
	in := newInbox()
	depth := min(pool.n, maxDepth)
	var rwFlags uint32
	if s.cfg.DontCache {
		rwFlags = unix.RWF_DONTCACHE
	}
	useFsync := s.cfg.Sync && s.loop.Probe().Supports(uring.OpFsync)
	var (
		queue     []*chunk // buffers lent to this receive, in stream order
		next      int64    // stream position after the last buffer of queue
		received  int64    // bytes taken from the socket
		written   int64    // bytes written, contiguous from r.off
		recvs     []*request
		writes    int
		fsync     *request
		ended     bool // end of stream, or count bytes received
		synced    bool
		rerr      error // from the socket
		werr      error // from the file or the ring: stops everything
		cancelled bool
		evs       []event
		batch     []*request
		links     []bool // links[i]: batch[i] is linked to batch[i+1]
	)
	defer func() {
		for _, c := range queue {
			c.retire()
		}
	}()
	// stopReceiving cancels the receive in flight. Those linked after it
	// complete with -ECANCELED; one that the kernel issues before its
	// predecessor's CQE reaches us is cancelled when that CQE does.
	stopReceiving := func() {
		if len(recvs) > 0 {
			s.loop.Cancel(recvs[0].ud)
		}
	}
	for {
		// Stop receiving at the end of the stream, on an error, or when ctx
		// ends; then write what was received, unless the file failed.
		stopped := ended || rerr != nil || werr != nil || cancelled
		batch, links = batch[:0], links[:0]
		add := func(q *request) {
			if len(batch) > 0 {
				links = append(links, batch[len(batch)-1].kind == q.kind)
			}
			batch = append(batch, q)
		}
		if writes == 0 && werr == nil {
			for _, c := range queue {
				if c.reading || c.acked == c.filled || c.filled < c.n && !stopped {
					break
				}
				add(&request{in: in, kind: reqWrite, c: c, n: c.filled - c.acked, dontcache: rwFlags != 0})
			}
		}
		if len(recvs) == 0 && !stopped {
			idle := len(batch) == 0 && writes == 0 // nothing to write before this chain
			for _, c := range queue {
				if c.filled < c.n {
					add(&request{in: in, kind: reqRecv, c: c, n: c.n - c.filled})
				}
				idle = idle && c.acked == 0
			}
			for len(queue) < depth && (r.count < 0 || next < r.count) {
				idx, ok := pool.tryGet()
				if !ok {
					if writes > 0 || len(batch) > 0 {
						break // a completion will come; look again then
					}
					// Nothing of ours in flight will return a buffer: wait
					// for another send or receive to.
					var err error
					if idx, err = pool.get(r.ctx); err != nil {
						cancelled = true
						break
					}
				}
				n := int64(pool.size)
				if r.count >= 0 {
					n = min(n, r.count-next)
				}
				c := &chunk{pool: pool, idx: idx, mem: pool.buf(idx), pos: next, n: int(n)}
				next += n
				queue = append(queue, c)
				add(&request{in: in, kind: reqRecv, c: c, n: c.n})
			}
			if cancelled {
				continue // submit none of it; write what was received
			}
			if idle && next == r.count && len(batch) > 0 {
				// This chain ends the stream, and nothing comes before it:
				// link the writes of every buffer (and the fsync) after its
				// receives, to complete the whole receive in one round trip.
				// A short receive or write breaks the chain, and what the
				// kernel cancelled is submitted again as usual.
				links = append(links, true)
				for i, c := range queue {
					if i > 0 {
						links = append(links, true)
					}
					batch = append(batch, &request{in: in, kind: reqWrite, c: c, n: c.n, dontcache: rwFlags != 0})
				}
				if useFsync {
					links = append(links, true)
					batch = append(batch, &request{in: in, kind: reqFsync})
				}
			}
		}
		if useFsync && fsync == nil && !synced && ended && rerr == nil && werr == nil && !cancelled && len(queue) == 0 && writes == 0 && len(batch) == 0 {
			add(&request{in: in, kind: reqFsync})
		}
		if len(batch) > 0 {
			bctx := r.ctx
			if cancelled {
				// Still write out what was received.
				bctx = context.WithoutCancel(r.ctx)
			}
			k, err := r.submit(bctx, batch, links, rwFlags)
			for _, q := range batch[:k] {
				switch q.kind {
				case reqRecv:
					recvs = append(recvs, q)
				case reqWrite:
					writes++
				case reqFsync:
					fsync = q
				}
			}
			if err != nil {
				if !cancelled && r.ctx.Err() != nil {
					cancelled = true
					stopReceiving()
					continue
				}
				if werr == nil {
					werr = err
					stopReceiving()
				}
			}
		}
		if len(recvs) == 0 && writes == 0 && fsync == nil {
			break // nothing in flight, nothing more to submit
		}
		if !in.wait(r.ctx, cancelled) {
			cancelled = true
			stopReceiving()
			if fsync != nil {
				s.loop.Cancel(fsync.ud)
			}
			continue
		}
		evs = in.take(evs[:0])
		for _, e := range evs {
			q, c, res := e.r, e.r.c, e.cqe.Res
			switch q.kind {
			case reqRecv:
				recvs = slices.DeleteFunc(recvs, func(x *request) bool { return x == q })
				c.reading = false
				switch {
				case res > 0:
					c.filled += int(res)
					received += int64(res)
					if received == r.count {
						ended = true
					}
				case res == 0:
					ended = true
					if r.count >= 0 {
						rerr = unexpectedEOF(received, r.count)
					}
				case retryable(res) || errnoOf(res) == unix.ECANCELED:
				default:
					if rerr == nil {
						rerr = fmt.Errorf("recv: %w", errnoOf(res))
					}
				}
				if cancelled || werr != nil {
					stopReceiving()
				}
			case reqWrite:
				writes--
				c.sending = false
				switch {
				case res > 0:
					// The chain runs in order and stops at a short write:
					// every byte counted here follows the ones before.
					c.acked += int(res)
					written += int64(res)
				case res == 0:
					if werr == nil {
						werr = fmt.Errorf("write fixed: %w", io.ErrShortWrite)
					}
				case errnoOf(res) == unix.EOPNOTSUPP && q.dontcache:
					// RWF_DONTCACHE refused by this file system: write
					// without it.
					if rwFlags != 0 {
						rwFlags = 0
						s.fallbacks.Add(1)
					}
				case retryable(res) || errnoOf(res) == unix.ECANCELED:
					// Linked after a short write: written again.
				default:
					if werr == nil {
						werr = fmt.Errorf("write fixed: %w", errnoOf(res))
					}
				}
				if werr != nil {
					// The file failed: take no more bytes from the socket.
					stopReceiving()
				}
			case reqFsync:
				fsync = nil
				switch {
				case res == 0:
					synced = true
				case retryable(res) || errnoOf(res) == unix.ECANCELED:
				default:
					if werr == nil {
						werr = fmt.Errorf("fsync: %w", errnoOf(res))
					}
				}
			}
		}
		clear(evs)
		// Give back the buffers whose bytes are all written.
		stopped = ended || rerr != nil || werr != nil || cancelled
		for len(queue) > 0 {
			c := queue[0]
			if c.reading || c.sending || c.acked < c.filled || c.filled < c.n && !stopped {
				break
			}
			queue = queue[1:]
			c.retire()
		}
	}
	switch {
	case werr != nil:
		return written, werr
	case rerr != nil:
		return written, rerr
	case cancelled:
		return written, context.Cause(r.ctx)
	case written != received:
		return written, fmt.Errorf("receive: wrote %d of %d bytes received", written, received)
	case s.cfg.Sync && !useFsync:
		return written, fdatasync(r.file)
	case s.cfg.Sync && !synced:
		return written, errors.New("receive: fsync did not complete")
	}
	return written, nil
}

// submit submits batch in one io_uring_enter, batch[i] linked to batch[i+1]
// where links[i] is set. It returns how many the kernel took.
func (r *receiver) submit(ctx context.Context, batch []*request, links []bool, rwFlags uint32) (int, error) {
	b, err := r.s.loop.Begin(ctx, len(batch))
	if err != nil {
		return 0, err
	}
	for i, q := range batch {
		c := q.c
		sqe, ud := b.Add(q)
		q.ud = ud
		switch q.kind {
		case reqRecv:
			c.ref()
			c.reading = true
			sqe.PrepRecv(r.sock, unsafe.Pointer(&c.mem[c.filled]), uint32(q.n), unix.MSG_WAITALL)
		case reqWrite:
			c.ref()
			c.sending = true
			sqe.PrepWriteFixed(r.file, unsafe.Pointer(&c.mem[c.acked]), uint32(q.n), uint64(r.off+c.pos+int64(c.acked)), c.idx, rwFlags)
		case reqFsync:
			// The range written; fdatasync(2) semantics.
			n := uint32(0)
			if r.count > 0 && r.count <= math.MaxUint32 {
				n = uint32(r.count)
			}
			sqe.PrepFsync(r.file, uint64(r.off), n, uring.FsyncDatasync)
		}
		if i < len(links) && links[i] {
			sqe.Flags |= uring.SQEIOLink
		}
	}
	k, err := b.Submit()
	for _, q := range batch[k:] {
		if c := q.c; c != nil {
			c.reading = c.reading && q.kind != reqRecv
			c.sending = c.sending && q.kind != reqWrite
			c.unref()
		}
	}
	return k, err
}

// readWait waits until a socket has bytes to read (or its end, or an error)
// through a private epoll instance, created at the first wait, so that the
// caller's deadlines on the socket are never touched.
type readWait struct {
	fd int
	w  *epoll.Waiter
}

func (rw *readWait) wait(ctx context.Context) error {
	if rw.w == nil {
		w, err := epoll.New(rw.fd, unix.EPOLLIN|unix.EPOLLRDHUP)
		if err != nil {
			return err
		}
		rw.w = w
	}
	_, err := rw.w.Wait(ctx)
	return err
}

func (rw *readWait) close() {
	if rw.w != nil {
		rw.w.Close()
	}
}

// recvDontWait is recv(2) with MSG_DONTWAIT: it never blocks, whether the
// caller's descriptor is non-blocking or not.
func recvDontWait(fd int, p []byte) (int, syscall.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		uintptr(unix.MSG_DONTWAIT), 0, 0)
	return int(n), errno
}

// pwriteAll writes p at off with pwrite(2).
func pwriteAll(fd int, p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pwrite(fd, p[done:], off+int64(done))
		switch {
		case err == unix.EINTR:
		case err != nil:
			return done, os.NewSyscallError("pwrite", err)
		case n == 0:
			return done, fmt.Errorf("pwrite: %w", io.ErrShortWrite)
		default:
			done += n
		}
	}
	return done, nil
}

// copy is the Copy receive: recv(2) into a buffer until it is full or the
// socket has nothing more for now, then pwrite(2) of the buffer; it waits for
// bytes to read only with nothing left to write, so that a receive that stops
// has written everything it took from the socket.
func (r *receiver) copy() (int64, error) {
	rw := &readWait{fd: r.sock}
	defer rw.close()
	bp := getCopyBuf(math.MaxInt64)
	defer putCopyBuf(bp)
	buf := *bp
	var written int64
	for {
		if err := r.ctx.Err(); err != nil {
			return written, context.Cause(r.ctx)
		}
		want := len(buf)
		if r.count >= 0 {
			want = int(min(int64(want), r.count-written))
		}
		h, ended := 0, false
		var rerr error
	fill:
		for h < want {
			n, errno := recvDontWait(r.sock, buf[h:want])
			switch {
			case errno == unix.EINTR:
			case errno == unix.EAGAIN:
				if h > 0 {
					break fill // write what we have before waiting
				}
				if err := rw.wait(r.ctx); err != nil {
					return written, err
				}
			case errno != 0:
				rerr = os.NewSyscallError("recv", errno)
				break fill
			case n == 0:
				ended = true
				break fill
			default:
				h += n
			}
		}
		n, err := pwriteAll(r.file, buf[:h], r.off+written)
		written += int64(n)
		switch {
		case err != nil:
			return written, err
		case rerr != nil:
			return written, rerr
		case ended && r.count >= 0 && written < r.count:
			return written, unexpectedEOF(written, r.count)
		case ended || written == r.count:
			return written, nil
		}
	}
}

// splice is the Splice receive, socket to pipe to file with splice(2): a
// baseline. Like copy, it empties the pipe into the file before it waits.
func (r *receiver) splice() (int64, error) {
	p, pipeSize, err := newPipe()
	if err != nil {
		return 0, err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	rw := &readWait{fd: r.sock}
	defer rw.close()
	var written int64
	for {
		if err := r.ctx.Err(); err != nil {
			return written, context.Cause(r.ctx)
		}
		want := int64(pipeSize)
		if r.count >= 0 {
			want = min(want, r.count-written)
		}
		in, err := unix.Splice(r.sock, nil, p[1], nil, int(want), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if err := rw.wait(r.ctx); err != nil {
				return written, err
			}
			continue
		case err != nil:
			return written, os.NewSyscallError("splice", err)
		case in == 0:
			if r.count >= 0 {
				return written, unexpectedEOF(written, r.count)
			}
			return written, nil
		}
		for in > 0 {
			off := r.off + written
			out, err := unix.Splice(p[0], nil, r.file, &off, int(in), unix.SPLICE_F_MOVE)
			if out > 0 {
				in -= out
				written += out
			}
			switch {
			case err == unix.EINTR || err == unix.EAGAIN:
			case err != nil:
				return written, os.NewSyscallError("splice", err)
			case out == 0:
				return written, fmt.Errorf("splice: %w", io.ErrShortWrite)
			}
		}
		if written == r.count {
			return written, nil
		}
	}
}
