package sendfile2

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/sendfile2/sendfile2/internal/probe"
)

// Method names a way of moving file data to a socket. The names are the ones
// the sendfile2 command accepts.
type Method string

const (
	// Auto picks the best safe method the kernel offers: URing where io_uring
	// has IORING_OP_SEND_ZC and IORING_OP_READ_FIXED, else MsgZC where TCP
	// sockets take SO_ZEROCOPY, else Copy. It then adapts per route and per
	// send size (see Stats.Adaptive), and demotes its method once if the
	// kernel refuses it at run time (Stats.Demotions).
	Auto Method = "auto"
	// URing reads the file with IORING_OP_READ_FIXED into registered buffers
	// and sends them with IORING_OP_SEND_ZC, several chunks in flight; a buffer
	// is reused only after its notification. Linux 6.0+.
	URing Method = "uring"
	// URingMmap sends straight from a shared mapping of the file with
	// IORING_OP_SEND_ZC: no copy at all where the device allows it. Send
	// returns after every notification, when the kernel has let go of the
	// file's pages. Linux 6.0+.
	URingMmap Method = "uring-mmap"
	// MsgZC sends straight from a shared mapping of the file with send(2)
	// and MSG_ZEROCOPY, and returns after the kernel has posted on the
	// socket's error queue the notification of every call. The zero-copy
	// path where io_uring is refused (seccomp, kernel.io_uring_disabled).
	// It consumes the socket's error queue: do not send with MSG_ZEROCOPY on
	// the same socket yourself. TCP, Linux 4.14+.
	MsgZC Method = "msgzc"
	// Copy writes the file to the socket with send(2), which copies the data
	// into socket buffers before it returns: safe by construction, any kernel.
	Copy Method = "copy"
	// Sendfile is sendfile(2). UNSAFE: it returns while socket buffers still
	// reference the file's page-cache pages. A measured baseline only; never
	// chosen automatically.
	Sendfile Method = "sendfile"
	// Splice is splice(2) from the file to a pipe and from the pipe to the
	// socket. UNSAFE for the same reason as Sendfile; a baseline only.
	Splice Method = "splice"
)

// Methods lists every concrete method, safe ones first.
func Methods() []Method { return []Method{URing, URingMmap, MsgZC, Copy, Sendfile, Splice} }

// Safe reports whether m keeps the guarantee: when a send returns, the kernel
// holds no reference to the caller's file pages or buffers.
func (m Method) Safe() bool {
	switch m {
	case Auto, URing, URingMmap, MsgZC, Copy:
		return true
	}
	return false
}

// MarshalText implements encoding.TextMarshaler: the method's name.
func (m Method) MarshalText() ([]byte, error) { return []byte(m), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseMethod, so that
// a Method can be a flag (flag.TextVar) or a JSON or TOML string. Empty text
// is Auto, as in Config.
func (m *Method) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*m = Auto
		return nil
	}
	v, err := ParseMethod(string(text))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// ParseMethod returns the Method named s.
func ParseMethod(s string) (Method, error) {
	m := Method(s)
	if m == Auto {
		return m, nil
	}
	for _, k := range Methods() {
		if m == k {
			return m, nil
		}
	}
	names := []string{string(Auto)}
	for _, k := range Methods() {
		names = append(names, string(k))
	}
	return "", fmt.Errorf("sendfile2: unknown method %q (want one of %s)", s, strings.Join(names, ", "))
}

var (
	// ErrNotSupported is matched by errors for what this system or kernel
	// cannot do: another OS, a kernel without a needed io_uring opcode,
	// io_uring refused by seccomp or kernel.io_uring_disabled.
	ErrNotSupported = probe.ErrNotSupported
	// ErrClosed is matched by the errors of a Sender used after Close, and of
	// sends that Close interrupted.
	ErrClosed = errors.New("sender closed")
	// ErrRange is matched by the error for a negative offset, or a range
	// that ends past the end of the file when the send starts. Nothing is
	// sent. A file that shrinks during a send gives io.ErrUnexpectedEOF.
	ErrRange = errors.New("range outside the file")
	// ErrNotReleased is matched by the error of the one send that returns
	// while the kernel may still read the file's pages: a MsgZC send whose
	// wait for its socket failed (epoll) resets the connection, so that no
	// peer can hold its data, and then waits at most 10 s for the
	// notifications; segments that a local device or queueing discipline
	// still holds after that may go out with what the file holds then.
	ErrNotReleased = errors.New("data not released by the kernel")
)

// Config configures a Sender. The zero value is valid.
type Config struct {
	// Method is the send method; Auto if empty.
	Method Method
	// BufferSize is the size of each registered buffer of the URing method
	// and of each chunk a send submits, 256 KiB if zero.
	BufferSize int
	// Buffers is the number of registered buffers the Sender shares among
	// its sends, 16 if zero. Without CAP_IPC_LOCK, Buffers*BufferSize counts
	// against RLIMIT_MEMLOCK.
	Buffers int
	// DontCache asks that file reads of the URing method drop the pages they
	// brought into the page cache, and that URing's Receive write through
	// pages dropped once written back (RWF_DONTCACHE, Linux 6.14+); with it,
	// Auto receives with URing. Where the kernel or file system lacks it,
	// reads and writes fall back to plain ones, counted in Stats.Fallbacks.
	DontCache bool
	// Sync makes Receive return only after the data is on stable storage
	// (fdatasync(2), or IORING_OP_FSYNC with IORING_FSYNC_DATASYNC).
	Sync bool
	// Observer, when set, receives events as they happen, for metrics.
	Observer Observer
	// Logger receives the Sender's rare warnings (a method demoted at run
	// time); slog.Default() if nil.
	Logger *slog.Logger
}

