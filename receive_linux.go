package sendfile2

import (
	"context"
	"fmt"
	"math"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/engine"
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
// on this side and receive with Copy (counted under Copy in Stats). Auto
// receives with Splice, the one that copies each byte once, and with URing
// when Config.DontCache asks for uncached writes, which only URing's carry
// (with Splice and a fallback in Stats where the Sender has no ring). Stats
// count each receive under the method it chose; a Splice receive into a file
// whose file system refuses splice(2) goes on with Copy and counts a
// fallback.
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
	sock, err := engine.Dup(src)
	if err != nil {
		return 0, fmt.Errorf("sendfile2: receive: src: %w", err)
	}
	defer unix.Close(sock.FD)
	dstConn, err := dst.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("sendfile2: receive: dst: %w", err)
	}
	method, fallback := s.receiveMethod()
	var n int64
	// Control holds a reference on dst's descriptor for the whole receive,
	// so that a concurrent Close cannot let the number be reused under us.
	cerr := dstConn.Control(func(fd uintptr) {
		if err = engine.CheckWritable(int(fd)); err != nil || count == 0 {
			return
		}
		ctx, end := s.sendContext(ctx)
		defer end()
		out := s.eng.Receive(engine.RecvJob{Ctx: ctx, Kind: kindOf(method), Sock: sock.FD, File: int(fd), Off: offset, Count: count})
		n, err, fallback = out.N, out.Err, fallback+out.Fallbacks
	})
	s.fallbacks.Add(fallback)
	if err == nil {
		err = cerr
	}
	c := s.counters.of(method)
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

// receiveMethod is the method Receive uses, and the fallbacks to count.
//
// Auto receives with Splice: socket to pipe to file costs one copy (the
// pipe holds the socket's pages, the write copies them into the page cache)
// where Copy and URing make two (socket to buffer, buffer to page cache), and
// URing adds the hand-off of each chain of buffered writes to io-wq. With
// Config.DontCache only URing's writes carry RWF_DONTCACHE, so Auto receives
// with URing where the Sender has it; else with Splice, and counts a fallback:
// the writes go through the page cache as usual. Config.Sync holds for every
// method.
//
// URing receives with URing where the Sender has its ring and registered
// buffers, else with Copy and one fallback; Splice with Splice; the others
// with Copy.
func (s *Sender) receiveMethod() (Method, int64) {
	if s.cfg.Method == Auto {
		switch {
		case !s.cfg.DontCache:
			return Splice, 0
		case s.eng.ReceivesWithURing():
			return URing, 0
		}
		return Splice, 1
	}
	switch s.Method() {
	case URing:
		if s.eng.ReceivesWithURing() {
			return URing, 0
		}
		return Copy, 1
	case Splice:
		return Splice, 0
	}
	return Copy, 0
}
