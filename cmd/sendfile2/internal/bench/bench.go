package bench

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/cmd/sendfile2/internal/bytesize"
)

// Direction says which side of the connections this process measures.
type Direction string

const (
	// Send measures Sender.Send: this process sends, a peer process reads.
	Send Direction = "send"
	// Receive measures Sender.Receive: a peer process writes from memory
	// with write(2), and this process receives each connection into a new
	// file on disk.
	Receive Direction = "receive"
)

// URingDontCache is a receive entry of its own: URing with
// Config.DontCache, whose writes carry RWF_DONTCACHE (Linux 6.14+), so that
// one run compares the page cache with and without it.
const URingDontCache sendfile2.Method = "uring+dontcache"

// Source says where the bytes come from.
type Source string

const (
	// FromFile sends ranges of a regular file that is in the page cache.
	FromFile Source = "file"
	// FromMemory sends an anonymous mapping (MAP_ANONYMOUS, not a file: a
	// memfd or tmpfs file would be shmem in the page cache), through
	// Sender.SendWithHeader with an empty body. Only the methods that can
	// send memory as themselves take it; MemoryNote says what each does.
	FromMemory Source = "memory"
)

// ReceiverMode says what the receiver does with the bytes.
type ReceiverMode string

const (
	// Read reads into a 1 MiB buffer per connection.
	Read ReceiverMode = "read"
	// Discard drops the bytes with recv(2) and MSG_TRUNC: no copy to user
	// space.
	Discard ReceiverMode = "discard"
	// Block reads into a 1 MiB buffer per connection, as Read does, but
	// waits in read(2) on a blocking descriptor, as a C receiver with a
	// thread per connection does, not in Go's netpoller. How the receiver
	// waits changes how fast sendfile(2) is: compare the methods against
	// each receiver, never across them.
	Block ReceiverMode = "block"
)

// Defaults.
const (
	DefaultTotal    = 1 << 30
	DefaultFileSize = 64 << 20
	DefaultConns    = 1
	DefaultRounds   = 5
	// PeerBufferSize is the buffer the peer writes from with --direction
	// receive: write(2) of it again and again.
	PeerBufferSize = 1 << 20
)

// Settings are the parameters of a run, as the command's flags give them.
// Report carries them back as its "config".
type Settings struct {
	// Direction is Send if empty.
	Direction Direction `json:"direction"`
	// Methods run in this order within each round; empty means
	// DefaultMethods(Direction).
	Methods []sendfile2.Method `json:"methods"`
	// Total is the number of bytes each method sends (or receives) per
	// round, split among the connections.
	Total int64 `json:"total"`
	// FileSize is the size of the file, or of the buffer with FromMemory.
	// Send only: zero with Receive.
	FileSize int64 `json:"file_size"`
	// SendSize bounds the bytes of each Send call; FileSize if zero. Send
	// only: zero with Receive.
	SendSize int64 `json:"send_size"`
	// BufferSize is sendfile2.Config.BufferSize for every Sender: the size
	// of each registered buffer, and so of each READ_FIXED and SEND_ZC of
	// the uring method. Zero leaves the Sender's default.
	BufferSize int `json:"buffer_size,omitempty"`
	// Conns is the number of connections, each sending Total/Conns bytes.
	Conns  int `json:"conns"`
	Rounds int `json:"rounds"`
	// Source is FromFile or FromMemory with Send; with Receive it is
	// FromMemory (the peer writes from a buffer of PeerBufferSize).
	Source Source `json:"source"`
	// Receiver is what the peer does with Send; empty with Receive.
	Receiver ReceiverMode `json:"receiver"`
	// Sync, with Receive, sets Config.Sync: each Receive returns only once
	// its file is on stable storage (fdatasync(2) semantics), inside the
	// measured time. Without it, the file's pages may still be dirty when
	// the round ends.
	Sync bool `json:"sync"`
	// Dir is where the files go (the file sent, or the files received), in
	// a temporary directory removed afterwards; os.TempDir() if empty.
	Dir string `json:"dir"`
	// Netns runs the sender and the receiver in two network namespaces
	// joined by a veth pair, created for the run and removed after it.
	// Needs root and iproute2's ip.
	Netns bool `json:"netns"`
	// JSON and Report record the command's output flags; Run ignores them.
	JSON   bool   `json:"json"`
	Report string `json:"report"`
}