// Observer receives a Sender's events as they happen. Its methods run on the
// Sender's internal goroutines: they must be quick and must not block.
type Observer interface {
	// Notified is called for each zero-copy notification with the time from
	// the send's submission to the notification (the kernel letting go of
	// the data), and whether the kernel reported that it copied the data.
	//
	// For URing and URingMmap it runs on the one goroutine that drains the
	// Sender's completion queue, for every send of the Sender: while it
	// runs, no send or receive of the Sender gets its completions, so it
	// must not block, take a lock held across I/O, or do I/O itself. (It
	// runs there because a cancelled URing send returns before its
	// notifications, which are still observed.) For MsgZC it runs on the
	// goroutine of the send. Hand anything slow to another goroutine.
	Notified(m Method, latency time.Duration, copied bool)
}

// Stats are a Sender's counters since it was created.
type Stats struct {
	// Method is the method the Sender resolved Auto to, or its configured one.
	Method Method
	// InFlight is the number of sends in progress.
	InFlight int64
	// Fallbacks counts the times the Sender took a copying path where its
	// method could not apply, keeping the guarantee: zero-copy methods on
	// sockets other than TCP (sent with Copy), MsgZC sends whose send(2)
	// got ENOBUFS with no notification to wait for (the rest copied),
	// URingMmap sends that could not pin one chunk under RLIMIT_MEMLOCK
	// (the rest copied), reads that the kernel or file system refused
	// with RWF_DONTCACHE (read without it), and the parts counted in
	// PoolShort.
	Fallbacks int64
	// PoolShort counts the parts of URing sends and receives that found
	// every registered buffer lent (to other connections, up to a share of
	// the pool each), and of URingMmap sends that found the ring full, and
	// were copied with send(2) or recv(2) instead of waiting.
	PoolShort int64
	// Demotions counts the times Auto's method failed at run time for a
	// reason that says "not here" (EPERM, ENOSYS) and was replaced by the next
	// one in Auto's order.
	Demotions int64
	// Methods has the counters of each method that has run.
	Methods map[Method]MethodStats
	// Adaptive says what Auto decided from what the kernel reported.
	Adaptive AdaptiveStats
	// Bypassed counts the file bodies of HTTP responses that the Sender
	// could have sent but that went around it, copied through a buffer
	// (safe, without zero copy), by reason; nil when there were none. Only
	// what a conn of NewListener or ServeContent sees is counted: a
	// handler that copies a file with Write, or http.FileServer behind a
	// wrapper that hides the conn or behind middleware that hides
	// ReadFrom, never reaches them (see NewListener).
	Bypassed map[Bypass]int64
}

// AdaptiveStats are the decisions of a Sender configured with Auto. A route
// (a local and a peer address) whose zero-copy sends keep coming back copied
// (loopback, veth, a device without scatter-gather) sends with Copy for a
// minute, then tries zero-copy again; small sends copy from the start. Until
// a route's zero-copy sends have been seen to leave without a copy, at most
// three are out at once, and the sends that come meanwhile copy. Such a
// probe sends only the first MiB of a longer send zero-copy; the rest goes
// as the route then says, and when it copies it counts in CopiedRoute or
// Probing as a send of its own.
type AdaptiveStats struct {
	Switches      int64 // times a route was switched to Copy
	CopyingRoutes int64 // routes that send with Copy now
	CopiedRoute   int64 // sends that took Copy because their route copies
	Small         int64 // sends that took Copy because they were small
	Probing       int64 // sends that took Copy while their route's first zero-copy sends were out
}

// MethodStats are the counters of one method.
type MethodStats struct {
	Sends  int64 // sends completed, with or without error
	Errors int64 // sends that returned an error
	// Bytes are the bytes sent with the method. A send of Auto that probed
	// its route counts under the method that sent its end, but the bytes of
	// its probe count under the probe's.
	Bytes int64
	// ZeroCopyBytes and CopiedBytes split the bytes of zero-copy sends by the
	// kernel's report (IORING_SEND_ZC_REPORT_USAGE, Linux 6.2+; for MsgZC,
	// SO_EE_CODE_ZEROCOPY_COPIED): sent from the buffer or page itself, or
	// copied because the route's device could not send from it (always so on
	// loopback and veth).
	ZeroCopyBytes int64
	CopiedBytes   int64
	// Receives, ReceiveErrors and Received count Receive calls, those that
	// returned an error, and the bytes they wrote.
	Receives, ReceiveErrors, Received int64
}

const (
	defaultBufferSize = 256 << 10
	defaultBuffers    = 16
)
