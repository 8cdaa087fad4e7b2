package sendfile2

import (
	"context"
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/engine"
	"github.com/sendfile2/sendfile2/internal/httpconn"
	"github.com/sendfile2/sendfile2/internal/upload"
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
	if n := engine.Mappings(); n != 0 {
		return fmt.Errorf("%d memory mappings left (buffer pools or file mappings)", n)
	}
	return nil
}

// BuffersOut is the number of s's registered buffers not in its pool.
func BuffersOut(s *Sender) int64 { return s.eng.BuffersOut() }

// Tuning holds the engines' thresholds that benchmarks and tests change.
type Tuning = engine.Tuning

// NewSenderTuned is NewSender with the thresholds that tune sets.
func NewSenderTuned(cfg Config, tune func(*Tuning)) (*Sender, error) {
	t := engine.DefaultTuning()
	if tune != nil {
		tune(&t)
	}
	return newSender(cfg, t)
}

// FileMaps is the number of mappings of files s keeps now, the number it
// has made, and the number of sends that found theirs kept.
func FileMaps(s *Sender) (kept int, mapped, hits int64) { return s.eng.MapCounts() }

// MsgZCNoBufs is the number of times s's MsgZC sends got ENOBUFS from
// send(MSG_ZEROCOPY) and sent again after notifications.
func MsgZCNoBufs(s *Sender) int64 { return s.eng.MsgZCNoBufs() }

// URingLoad is the number of requests in flight on s's ring, the number its
// Loop admits at once, and the CQEs that named no live request: zeros for a
// Sender without a ring.
func URingLoad(s *Sender) (inFlight int64, capacity int, stray uint64) {
	l := s.eng.Loop()
	if l == nil {
		return 0, 0, 0
	}
	return l.InFlight(), l.Capacity(), l.Stray()
}

// URingOverflows is the number of times s's completion queue overflowed.
func URingOverflows(s *Sender) uint64 {
	l := s.eng.Loop()
	if l == nil {
		return 0
	}
	return l.Overflows()
}

// HoldWrite makes the next Write of c, a conn of NewListener, hold its bytes
// as ServeContent does, and returns the function that ends the hold.
func HoldWrite(c net.Conn) (release func() error) {
	h, _ := httpconn.Find(c)
	if h == nil || !h.HoldWrite() {
		return func() error { return nil }
	}
	return h.Release
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
	sock := &engine.Socket{
		FD:     -1,
		Family: unix.AF_INET,
		Local:  &unix.SockaddrInet4{Addr: [4]byte{192, 0, 2, 1}},
		Peer:   &unix.SockaddrInet4{Addr: [4]byte{192, 0, 2, 2}},
	}
	if s.cfg.Method != Auto {
		return s.Method(), trial{}.end
	}
	m, p := s.routes.choose(s.Method(), sock, 1<<20)
	return m, p.end
}

// ExpectsContinue reports whether ReceiveBody answers "100 Continue" to r
// before it reads the body.
var ExpectsContinue = upload.ExpectsContinue

// IsNotReleased reports whether err says that a send returned with calls
// the kernel had not notified yet (engine.ErrNotReleased).
func IsNotReleased(err error) bool {
	return errors.Is(err, ErrNotReleased) && errors.Is(err, engine.ErrNotReleased)
}

// SplitJob splits a job of hdr and count bytes from off after n bytes; see
// splitJob.
func SplitJob(hdr []byte, off, count, n int64) (head, rest engine.Job, split bool) {
	return splitJob(engine.Job{Header: hdr, Off: off, Count: count}, n)
}

// ProbeSend is the most a probe of a route sends zero-copy.
const ProbeSend = probeSend