// Config configures Run.
type Config struct {
	Settings
	// Planned, when set, is called once before the first round with the
	// number of bytes the run will send (or receive).
	Planned func(bytes int64)
	// Started, when set, is called before each method's turn in a round,
	// in the order they run.
	Started func(round int, m sendfile2.Method)
	// Sent, when set, is called with the bytes of each Send (or Receive)
	// call as it returns, from several goroutines at once.
	Sent func(n int64)
}

// Report is the outcome of a run: the object `sendfile2 bench --json` prints.
type Report struct {
	Machine Machine  `json:"machine"`
	Config  Settings `json:"config"`
	Results []Result `json:"results"`
}

// Machine describes where the run took place.
type Machine struct {
	Kernel string `json:"kernel"`
	CPUs   int    `json:"cpus"`
	Go     string `json:"go"`
	Date   string `json:"date"` // RFC 3339, UTC, when the run started
	// Transport is "tcp over loopback" or "tcp over veth (two network
	// namespaces)".
	Transport string `json:"transport"`
	// FileSystem is the file system of the file, with FromFile, or of the
	// files received, with Receive.
	FileSystem string `json:"file_system,omitempty"`
}

// Status values of a Result.
const (
	StatusOK          = "ok"
	StatusUnavailable = "unavailable" // the kernel or the source cannot do it here
	StatusFailed      = "failed"      // it started and then failed
)

// Result is one method's line. The measured fields are null for a method
// that did not complete a round.
//
// The CPU fields name a role, not a process: with Send the sender is this
// process and the receiver the peer; with Receive the sender is the peer
// (write(2) from memory) and the receiver this process, which Receive runs
// in.
type Result struct {
	Method sendfile2.Method `json:"method"`
	// Resolved is what auto resolved to: Sender.Method when sending; when
	// receiving, the method that received every byte (Stats), if only one
	// did.
	Resolved sendfile2.Method `json:"resolved,omitempty"`
	// Safe is Method.Safe() with Send; with Receive it is true: a Receive
	// that returned leaves the kernel no reference to anything of the
	// caller's.
	Safe      bool   `json:"safe"`
	Available bool   `json:"available"`
	Status    string `json:"status"`
	Error     string `json:"error,omitempty"`
	// Source says what this method sent from; with Receive, how it
	// receives and into what.
	Source string `json:"source"`

	GBpsMedian *float64 `json:"gbps_median"` // GB = 1e9 bytes
	GBpsMin    *float64 `json:"gbps_min"`
	GBpsMax    *float64 `json:"gbps_max"`
	// CPUSPerGiB is the median over rounds of the sender's user+system CPU
	// seconds per GiB sent.
	CPUSPerGiB *float64 `json:"cpu_s_per_gib"`
	// ReceiverCPUSPerGiB is the same for the receiver.
	ReceiverCPUSPerGiB *float64 `json:"receiver_cpu_s_per_gib"`
	// CacheGrowthMiB is the median over rounds of the growth of Cached in
	// /proc/meminfo during a round, in MiB (2^20 bytes), with Receive; null
	// with Send. See Round.CacheGrowthMiB.
	CacheGrowthMiB *float64 `json:"cache_growth_mib"`
	// CopiedFraction is CopiedBytes/(ZeroCopyBytes+CopiedBytes) over all
	// rounds, from Sender.Stats: null when the method reports neither.
	CopiedFraction *float64 `json:"copied_fraction"`
	// GBpsVsSendfile and CPUVsSendfile divide this method's medians by
	// those of the sendfile baseline of the same run, when it ran.
	GBpsVsSendfile *float64 `json:"gbps_vs_sendfile"`
	CPUVsSendfile  *float64 `json:"cpu_vs_sendfile"`
	// BytesByMethod splits the bytes sent by the method that sent them
	// (auto sends with uring or copy).
	BytesByMethod map[sendfile2.Method]int64 `json:"bytes_by_method,omitempty"`
	// Fallbacks counts Stats.Fallbacks over the rounds.
	Fallbacks int64   `json:"fallbacks"`
	Rounds    []Round `json:"rounds"`
}

