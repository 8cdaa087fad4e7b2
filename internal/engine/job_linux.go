package engine

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/epoll"
	"github.com/sendfile2/sendfile2/internal/uring"
)

// The types every engine shares: what goes in, what comes out, and the
// state of one send or receive in progress.

// Kind names an engine.
type Kind uint8

const (
	URing     Kind = iota + 1 // READ_FIXED into registered buffers, SEND_ZC from them
	URingMmap                 // SEND_ZC from a shared mapping of the file
	MsgZC                     // send(2) with MSG_ZEROCOPY from a shared mapping
	Copy                      // send(2) from a mapping or a pread(2) buffer
	Sendfile                  // sendfile(2): an unsafe baseline
	Splice                    // splice(2) through a pipe: an unsafe baseline
)

var kindNames = [...]string{URing: "uring", URingMmap: "uring-mmap", MsgZC: "msgzc", Copy: "copy", Sendfile: "sendfile", Splice: "splice"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

// ZeroCopy reports whether k sends without copying where the device allows.
func (k Kind) ZeroCopy() bool { return k == URing || k == URingMmap || k == MsgZC }

// Tuning holds the thresholds that benchmarks and tests change; DefaultTuning
// gives the measured ones.
type Tuning struct {
	// Copy sends from a kept mapping of the file from CopyKeepMin bytes (see
	// fileMaps: from the file's second send), and from a mapping of its own
	// from CopyMmapMin bytes; below them, through a pread(2) buffer:
	// mmap(2) and munmap(2) cost more than the copy they save
	// (BenchmarkCopyVariants).
	CopyKeepMin, CopyMmapMin int64
	// MsgZCChunk is the size of one send(2) with MSG_ZEROCOPY. Each call
	// costs a notification and pins its pages; below about 10 KB the copy
	// it saves costs less. BenchmarkMsgZCVariants measures it: on loopback
	// (2 shared vCPUs, runs swinging by 30% and more), 64 KiB was the best
	// or within the noise of the best for 1 MiB and 64 MiB ranges; 256 KiB
	// and 1 MiB were slower on 64 MiB ranges in most runs.
	MsgZCChunk int
	// SendCall is the most bytes one send(2) of a copying path takes
	// (zero: all that is left of the mapping or buffer). On loopback, from a
	// kept mapping of a 64 MiB file, calls offered the whole window ran at
	// 0.86x the rate of 1 MiB calls (BenchmarkCopyCall), and at 0.89x with
	// 1.14x the CPU per GiB against a receiver blocking in read(2); 256 KiB
	// calls were slower still, 4 MiB and 16 MiB in between
	// (docs/BENCHMARKS.md, the ninth pass).
	SendCall int
	// MapIdle is how long a kept mapping may go unused.
	MapIdle time.Duration
	// URingThread drives the io_uring Loop from one goroutine locked to
	// its OS thread, on a ring set up for it (uring.Config.Thread). Off by
	// default: on loopback it was slower than the Loop's reaper
	// (docs/BENCHMARKS.md).
	URingThread bool
	// URingSubmit, for tests only (nil otherwise), is called by a uring
	// send at each round before it submits (also with nothing to submit),
	// with the number of its SEND_ZCs whose result is pending; an error
	// it returns fails the submission as the Loop's Begin would.
	URingSubmit func(sends int) error
	// MsgZCWait, for tests only (nil otherwise), is called by a msgzc send
	// before it waits for its socket, with the number of its calls not yet
	// notified; an error it returns fails the wait as a failed epoll_ctl or
	// epoll_wait would.
	MsgZCWait func(pending int) error
	// SpliceWrite, for tests only (nil otherwise), is called by a splice
	// receive before each splice(2) from its pipe to the file; an error it
	// returns is taken as that splice's, as from a file system that has no
	// splice_write.
	SpliceWrite func() error
	// MsgZCReclaim bounds how long a msgzc send whose wait failed waits,
	// after resetting its connection, for the notifications of its calls
	// (reclaim). No peer can hold them then, only a device or a queueing
	// discipline that has not sent the segments yet.
	MsgZCReclaim time.Duration
}

// ThreadByDefault makes DefaultTuning set URingThread. Tests set it (from
// testutil.URingThread) to run their suites on the Loop's thread mode.
var ThreadByDefault bool

// DefaultTuning is the Tuning of every Sender.
func DefaultTuning() Tuning {
	return Tuning{URingThread: ThreadByDefault, CopyKeepMin: 64 << 10, CopyMmapMin: 1 << 20, MsgZCChunk: 64 << 10, SendCall: 1 << 20, MapIdle: 5 * time.Second, MsgZCReclaim: 10 * time.Second}
}

// Config configures the engines of one Sender.
type Config struct {
	BufferSize int  // bytes per registered buffer and per chunk of a send
	Buffers    int  // registered buffers
	DontCache  bool // RWF_DONTCACHE on file reads and writes of URing
	Sync       bool // Receive returns once the data is on stable storage
	// Notified, if set, is called for each zero-copy notification, on the
	// goroutine that reads it: for URing and URingMmap the Loop's drain of
	// the completion queue, shared by every send and receive (request's
	// HandleCQE), so a slow call delays all of their completions; for
	// MsgZC the send's. It must be quick and never block.
	Notified func(k Kind, latency time.Duration, copied bool)
	Tuning   Tuning
}

// maxDepth bounds the chunks one send or receive keeps in flight, so that
// one connection cannot take every buffer of a shared Sender.
const maxDepth = 8

// Engines is what the sends of one Sender share: the io_uring Loop and its
// registered buffers (when set up), the kept mappings of files, and what the
// kernel was found to refuse.
type Engines struct {
	cfg   Config
	loop  *uring.Loop // nil until SetupURing
	pool  *bufPool    // registered buffers of URing
	maps  fileMaps    // the kept mappings of the files Copy, URingMmap and MsgZC send
	pipes pipes       // the Splice receive's empty pipes

	pollMu sync.Mutex
	poll   *epoll.Poller // where sends wait for room and receives for data

	poolShort atomic.Int64 // parts copied for want of a registered buffer or a ring slot

	noReportUsage atomic.Bool // the kernel refused IORING_SEND_ZC_REPORT_USAGE
	noDontCache   atomic.Bool // the kernel or file system refused RWF_DONTCACHE
	msgzcNoBufs   atomic.Int64
}

// Usage counts the bytes of zero-copy sends by what the kernel reported:
// sent from the buffer or page itself, or copied.
type Usage struct{ ZeroCopy, Copied atomic.Int64 }

func (u *Usage) add(copied bool, n int64) {
	if copied {
		u.Copied.Add(n)
	} else {
		u.ZeroCopy.Add(n)
	}
}

// Job is one send: hdr, then count bytes of the file from off, to the socket.
type Job struct {
	Ctx    context.Context
	Kind   Kind
	Sock   int          // a connected stream socket
	File   int          // a regular file holding the range
	Stat   *unix.Stat_t // File's fstat(2), which checked the range
	Header []byte
	Off    int64
	Count  int64
	// Readable says the caller knows File is open for reading (neither
	// O_PATH nor O_WRONLY): a kept mapping, made through another
	// descriptor, may then be read for it without asking fcntl(2).
	Readable bool
	// Usage, if set, counts the notifications' reports of every send of the
	// kind, also those that arrive after a cancelled send returned.
	Usage *Usage
}

// Outcome is what a send did.
type Outcome struct {
	N   int64 // bytes sent, header included
	Err error
	// ZeroCopy and Copied split what the notifications reported (zero-copy
	// kinds only) before the send returned.
	ZeroCopy, Copied int64
	// Fallbacks counts the copying paths the send took where its kind could
	// not apply, keeping the guarantee.
	Fallbacks int64
}

// transfer is one Send in progress.
type transfer struct {
	e *Engines
	Job
	// What notifications reported: what the route learns from.
	usage     Usage
	fallbacks int64
}

// more is the send(2) flag for a header: MSG_MORE, which holds it back to
// leave with the body, when a body follows.
func (t *transfer) more() int {
	if t.Count > 0 {
		return unix.MSG_MORE
	}
	return 0
}

// result is what a send returns: the bytes sent and its error, the cause of
// the cancellation if it was cancelled, or an error for a short count.
func result(ctx context.Context, sent, total int64, cancelled bool, err error) (int64, error) {
	if cancelled {
		err = context.Cause(ctx)
	}
	if err == nil && sent != total {
		err = fmt.Errorf("sent %d of %d bytes", sent, total)
	}
	return sent, err
}

// RecvJob is one receive: count bytes from the socket (until its end when
// count < 0), written to the file from off.
type RecvJob struct {
	Ctx   context.Context
	Kind  Kind // URing, Splice; any other receives with Copy
	Sock  int  // a connected stream socket
	File  int  // a regular file open for writing (see CheckWritable)
	Off   int64
	Count int64
}

// receiver is one Receive in progress.
type receiver struct {
	e *Engines
	RecvJob
	fallbacks int64
}

// unexpectedEOF is the error of a stream that ended after got of want bytes.
func unexpectedEOF(got, want int64) error {
	return fmt.Errorf("end of stream after %d of %d bytes: %w", got, want, io.ErrUnexpectedEOF)
}
