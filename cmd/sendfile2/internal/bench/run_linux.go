package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2"
)

// Run measures every method of cfg, round by round, and returns the report.
// A method that this kernel, process or source cannot run is reported
// unavailable; one that fails during a round is reported failed and left
// out of later rounds. Run returns an error only for what stops the whole
// run: bad settings, the setup (file, namespaces, peer process), or ctx. It
// removes what it created (files, namespaces, peer) before it returns, also
// then.
//
// With Receive, the peer process sends and this process receives each
// connection with Sender.Receive into a new file, which it removes at the end
// of the round.
func Run(ctx context.Context, cfg Config) (_ *Report, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	receive := cfg.Direction == Receive
	rep := &Report{Config: cfg.Settings, Machine: Machine{
		Kernel:    kernelRelease(),
		CPUs:      runtime.NumCPU(),
		Go:        runtime.Version(),
		Date:      time.Now().UTC().Format(time.RFC3339),
		Transport: "tcp over loopback",
	}}
	rep.Config.Methods = cfg.Methods
	if cfg.Netns {
		rep.Machine.Transport = "tcp over veth (two network namespaces)"
	}

	dir, err := os.MkdirTemp(cfg.Dir, "sendfile2-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	b := &bench{cfg: cfg, dir: dir}
	if !receive {
		if err := b.prepareSource(dir); err != nil {
			return nil, err
		}
		defer b.closeSource()
	}
	if cfg.Source == FromFile || receive {
		rep.Machine.FileSystem = fsName(dir)
	}

	host := "127.0.0.1"
	var peerNs string
	if cfg.Netns {
		ns, err := setupNetns()
		if err != nil {
			return nil, err
		}
		defer ns.remove()
		host, b.localNs, peerNs = vethReceiverAddr, ns.path(ns.sender), ns.path(ns.receiver)
	}
	b.peer, err = startPeer(host, peerNs, cfg.Receiver, receive)
	if err != nil {
		return nil, err
	}
	defer b.peer.stop()

	runs := make([]*methodRun, len(cfg.Methods))
	active := 0
	for i, m := range cfg.Methods {
		runs[i] = newMethodRun(m, cfg, rep.Machine.FileSystem)
		if runs[i].s != nil {
			defer runs[i].s.Close()
			active++
		}
	}
	if cfg.Planned != nil {
		cfg.Planned(int64(active) * int64(cfg.Rounds) * cfg.Total)
	}

	if err := b.rounds(ctx, runs); err != nil {
		return nil, err
	}
	for _, mr := range runs {
		mr.res.summarize()
		rep.Results = append(rep.Results, mr.res)
	}
	compare(rep.Results)
	return rep, nil
}

// newMethodRun makes the Sender of method m, or says in its result why m
// cannot run; fs is the file system the files are on.
func newMethodRun(m sendfile2.Method, cfg Config, fs string) *methodRun {
	mr := &methodRun{res: Result{Method: m, Safe: m.Safe(), Rounds: []Round{}}}
	scfg := sendfile2.Config{Method: m, BufferSize: cfg.BufferSize}
	switch {
	case cfg.Direction == Receive:
		mr.res.Safe = true
		mr.res.Source = receiveNote(m, fs, cfg.Sync)
		if note, ok := ReceiveNote(m); !ok {
			mr.res.Status, mr.res.Error = StatusUnavailable, note
			return mr
		}
		scfg.Sync = cfg.Sync
		if m == URingDontCache {
			scfg.Method, scfg.DontCache = sendfile2.URing, true
		}
	case cfg.Source == FromMemory:
		note, ok := MemoryNote(m)
		mr.res.Source = note
		if !ok {
			mr.res.Status, mr.res.Error = StatusUnavailable, note
			return mr
		}
	default:
		mr.res.Source = fileNote(cfg.FileSize, fs)
	}
	s, err := sendfile2.NewSender(scfg)
	if err != nil {
		mr.res.Status, mr.res.Error = StatusUnavailable, err.Error()
		if !errors.Is(err, sendfile2.ErrNotSupported) {
			mr.res.Status = StatusFailed
		}
		return mr
	}
	mr.s = s
	mr.res.Available, mr.res.Status = true, StatusOK
	if m == sendfile2.Auto && cfg.Direction != Receive {
		mr.res.Resolved = s.Method() // a receive's is in its Stats: see summarize
	}
	return mr
}

// rounds runs cfg.Rounds rounds of every method that can run, in turn. A
// method that fails is left out of the later rounds; only ctx's end stops
// them all.
func (b *bench) rounds(ctx context.Context, runs []*methodRun) error {
	cfg := b.cfg
	receive := cfg.Direction == Receive
	for round := 1; round <= cfg.Rounds; round++ {
		for _, mr := range runs {
			if mr.s == nil || mr.res.Status != StatusOK {
				continue
			}
			if cfg.Started != nil {
				cfg.Started(round, mr.res.Method)
			}
			var rd Round
			var err error
			if receive {
				rd, err = b.receiveRound(ctx, mr.s, round)
			} else {
				rd, err = b.round(ctx, mr.s, round)
			}
			if ctx.Err() != nil {
				return fmt.Errorf("bench: %w", context.Cause(ctx))
			}
			if err != nil {
				mr.res.Status, mr.res.Error = StatusFailed, fmt.Sprintf("round %d: %v", round, err)
				continue
			}
			mr.res.Rounds = append(mr.res.Rounds, rd)
		}
	}
	return nil
}

type methodRun struct {
	s   *sendfile2.Sender
	res Result
}

// bench is one run's shared state.
type bench struct {
	cfg  Config
	dir  string   // the run's temporary directory
	file *os.File // Send: the file, or with FromMemory an empty file for SendWithHeader
	mem  []byte   // Send, FromMemory: the anonymous mapping
	peer *peer
	// localNs is the network namespace this process dials from, with
	// Netns (the "sender" one of the pair, whichever way the bytes go).
	localNs string
}

// prepareSource creates the file (and reads it once, so that it is in the
// page cache) or the anonymous mapping (and touches every page).
func (b *bench) prepareSource(dir string) error {
	f, err := os.Create(filepath.Join(dir, "data"))
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	b.file = f
	size := b.cfg.FileSize
	if b.cfg.Source == FromMemory {
		mem, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return fmt.Errorf("bench: buffer: %w", os.NewSyscallError("mmap", err))
		}
		b.mem = mem
		fill(mem, 0)
		return nil
	}
	chunk := make([]byte, min(size, 1<<20))
	for off := int64(0); off < size; off += int64(len(chunk)) {
		p := chunk[:min(int64(len(chunk)), size-off)]
		fill(p, off)
		if _, err := f.WriteAt(p, off); err != nil {
			return fmt.Errorf("bench: write file: %w", err)
		}
	}
	for off := int64(0); off < size; off += int64(len(chunk)) {
		if _, err := f.ReadAt(chunk[:min(int64(len(chunk)), size-off)], off); err != nil {
			return fmt.Errorf("bench: read file: %w", err)
		}
	}
	return nil
}