// Round is one method's measurement in one round.
type Round struct {
	Round int   `json:"round"`
	Bytes int64 `json:"bytes"`
	// Sends is the number of Send calls (Receive calls with Receive).
	Sends   int64   `json:"sends"`
	Seconds float64 `json:"seconds"`
	GBps    float64 `json:"gbps"`
	// CPUUser and CPUSys are the sender's CPU seconds.
	CPUUser    float64 `json:"cpu_user_s"`
	CPUSys     float64 `json:"cpu_sys_s"`
	CPUSPerGiB float64 `json:"cpu_s_per_gib"`
	// ReceiverCPU is the receiver's user+system CPU seconds, and
	// ReceiverCPUUser and ReceiverCPUSys its two parts.
	ReceiverCPU     float64 `json:"receiver_cpu_s"`
	ReceiverCPUUser float64 `json:"receiver_cpu_user_s"`
	ReceiverCPUSys  float64 `json:"receiver_cpu_sys_s"`
	// CacheGrowthMiB, with Receive, is Cached of /proc/meminfo when every
	// Receive of the round has returned minus Cached before the first
	// began, in MiB; null with Send. Cached counts the pages of the files
	// received that are dirty or under writeback too, and whatever else the
	// machine cached or dropped meanwhile.
	CacheGrowthMiB *float64                   `json:"cache_growth_mib"`
	ZeroCopyBytes  int64                      `json:"zerocopy_bytes"`
	CopiedBytes    int64                      `json:"copied_bytes"`
	CopiedFraction *float64                   `json:"copied_fraction"`
	BytesByMethod  map[sendfile2.Method]int64 `json:"bytes_by_method,omitempty"`
	Fallbacks      int64                      `json:"fallbacks"`
}

// AllMethods is the default method list: every method, then auto.
func AllMethods() []sendfile2.Method { return append(sendfile2.Methods(), sendfile2.Auto) }

// ReceiveMethods is the default method list with Receive: the methods that
// receive in a way of their own, uring twice (without and with
// RWF_DONTCACHE), then auto.
func ReceiveMethods() []sendfile2.Method {
	return []sendfile2.Method{sendfile2.URing, URingDontCache, sendfile2.Copy, sendfile2.Splice, sendfile2.Auto}
}

// DefaultMethods is the method list of a run in direction d: AllMethods for
// Send, ReceiveMethods for Receive.
func DefaultMethods(d Direction) []sendfile2.Method {
	if d == Receive {
		return ReceiveMethods()
	}
	return AllMethods()
}

// ParseDirection parses "send" or "receive".
func ParseDirection(s string) (Direction, error) {
	switch d := Direction(s); d {
	case Send, Receive:
		return d, nil
	}
	return "", fmt.Errorf("bench: direction %q: want send or receive", s)
}

// parseMethod is sendfile2.ParseMethod, and URingDontCache.
func parseMethod(s string) (sendfile2.Method, error) {
	if sendfile2.Method(s) == URingDontCache {
		return URingDontCache, nil
	}
	return sendfile2.ParseMethod(s)
}

