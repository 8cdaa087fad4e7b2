package sendfile2

import (
	"context"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// CheckNoLeaks closes the package's default Sender and reports mappings or
// registered buffers still held. TestMain runs it after the tests.
func CheckNoLeaks() error {
	defaultMu.Lock()
	if defaultSender != nil {
		defaultSender.Close()
		defaultSender = nil
	}
	defaultMu.Unlock()
	if n := liveMappings.Load(); n != 0 {
		return fmt.Errorf("%d memory mappings left (buffer pools or file mappings)", n)
	}
	return nil
}

// BuffersOut is the number of s's registered buffers not in its pool.
func BuffersOut(s *Sender) int64 {
	if s.pool == nil {
		return 0
	}
	return s.pool.out.Load()
}

// SetCopyMmapMin sets the sizes from which Copy sends from a kept mapping
// and from a mapping of its own, for BenchmarkCopyVariants, and returns a
// function that restores them.
func SetCopyMmapMin(keep, own int64) func() {
	oldKeep, oldOwn := copyKeepMin, copyMmapMin
	copyKeepMin, copyMmapMin = keep, own
	return func() { copyKeepMin, copyMmapMin = oldKeep, oldOwn }
}

// FileMaps is the number of mappings of files s keeps now, the number it
// has made, and the number of sends that found theirs kept.
func FileMaps(s *Sender) (kept int, mapped, hits int64) { return s.maps.counts() }

// SetMapIdle sets how long a kept mapping may go unused, for tests, and
// returns a function that restores it.
func SetMapIdle(d time.Duration) func() {
	old := mapIdle.Swap(int64(d))
	return func() { mapIdle.Store(old) }
}

// MsgZCNoBufs is the number of times s's MsgZC sends got ENOBUFS from
// send(MSG_ZEROCOPY) and sent again after notifications.
func MsgZCNoBufs(s *Sender) int64 { return s.msgzcNoBufs.Load() }

// SetMsgZC sets the chunk size of MsgZC and whether it sends from pread(2)
// buffers instead of a mapping, for BenchmarkMsgZCVariants, and returns a
// function that restores them.
func SetMsgZC(chunk int, pread bool) func() {
	oldChunk, oldPread := msgzcChunk, msgzcPread
	msgzcChunk, msgzcPread = chunk, pread
	return func() { msgzcChunk, msgzcPread = oldChunk, oldPread }
}

// URingLoad is the number of requests in flight on s's ring, the number its
// Loop admits at once, and the CQEs that named no live request: zeros for a
// Sender without a ring.
func URingLoad(s *Sender) (inFlight int64, capacity int, stray uint64) {
	if s.loop == nil {
		return 0, 0, 0
	}
	return s.loop.InFlight(), s.loop.Capacity(), s.loop.Stray()
}

// URingOverflows is the number of times s's completion queue overflowed.
func URingOverflows(s *Sender) uint64 {
	if s.loop == nil {
		return 0
	}
	return s.loop.Overflows()
}

// HoldWrite makes the next Write of c, a conn of NewListener, hold its bytes
// as ServeContent does, and returns the function that ends the hold.
func HoldWrite(c net.Conn) (release func() error) {
	h := heldConn(c)
	if h == nil || !h.holdWrite() {
		return func() error { return nil }
	}
	return h.release
}

// SendContext is the context a send of s runs under: ctx, ended also by s's
// Close.
func SendContext(s *Sender, ctx context.Context) (context.Context, func()) {
	return s.sendContext(ctx)
}

// Adapt runs Auto's choice for a send of 1 MiB on a route from 192.0.2.1 to
// 192.0.2.2 (no socket: the choice reads only the addresses), and returns
// the method and the function that ends the send, as its notifications
// would report it: zc bytes sent without a copy, copied bytes copied.
func Adapt(s *Sender) (Method, func(ok bool, zc, copied int64)) {
	sock := &socket{
		fd:     -1,
		family: unix.AF_INET,
		local:  &unix.SockaddrInet4{Addr: [4]byte{192, 0, 2, 1}},
		peer:   &unix.SockaddrInet4{Addr: [4]byte{192, 0, 2, 2}},
	}
	m, p := s.adapt(s.Method(), sock, 1<<20)
	return m, p.end
}