func (b *bench) closeSource() {
	if b.mem != nil {
		unix.Munmap(b.mem)
		b.mem = nil
	}
	b.file.Close()
}

// fill writes a pattern that differs from page to page (no zero pages, no
// compressible runs that some layer might shortcut).
func fill(p []byte, off int64) {
	for i := range p {
		x := uint64(off) + uint64(i)
		p[i] = byte(x ^ x>>8 ^ x>>16 ^ x>>24)
	}
}

// round sends Total bytes with s over Conns fresh connections and measures.
func (b *bench) round(ctx context.Context, s *sendfile2.Sender, round int) (Round, error) {
	cfg := b.cfg
	conns, err := dial(ctx, b.peer.addr, b.localNs, cfg.Conns)
	if err != nil {
		return Round{}, err
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	st0 := s.Stats()
	m, err := b.measure(ctx, func(ctx context.Context, i int, share int64) error {
		// Connections start at different places in the file, page aligned.
		off := (int64(i) * cfg.FileSize / int64(cfg.Conns)) &^ 4095
		return b.sendShare(ctx, s, conns[i], off, share)
	})
	st1 := s.Stats()
	if err != nil {
		return Round{}, err
	}
	rd := m.round(round, cfg.Total, m.self, m.peer)
	rd.count(st0, st1, false)
	return rd, nil
}

// measurement is what measure saw: the seconds a round took, and the CPU
// seconds this process and the peer used meanwhile.
type measurement struct {
	seconds    float64
	self, peer cpuTime
}

type cpuTime struct{ user, sys float64 }

// measure runs fn for every connection at once, each with its share of
// Total (the first Total%Conns connections one byte more), and measures.
func (b *bench) measure(ctx context.Context, fn func(ctx context.Context, i int, share int64) error) (measurement, error) {
	cfg := b.cfg
	pu0, ps0, err := b.peer.cpu()
	if err != nil {
		return measurement{}, err
	}
	u0, s0 := rusage(unix.RUSAGE_SELF)
	start := time.Now()

	g, gctx := errgroup.WithContext(ctx)
	per, extra := cfg.Total/int64(cfg.Conns), cfg.Total%int64(cfg.Conns)
	for i := range cfg.Conns {
		share := per
		if int64(i) < extra {
			share++
		}
		g.Go(func() error { return fn(gctx, i, share) })
	}
	err = g.Wait()
	elapsed := time.Since(start).Seconds()
	u1, s1 := rusage(unix.RUSAGE_SELF)
	if err != nil {
		return measurement{}, err
	}
	pu1, ps1, err := b.peer.cpu()
	if err != nil {
		return measurement{}, err
	}
	return measurement{
		seconds: elapsed,
		self:    cpuTime{u1 - u0, s1 - s0},
		peer:    cpuTime{pu1 - pu0, ps1 - ps0},
	}, nil
}

// round is the Round of bytes moved in m, with the CPU of the sending and
// the receiving side.
func (m measurement) round(round int, bytes int64, sender, receiver cpuTime) Round {
	rd := Round{
		Round:           round,
		Bytes:           bytes,
		Seconds:         m.seconds,
		GBps:            float64(bytes) / m.seconds / 1e9,
		CPUUser:         sender.user,
		CPUSys:          sender.sys,
		ReceiverCPUUser: receiver.user,
		ReceiverCPUSys:  receiver.sys,
	}
	rd.ReceiverCPU = rd.ReceiverCPUUser + rd.ReceiverCPUSys
	rd.CPUSPerGiB = (rd.CPUUser + rd.CPUSys) / (float64(bytes) / gib)
	return rd
}

// count fills in rd's counters from the Sender's Stats before and after the
// round: those of Send, or with received those of Receive.
func (rd *Round) count(st0, st1 sendfile2.Stats, received bool) {
	rd.BytesByMethod = map[sendfile2.Method]int64{}
	rd.Fallbacks = st1.Fallbacks - st0.Fallbacks
	for m, a := range st1.Methods {
		z := st0.Methods[m]
		n := a.Bytes - z.Bytes
		if received {
			rd.Sends += a.Receives - z.Receives
			n = a.Received - z.Received
		} else {
			rd.ZeroCopyBytes += a.ZeroCopyBytes - z.ZeroCopyBytes
			rd.CopiedBytes += a.CopiedBytes - z.CopiedBytes
			rd.Sends += a.Sends - z.Sends
		}
		if n > 0 {
			rd.BytesByMethod[m] = n
		}
	}
	rd.CopiedFraction = fraction(rd.ZeroCopyBytes, rd.CopiedBytes)
}

// receiveRound has the peer send Total bytes over Conns fresh connections
// and receives each into a new file with s.Receive, and measures: the
// throughput, this process's CPU (the receiver's), the peer's (the
// sender's) and how much Cached of /proc/meminfo grew from before the first
// Receive to after the last returned. Then it removes the files.
func (b *bench) receiveRound(ctx context.Context, s *sendfile2.Sender, round int) (_ Round, err error) {
	cfg := b.cfg
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
			if rerr := os.Remove(f.Name()); rerr != nil && err == nil {
				err = rerr
			}
		}
	}()
	for i := range cfg.Conns {
		f, err := os.OpenFile(filepath.Join(b.dir, fmt.Sprintf("received-%d", i)), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return Round{}, err
		}
		files = append(files, f)
	}
	conns, err := dial(ctx, b.peer.addr, b.localNs, cfg.Conns)
	if err != nil {
		return Round{}, err
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	st0 := s.Stats()
	cached0, err := cached()
	if err != nil {
		return Round{}, err
	}
	m, err := b.measure(ctx, func(ctx context.Context, i int, share int64) error {
		return b.receiveShare(ctx, s, conns[i], files[i], share)
	})
	st1 := s.Stats()
	if err != nil {
		return Round{}, err
	}
	cached1, err := cached()
	if err != nil {
		return Round{}, err
	}
	rd := m.round(round, cfg.Total, m.peer, m.self)
	rd.CacheGrowthMiB = ptr(float64(cached1-cached0) / (1 << 20))
	rd.count(st0, st1, true)
	return rd, nil
}