// withDefaults fills in the zero values and checks the settings.
func (c Config) withDefaults() (Config, error) {
	if c.Direction == "" {
		c.Direction = Send
	}
	if _, err := ParseDirection(string(c.Direction)); err != nil {
		return c, err
	}
	if len(c.Methods) == 0 {
		c.Methods = DefaultMethods(c.Direction)
	}
	for i, m := range c.Methods {
		if _, err := parseMethod(string(m)); err != nil {
			return c, err
		}
		if slices.Contains(c.Methods[:i], m) {
			return c, fmt.Errorf("bench: method %q listed twice", m)
		}
		if m == URingDontCache && c.Direction != Receive {
			return c, fmt.Errorf("bench: %s is a receive entry (direction receive)", m)
		}
	}
	if c.Dir == "" {
		c.Dir = os.TempDir()
	}
	if c.Total == 0 {
		c.Total = DefaultTotal
	}
	if c.Conns == 0 {
		c.Conns = DefaultConns
	}
	if c.Rounds == 0 {
		c.Rounds = DefaultRounds
	}
	if c.Direction == Receive {
		switch {
		case c.FileSize != 0 || c.SendSize != 0:
			return c, errors.New("bench: file size and send size are send settings: with direction receive the peer writes from a buffer of its own")
		case c.Source != "" && c.Source != FromMemory:
			return c, fmt.Errorf("bench: source %q is a send setting: with direction receive the peer writes from memory", c.Source)
		case c.Receiver != "":
			return c, fmt.Errorf("bench: receiver %q is a send setting: with direction receive this process receives, with Sender.Receive", c.Receiver)
		}
		c.Source = FromMemory
		return c, c.checkCommon()
	}
	if c.Sync {
		return c, errors.New("bench: sync is a receive setting (direction receive)")
	}
	if c.FileSize == 0 {
		c.FileSize = DefaultFileSize
	}
	if c.SendSize == 0 {
		c.SendSize = c.FileSize
	}
	if c.Source == "" {
		c.Source = FromFile
	}
	if c.Receiver == "" {
		c.Receiver = Read
	}
	switch {
	case c.FileSize < 1 || c.SendSize < 1:
		return c, errors.New("bench: sizes must be positive")
	case c.SendSize > c.FileSize:
		return c, fmt.Errorf("bench: send size %s is larger than the file size %s", bytesize.Format(c.SendSize), bytesize.Format(c.FileSize))
	case c.Source != FromFile && c.Source != FromMemory:
		return c, fmt.Errorf("bench: source %q: want file or memory", c.Source)
	case c.Receiver != Read && c.Receiver != Discard && c.Receiver != Block:
		return c, fmt.Errorf("bench: receiver %q: want read, discard or block", c.Receiver)
	}
	return c, c.checkCommon()
}

// checkCommon checks the settings of both directions.
func (c Config) checkCommon() error {
	switch {
	case c.Total < 1:
		return errors.New("bench: sizes must be positive")
	case c.Conns < 1 || c.Conns > 4096:
		return fmt.Errorf("bench: %d connections: want 1 to 4096", c.Conns)
	case c.Total < int64(c.Conns):
		return fmt.Errorf("bench: total %d bytes is less than one byte per connection (%d)", c.Total, c.Conns)
	case c.Rounds < 1:
		return fmt.Errorf("bench: %d rounds: want at least 1", c.Rounds)
	case c.BufferSize != 0 && (c.BufferSize < 4096 || c.BufferSize%4096 != 0):
		return fmt.Errorf("bench: buffer size %d: want a multiple of 4 KiB", c.BufferSize)
	}
	return nil
}

// MemoryNote says what FromMemory means for method m, and whether m can
// send from memory at all: if not, the note says why.
func MemoryNote(m sendfile2.Method) (note string, ok bool) {
	const via = "an anonymous mapping, sent with Sender.SendWithHeader and an empty body: "
	switch m {
	case sendfile2.Copy:
		return via + "send(2) copies it into the socket (sends up to 128 KiB are first copied into the Sender's buffer: one memcpy more)", true
	case sendfile2.URing:
		return via + "the Sender copies it (memcpy) into its registered buffers and sends those with IORING_OP_SEND_ZC; unlike liburing's send-zerocopy, which sends its registered buffer without that copy", true
	case sendfile2.Auto:
		return via + "by the method auto picks for each send (uring, or copy for small sends and for routes that copy)", true
	case sendfile2.URingMmap:
		return "unavailable from memory: uring-mmap sends a file's own pages from a mapping of the file; memory handed to the Sender (a header) goes out with a copying IORING_OP_SEND, which is not this method", false
	case sendfile2.MsgZC:
		return "unavailable from memory: msgzc sends from a mapping of the file; memory handed to the Sender (a header) goes out with a plain copying send(2), which is not this method", false
	case sendfile2.Sendfile, sendfile2.Splice:
		return "unavailable from memory: " + string(m) + "(2) takes a file descriptor; a memfd or tmpfs file would be shmem in the page cache, not memory", false
	}
	return "unavailable from memory: unknown method", false
}

