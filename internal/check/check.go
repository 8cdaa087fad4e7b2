package check

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
)

// SendFunc sends count bytes of src from offset to dst and returns when, by
// the method's own claim, it is done: when the caller may touch src again. It
// should return early, with an error, when ctx is done.
type SendFunc func(ctx context.Context, dst syscall.Conn, src *os.File, offset, count int64) (int64, error)

// Scenario is what Run does to the file right after the send returns and
// before the receiver reads anything.
type Scenario string

const (
	// Overwrite writes the whole file in place (pwrite(2)) with the bitwise
	// complement of its contents, so that every byte differs.
	Overwrite Scenario = "overwrite"
	// Truncate cuts the file to 1000 bytes (ftruncate(2)), a size that is not
	// a multiple of the page size: the kernel zeroes the rest of the first
	// page and drops the pages after it from the page cache.
	Truncate Scenario = "truncate"
	// Queued overwrites the file like Overwrite, but over a connection whose
	// receive window is small and whose receiver starts reading only after
	// QueuedRelease, whether the send has returned or not. Most of the file
	// is then still queued in the sender's socket when a send that returns
	// early does: a zero-copy method that returns before its notifications
	// (which come with the peer's acknowledgement) sends the new bytes. On
	// loopback, data that reaches the receiver is copied there, so the other
	// scenarios cannot catch that mistake.
	Queued Scenario = "queued"
)

// QueuedRelease is how long the receiver of the Queued scenario waits before
// it reads.
const QueuedRelease = 100 * time.Millisecond

// queuedWindow is the receive buffer of the Queued scenario: the kernel's
// minimum, a few KiB.
const queuedWindow = 4096

// Scenarios lists every scenario in the order Run plays them.
func Scenarios() []Scenario { return []Scenario{Overwrite, Truncate, Queued} }

// truncateSize is the size Truncate leaves the file at (half the file when
// the file is not larger than that).
const truncateSize = 1000

// Defaults for the zero fields of Options.
const (
	DefaultRounds  = 4
	DefaultSize    = 256 << 10
	DefaultTimeout = 10 * time.Second
)

// Options tune Run. The zero value is ready to use.
type Options struct {
	// Rounds is the number of rounds per scenario; DefaultRounds if zero.
	Rounds int
	// Size is the file size per round in bytes; DefaultSize if zero. The whole
	// file must fit in the socket buffers of a receiver that does not read.
	Size int
	// Timeout bounds, per round, how long the send may take while the
	// receiver is held back, how long it may take to finish once the receiver
	// reads, and how long the receiver waits for the data; DefaultTimeout if
	// zero.
	Timeout time.Duration
	// Dir is where the temporary files go; os.TempDir() if empty. Its
	// filesystem is part of what is checked.
	Dir string
	// Peer, if set, is the HOST:PORT of a receiver on another machine
	// (`sendfile2 peer`, package peer) to send to instead of one on
	// loopback: the path through a real network device, where the kernel
	// sends from the pages. The peer holds its reads back and counts the
	// changed bytes.
	Peer string
}

func (o Options) withDefaults() Options {
	if o.Rounds == 0 {
		o.Rounds = DefaultRounds
	}
	if o.Size == 0 {
		o.Size = DefaultSize
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Dir == "" {
		o.Dir = os.TempDir()
	}
	return o
}

// ScenarioOutcome counts the bytes of one scenario.
type ScenarioOutcome struct {
	// BytesChecked is the number of bytes the receiver should have got, over
	// the rounds that were checked.
	BytesChecked int64
	// CorruptedBytes is the number of those bytes that differed from the file
	// as it was when the send started. Bytes that never arrived count too.
	CorruptedBytes int64
}

// Outcome is what one method did over all rounds of all scenarios.
type Outcome struct {
	// BytesChecked and CorruptedBytes are the sums over PerScenario.
	BytesChecked   int64
	CorruptedBytes int64
	// PerScenario holds the counters of each scenario that was played.
	PerScenario map[Scenario]ScenarioOutcome
	// Err is the first failure that kept a round from being checked: the send
	// failed or reported a short count, it did not return in time
	// (ErrSendTimeout), the receiver got fewer or more bytes than were sent,
	// or a temporary file or connection could not be set up. Run stops at the
	// first such failure; the counters cover the rounds before it (and the
	// round itself when the receiver got a wrong number of bytes, the missing
	// ones counted as corrupted).
	Err error
}

// Safe reports whether the method was checked and never corrupted a byte.
func (o Outcome) Safe() bool {
	return o.Err == nil && o.BytesChecked > 0 && o.CorruptedBytes == 0
}

// ErrSendTimeout is matched by Outcome.Err when a send did not return within
// Options.Timeout while the receiver was held back. A safe method that waits
// for the peer to acknowledge the data does that when the file does not fit in
// the socket buffers; a method may also simply hang.
var ErrSendTimeout = errors.New("send did not return while the receiver was held back")

func (o *Outcome) add(s Scenario, checked, corrupted int64) {
	if o.PerScenario == nil {
		o.PerScenario = make(map[Scenario]ScenarioOutcome)
	}
	so := o.PerScenario[s]
	so.BytesChecked += checked
	so.CorruptedBytes += corrupted
	o.PerScenario[s] = so
	o.BytesChecked += checked
	o.CorruptedBytes += corrupted
}