// receiveShare asks the peer for share bytes on c and receives them into f
// from offset 0 with one Receive, as a server receives an upload of known
// length.
func (b *bench) receiveShare(ctx context.Context, s *sendfile2.Sender, c *net.TCPConn, f *os.File, share int64) error {
	var req [8]byte
	binary.BigEndian.PutUint64(req[:], uint64(share))
	if _, err := c.Write(req[:]); err != nil {
		return fmt.Errorf("ask the peer: %w", err)
	}
	n, err := s.Receive(ctx, c, f, 0, share)
	if b.cfg.Sent != nil && n > 0 {
		b.cfg.Sent(n)
	}
	if err != nil {
		return err
	}
	if n != share {
		return fmt.Errorf("received %d of %d bytes without an error", n, share)
	}
	return nil
}

// cached is Cached of /proc/meminfo, in bytes: the page cache, with its
// dirty pages and those under writeback (and shmem).
func cached() (int64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	n, err := parseMeminfo(data, "Cached")
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	return n, nil
}

// sendShare sends share bytes on c, from off in the file (or buffer) on,
// wrapping around at its end, in Send calls of at most SendSize bytes. Then
// it shuts down its side of c and waits for the receiver's count: the round
// is over for c when the receiver has everything.
func (b *bench) sendShare(ctx context.Context, s *sendfile2.Sender, c *net.TCPConn, off, share int64) error {
	cfg := b.cfg
	for sent := int64(0); sent < share; {
		n := min(cfg.SendSize, share-sent, cfg.FileSize-off)
		var k int64
		var err error
		if b.mem != nil {
			k, err = s.SendWithHeader(ctx, c, b.mem[off:off+n], b.file, 0, 0)
		} else {
			k, err = s.Send(ctx, c, b.file, off, n)
		}
		if cfg.Sent != nil && k > 0 {
			cfg.Sent(k)
		}
		if err != nil {
			return err
		}
		if k != n {
			return fmt.Errorf("send returned %d of %d bytes without an error", k, n)
		}
		sent += n
		if off += n; off == cfg.FileSize {
			off = 0
		}
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()
	var ack [8]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return fmt.Errorf("receiver's count: %w", err)
	}
	if got := int64(binary.BigEndian.Uint64(ack[:])); got != share {
		return fmt.Errorf("the receiver got %d bytes of %d", got, share)
	}
	return nil
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// fsName names the file system that holds path.
func fsName(path string) string {
	var st unix.Statfs_t
	if unix.Statfs(path, &st) != nil {
		return ""
	}
	switch st.Type {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	case unix.F2FS_SUPER_MAGIC:
		return "f2fs"
	}
	return fmt.Sprintf("file system %#x", st.Type)
}