// ReceiveNote says how method m receives with Sender.Receive, and whether it
// is a receive method of its own: if not, the note says why.
func ReceiveNote(m sendfile2.Method) (note string, ok bool) {
	switch m {
	case sendfile2.URing:
		return "IORING_OP_RECV into the Sender's registered buffers, then IORING_OP_WRITE_FIXED", true
	case URingDontCache:
		return "as uring, with RWF_DONTCACHE on the writes (Config.DontCache): the kernel starts writeback with each write and drops the pages when it completes", true
	case sendfile2.Copy:
		return "recv(2) into a 256 KiB buffer, then pwrite(2)", true
	case sendfile2.Splice:
		return "splice(2) from the socket into a pipe, then from the pipe into the file", true
	case sendfile2.Auto:
		return "by the method auto receives with (splice; uring with Config.DontCache, which this entry does not set)", true
	case sendfile2.URingMmap, sendfile2.MsgZC, sendfile2.Sendfile:
		return "unavailable for receive: Sender.Receive has no way of " + string(m) + "'s own and receives with copy, which copy measures", false
	}
	return "unavailable for receive: unknown method", false
}

// receiveNote is ReceiveNote with where the bytes go.
func receiveNote(m sendfile2.Method, fs string, sync bool) string {
	note, _ := ReceiveNote(m)
	if fs == "" {
		fs = "unknown file system"
	}
	note += ", into a new file per connection on " + fs
	if sync {
		note += ", then fdatasync (Config.Sync)"
	}
	return note
}

// fileNote says what FromFile means.
func fileNote(size int64, fs string) string {
	if fs == "" {
		fs = "unknown file system"
	}
	return fmt.Sprintf("a file of %s on %s, in the page cache (read once before the first round)", bytesize.Format(size), fs)
}

const gib = 1 << 30

// summarize fills in r's aggregates from its rounds.
func (r *Result) summarize() {
	if len(r.Rounds) == 0 {
		return
	}
	var gbps, cpu, rcpu, cache []float64
	var zc, copied int64
	r.BytesByMethod = map[sendfile2.Method]int64{}
	for _, rd := range r.Rounds {
		gbps = append(gbps, rd.GBps)
		cpu = append(cpu, rd.CPUSPerGiB)
		rcpu = append(rcpu, rd.ReceiverCPU/(float64(rd.Bytes)/gib))
		if rd.CacheGrowthMiB != nil {
			cache = append(cache, *rd.CacheGrowthMiB)
		}
		zc += rd.ZeroCopyBytes
		r.Fallbacks += rd.Fallbacks
		copied += rd.CopiedBytes
		for m, n := range rd.BytesByMethod {
			r.BytesByMethod[m] += n
		}
	}
	if r.Method == sendfile2.Auto && r.Resolved == "" && len(r.BytesByMethod) == 1 {
		for m := range r.BytesByMethod {
			r.Resolved = m
		}
	}
	r.GBpsMedian = ptr(median(gbps))
	r.GBpsMin = ptr(slices.Min(gbps))
	r.GBpsMax = ptr(slices.Max(gbps))
	r.CPUSPerGiB = ptr(median(cpu))
	r.ReceiverCPUSPerGiB = ptr(median(rcpu))
	r.CopiedFraction = fraction(zc, copied)
	if len(cache) > 0 {
		r.CacheGrowthMiB = ptr(median(cache))
	}
}

// compare fills in the ratios against the sendfile baseline.
func compare(results []Result) {
	i := slices.IndexFunc(results, func(r Result) bool { return r.Method == sendfile2.Sendfile })
	if i < 0 || results[i].GBpsMedian == nil {
		return
	}
	base := results[i]
	for j := range results {
		r := &results[j]
		if r.GBpsMedian == nil {
			continue
		}
		if *base.GBpsMedian > 0 {
			r.GBpsVsSendfile = ptr(*r.GBpsMedian / *base.GBpsMedian)
		}
		if *base.CPUSPerGiB > 0 {
			r.CPUVsSendfile = ptr(*r.CPUSPerGiB / *base.CPUSPerGiB)
		}
	}
}

func fraction(zc, copied int64) *float64 {
	if zc+copied == 0 {
		return nil
	}
	return ptr(float64(copied) / float64(zc+copied))
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func ptr[T any](v T) *T { return &v }
