//go:build linux

package sendfile2_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/internal/testutil"
)

// The soak test's shape: soakConns connections on one Sender, soakFiles
// files from soakMinFile to soakMaxFile bytes (about 40 MiB in all).
const (
	soakConns   = 1000
	soakFiles   = 64
	soakMinFile = 4 << 10
	soakMaxFile = 4 << 20

	// One connection in soakSmallEvery has a small receive buffer
	// (SO_RCVBUF, which the kernel doubles), so that most of a send of
	// hundreds of KiB or more waits in the sender's queue. Not smaller: at
	// 4 KiB, connections whose receiver paused stayed on a window below
	// the MSS, sent only by window probes (persist timer, about 10 KB/s),
	// and the phase stalled.
	soakSmallEvery  = 8
	soakSmallRcvBuf = 64 << 10
	// A receiver holds back on one send in soakHoldEvery, after reading a
	// part of it, for 1 ms to soakHoldMax; then, if the whole rest of the
	// send is in the kernel (in the sending socket's queue or the
	// receiving one's), for up to soakHoldExtend more: a method that
	// returned before the kernel let go of the data would return then.
	// When Send returns during the hold, the receiver also waits (up to
	// soakOverwriteWait) for the file to be overwritten before it reads the
	// rest: bytes the kernel still took from the file would then read the
	// new contents.
	soakHoldEvery     = 4
	soakHoldMax       = 20 * time.Millisecond
	soakHoldExtend    = 100 * time.Millisecond
	soakOverwriteWait = 100 * time.Millisecond

	// soakGrace bounds how long a phase may run past its duration (sends
	// in flight, receivers draining) before its sends and reads fail.
	soakGrace = 30 * time.Second
	// soakSettle bounds the wait for goroutines, descriptors and buffers to
	// come back after a phase.
	soakSettle = 10 * time.Second
	// soakOverwriters is the number of goroutines that overwrite files.
	soakOverwriters = 4

	// soakMaxRSS bounds the peak resident memory of the process during a
	// phase (VmHWM, reset at the start of each phase, and the sampled
	// VmRSS), soakMaxAnon its anonymous part (RssAnon: the Go heap and
	// stacks, the registered buffers). Measured on the machine of
	// docs/RELIABILITY.md (2 vCPU, 24 GiB) with 15-second phases: VmHWM 131 MiB
	// (uring), 543 MiB (uring-mmap), 806 MiB (msgzc), 530 MiB (auto), and
	// RssAnon at most 170 MiB. The rest is RssFile: the pages of the files
	// that uring-mmap, msgzc and copy map and the kernel reads, counted once
	// per mapping; up to 4 MiB per send in flight, 4 GiB in theory for 1000
	// sends, about 660 MiB seen. The bounds leave 2.5 and 3 times the
	// measured peaks: a mapping or a buffer leaked per send (tens of
	// thousands of sends per phase) crosses them within seconds, while the
	// collector's and the scheduler's noise does not. Not checked under
	// -race, whose shadow memory counts in RssAnon.
	soakMaxRSS  = 2 << 30
	soakMaxAnon = 512 << 20
)

// TestSoak sends random ranges of 64 files over 1000 loopback connections on
// one Sender, while other goroutines overwrite the files in place as soon as
// the sends of a file return, and checks every byte received against the
// file's contents when its send was called. A method that returned while the
// kernel still referenced the file's pages (or a registered buffer lent
// again) would deliver overwritten bytes. It also checks that the phase gives
// back every file descriptor, goroutine and registered buffer, and that
// resident memory stays bounded.
//
// It runs only when SENDFILE2_SOAK is set to a duration, split among the
// methods: uring, uring-mmap, msgzc and auto, or the comma-separated list in
// SENDFILE2_SOAK_METHODS. SENDFILE2_SOAK_BASELINE=1 adds a short phase with
// sendfile, the unsafe baseline, under the same checks: it corrupts, so the
// test then fails by design, showing that the soak can fail.
func TestSoak(t *testing.T) {
	v := os.Getenv("SENDFILE2_SOAK")
	if v == "" {
		t.Skip("soak test: set SENDFILE2_SOAK to a duration (such as SENDFILE2_SOAK=60s) to run it")
	}
	total, err := time.ParseDuration(v)
	if err != nil || total <= 0 {
		t.Fatalf("SENDFILE2_SOAK=%q: want a positive duration such as 60s", v)
	}
	methods := []sendfile2.Method{sendfile2.URing, sendfile2.URingMmap, sendfile2.MsgZC, sendfile2.Auto}
	if list := os.Getenv("SENDFILE2_SOAK_METHODS"); list != "" {
		methods = nil
		for name := range strings.SplitSeq(list, ",") {
			m, err := sendfile2.ParseMethod(strings.TrimSpace(name))
			if err != nil {
				t.Fatalf("SENDFILE2_SOAK_METHODS: %v", err)
			}
			methods = append(methods, m)
		}
	}
	phase := total / time.Duration(len(methods))
	type run struct {
		m sendfile2.Method
		d time.Duration
	}
	var runs []run
	for _, m := range methods {
		runs = append(runs, run{m, phase})
	}
	if os.Getenv("SENDFILE2_SOAK_BASELINE") == "1" {
		runs = append(runs, run{sendfile2.Sendfile, min(phase, 5*time.Second)})
	}

	checkSoakContent(t)
	soakNoFile(t)
	files := newSoakFiles(t, t.TempDir())
	start := time.Now()
	ran := 0
	for _, r := range runs {
		// A phase that hangs takes at most this long to fail; leave the
		// next phases out rather than let -timeout kill the test before it
		// has reported.
		worst := r.d + 2*soakGrace + 2*soakSettle + 10*time.Second
		if end, ok := t.Deadline(); ok && time.Until(end) < worst {
			t.Errorf("phases from %s on left out: %v left before the test's deadline, a phase may take %v", r.m, time.Until(end).Round(time.Second), worst)
			break
		}
		t.Run(string(r.m), func(t *testing.T) { soakPhase(t, r.m, r.d, files) })
		ran++
	}
	t.Logf("soak: %d of %d phases in %v", ran, len(runs), time.Since(start).Round(time.Millisecond))
}

// soakNoFile makes sure the process may open the descriptors of the soak:
// both ends of every connection, and per send in flight a duplicate of the
// socket and a private epoll instance, with margin. Since Go 1.19 the
// runtime raises the soft RLIMIT_NOFILE at start-up (to the hard limit - 1
// in Go 1.26); raise it to the hard limit here only if that is not enough.
func soakNoFile(t *testing.T) {
	t.Helper()
	const need = 6*soakConns + 2*soakFiles + 256
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(os.NewSyscallError("getrlimit", err))
	}
	soft := lim.Cur
	if lim.Cur < need && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(os.NewSyscallError("setrlimit", err))
		}
	}
	if lim.Cur < need {
		t.Fatalf("RLIMIT_NOFILE is %d (hard limit %d): the soak test needs %d descriptors for %d connections; raise the hard limit (ulimit -Hn)",
			lim.Cur, lim.Max, need, soakConns)
	}
	t.Logf("RLIMIT_NOFILE: soft %d at test start, now %d (hard %d); the soak needs %d", soft, lim.Cur, lim.Max, need)
}

// Contents. Version v of file i holds the bytes of soakWord(soakKey(i, v), j)
// for its words j, little-endian: any range of any version can be
// regenerated, so a receiver checks what it reads against the snapshot of
// a send (file, version, range) without a copy of the data.

// soakWord is splitmix64 of word j of the stream with key k.
func soakWord(k, j uint64) uint64 {
	z := k + (j+1)*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func soakKey(file int, version uint64) uint64 {
	return soakWord(0x50a6, uint64(file)<<40^version)
}

// soakByte is the byte at offset p of the stream with key k.
func soakByte(k uint64, p int64) byte { return byte(soakWord(k, uint64(p/8)) >> (8 * (p % 8))) }

// soakFill fills dst with the stream with key k from offset off.
func soakFill(dst []byte, k uint64, off int64) {
	i := 0
	for ; i < len(dst) && (off+int64(i))%8 != 0; i++ {
		dst[i] = soakByte(k, off+int64(i))
	}
	for ; i+8 <= len(dst); i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], soakWord(k, uint64(off+int64(i))/8))
	}
	for ; i < len(dst); i++ {
		dst[i] = soakByte(k, off+int64(i))
	}
}

// soakMismatches counts the bytes of got that differ from the stream with
// key k from offset off.
func soakMismatches(got []byte, k uint64, off int64) int64 {
	var bad int64
	i := 0
	for ; i < len(got) && (off+int64(i))%8 != 0; i++ {
		if got[i] != soakByte(k, off+int64(i)) {
			bad++
		}
	}
	for ; i+8 <= len(got); i += 8 {
		x := binary.LittleEndian.Uint64(got[i:]) ^ soakWord(k, uint64(off+int64(i))/8)
		for ; x != 0; x >>= 8 {
			if x&0xff != 0 {
				bad++
			}
		}
	}
	for ; i < len(got); i++ {
		if got[i] != soakByte(k, off+int64(i)) {
			bad++
		}
	}
	return bad
}

// checkSoakContent checks the generator and the checker against each other,
// so that a pass of the soak cannot come from a checker that sees nothing.
func checkSoakContent(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1000)
	soakFill(buf, soakKey(3, 7), 13)
	if bad := soakMismatches(buf[5:], soakKey(3, 7), 18); bad != 0 {
		t.Fatalf("content checker: %d mismatches on the bytes it generated", bad)
	}
	if bad := soakMismatches(buf, soakKey(3, 8), 13); bad < 900 {
		t.Fatalf("content checker: only %d of 1000 bytes of another version differ", bad)
	}
	if bad := soakMismatches(buf, soakKey(3, 7), 12); bad < 900 {
		t.Fatalf("content checker: only %d of 1000 bytes at another offset differ", bad)
	}
}

// soakFile is one file of the soak. Sends hold mu for reading from the
// snapshot of the version to the return of Send; an overwrite holds it for
// writing. So a file is never overwritten while one of its sends runs, and
// always can be once they have returned.
type soakFile struct {
	idx  int
	r, w *os.File
	size int64

	mu      sync.RWMutex
	version uint64        // guarded by mu
	changed chan struct{} // closed when version changes; guarded by mu

	dirty atomic.Bool // queued for an overwrite
}

// newSoakFiles creates the files, sizes spread evenly on a log scale from
// soakMinFile to soakMaxFile, most of them not a multiple of the page size.
func newSoakFiles(t *testing.T, dir string) []*soakFile {
	t.Helper()
	var files []*soakFile
	var total int64
	buf := make([]byte, soakMaxFile)
	for i := range soakFiles {
		size := int64(float64(soakMinFile) * math.Pow(float64(soakMaxFile)/soakMinFile, float64(i)/(soakFiles-1)))
		size = min(soakMaxFile, size+int64(i*37%4096))
		path := filepath.Join(dir, fmt.Sprintf("file%02d", i))
		soakFill(buf[:size], soakKey(i, 0), 0)
		if err := os.WriteFile(path, buf[:size], 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		files = append(files, &soakFile{idx: i, r: r, w: w, size: size, changed: make(chan struct{})})
		total += size
	}
	t.Logf("%d files from %d to %d bytes, %.1f MiB in all, in %s", len(files), files[0].size, files[len(files)-1].size, float64(total)/(1<<20), dir)
	return files
}

// overwrite writes a new version of f, the same size, in place.
func (f *soakFile) overwrite(buf []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dirty.Store(false)
	f.version++
	soakFill(buf[:f.size], soakKey(f.idx, f.version), 0)
	if _, err := f.w.WriteAt(buf[:f.size], 0); err != nil {
		return fmt.Errorf("overwrite %s: %w", f.w.Name(), err)
	}
	close(f.changed)
	f.changed = make(chan struct{})
	return nil
}

// soakSend is one send as its receiver sees it: the snapshot of the range,
// and whether and how long to hold back.
type soakSend struct {
	file     int
	version  uint64
	key      uint64
	off, n   int64
	changed  <-chan struct{} // closed when the file is overwritten after the snapshot
	returned chan struct{}   // closed when Send has returned

	hold    bool
	prefix  int64         // bytes read before holding back
	holdFor time.Duration // first part of the hold
}

// soakCounters are the figures of one phase.
type soakCounters struct {
	sends, bytes, corrupted, overwrites atomic.Int64
	// Receiver holds, those extended, and those during which Send returned.
	held, extended, heldPastReturn atomic.Int64

	// Sends that returned with bytes still in the socket's send queue
	// (SIOCOUTQ: not yet acknowledged by the peer), and those bytes.
	queuedSends, queuedBytes atomic.Int64

	mu   sync.Mutex
	errs []string // the first errors
	nerr int
}

func (c *soakCounters) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nerr++
	if len(c.errs) < 10 {
		c.errs = append(c.errs, fmt.Sprintf(format, args...))
	}
}

// soakConn is one connection: the sending end, written by the Sender, and
// the receiving end, read by the test.
type soakConn struct {
	send, recv *net.TCPConn
	small      bool
}

// soakConnect connects n pairs over loopback; every soakSmallEvery-th has a
// receive buffer of soakSmallRcvBuf (set on the listener, inherited by the
// accepted socket before the handshake, so that the window stays small).
func soakConnect(t *testing.T, n int) []soakConn {
	t.Helper()
	small := func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, soakSmallRcvBuf) })
		return errors.Join(err, serr)
	}
	var lns [2]net.Listener
	for i, lc := range []*net.ListenConfig{{}, {Control: small}} {
		ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		lns[i] = ln
	}
	conns := make([]soakConn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.send.Close()
			c.recv.Close()
		}
	})
	for i := range n {
		isSmall := i%soakSmallEvery == soakSmallEvery-1
		ln := lns[0]
		if isSmall {
			ln = lns[1]
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		s, err := ln.Accept()
		if err != nil {
			c.Close()
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, soakConn{send: c.(*net.TCPConn), recv: s.(*net.TCPConn), small: isSmall})
	}
	return conns
}

// soakPhase runs the soak for d with method m on one Sender.
func soakPhase(t *testing.T, m sendfile2.Method, d time.Duration, files []*soakFile) {
	wall := time.Now()
	fdsBefore := soakFDs()
	goroutinesBefore := runtime.NumGoroutine()
	ignore := goleak.IgnoreCurrent()
	hwmReset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil

	s, err := sendfile2.NewSender(sendfile2.Config{Method: m})
	if errors.Is(err, sendfile2.ErrNotSupported) {
		testutil.RequireFeature(t, "method "+string(m)+" (io_uring with SEND_ZC, or MSG_ZEROCOPY)", "6.0", false, err)
	}
	if err != nil {
		t.Fatalf("NewSender(%s): %v", m, err)
	}
	senderClosed := false
	defer func() {
		if !senderClosed {
			s.Close()
		}
	}()

	conns := soakConnect(t, soakConns)
	var c soakCounters
	stopAt := time.Now().Add(d)
	hard := stopAt.Add(soakGrace)
	ctx, cancel := context.WithDeadline(context.Background(), hard)
	defer cancel()

	// Resident memory and descriptors, sampled until the phase ends.
	samplerDone := make(chan struct{})
	samplerExit := make(chan soakPeak, 1)
	go soakSample(samplerDone, samplerExit)

	// Overwriters: each overwrite follows the return of sends of the file.
	dirtyQ := make(chan *soakFile, len(files))
	var overwriters sync.WaitGroup
	for range soakOverwriters {
		overwriters.Go(func() {
			buf := make([]byte, soakMaxFile)
			for f := range dirtyQ {
				if err := f.overwrite(buf); err != nil {
					c.fail("%v", err)
					continue
				}
				c.overwrites.Add(1)
			}
		})
	}

	var senders, receivers sync.WaitGroup
	sendStart := time.Now()
	for i, conn := range conns {
		// A receiver runs at most two snapshots behind its sender: the
		// sender takes a slot before its snapshot (holding no lock) and the
		// receiver frees it when it has checked the send. So the sender
		// never waits on descs with a file locked.
		slots := make(chan struct{}, 2)
		descs := make(chan *soakSend, cap(slots))
		senders.Go(func() {
			defer close(descs)
			defer conn.send.Close()
			rng := rand.New(rand.NewPCG(uint64(i), uint64(sendStart.UnixNano())))
			// At least one send per connection, however late this
			// goroutine starts on a busy machine.
			for first := true; first || time.Now().Before(stopAt); first = false {
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					return
				}
				f := files[rng.IntN(len(files))]
				sd := &soakSend{file: f.idx, returned: make(chan struct{})}
				if rng.IntN(8) == 0 {
					sd.off, sd.n = 0, f.size
				} else {
					sd.off = rng.Int64N(f.size)
					sd.n = 1 + rng.Int64N(f.size-sd.off)
				}
				if rng.IntN(soakHoldEvery) == 0 {
					sd.hold = true
					sd.prefix = rng.Int64N(sd.n/2 + 1)
					sd.holdFor = time.Millisecond + time.Duration(rng.Int64N(int64(soakHoldMax)))
				}
				f.mu.RLock()
				sd.version, sd.changed = f.version, f.changed
				sd.key = soakKey(f.idx, sd.version)
				descs <- sd
				n, err := s.Send(ctx, conn.send, f.r, sd.off, sd.n)
				f.mu.RUnlock()
				close(sd.returned)
				c.sends.Add(1)
				if q := soakQueue(conn.send, unix.SIOCOUTQ); q > 0 {
					c.queuedSends.Add(1)
					c.queuedBytes.Add(q)
				}
				if !f.dirty.Swap(true) {
					dirtyQ <- f // never blocks: at most one entry per file
				}
				if err != nil || n != sd.n {
					c.fail("conn %d: Send(file %d, off %d, n %d) = %d, %v", i, f.idx, sd.off, sd.n, n, err)
					return
				}
			}
		})
		receivers.Go(func() {
			defer conn.recv.Close()
			conn.recv.SetReadDeadline(hard)
			buf := make([]byte, 32<<10)
			for sd := range descs {
				if err := soakReceive(conn, sd, buf, &c); err != nil {
					c.fail("conn %d (small window %v): file %d version %d [%d, %d): %v", i, conn.small, sd.file, sd.version, sd.off, sd.off+sd.n, err)
					// Give up on this connection: a reset fails the send in
					// flight (a plain close would send a FIN, which a
					// sender waiting for room or notifications does not
					// see), and the sender stops.
					conn.recv.SetLinger(0)
					conn.recv.Close()
					<-slots
					for range descs {
						<-slots
					}
					return
				}
				<-slots
			}
			// The sender closed its end after its last send: nothing more.
			if n, err := conn.recv.Read(buf[:1]); n != 0 || err != io.EOF {
				c.fail("conn %d: after the last send, Read = %d, %v; want 0, EOF", i, n, err)
			}
		})
	}
	// A phase that is still running well past its end is stuck: show
	// where, before the deadlines fail its sends and reads.
	watchdog := time.AfterFunc(time.Until(stopAt.Add(soakGrace/2)), func() {
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Logf("phase still running %v after its end; goroutines:\n%s", soakGrace/2, b.String())
	})
	senders.Wait()
	sendersDone := time.Since(stopAt)
	close(dirtyQ)
	overwriters.Wait()
	receivers.Wait()
	watchdog.Stop()
	elapsed := time.Since(sendStart)
	drained := time.Since(stopAt)

	st := s.Stats()
	// The last CQE of a send may release its buffer just after Send saw it.
	soakWait(func() bool { return sendfile2.BuffersOut(s) == 0 })
	buffersAfterSends := sendfile2.BuffersOut(s)

	for _, conn := range conns {
		conn.send.Close()
		conn.recv.Close()
	}
	closeStart := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		senderClosed = true
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(soakGrace):
		t.Fatalf("Close did not return within %v", soakGrace)
	}
	closeTime := time.Since(closeStart)
	buffersAfterClose := sendfile2.BuffersOut(s)
	close(samplerDone)
	peak := <-samplerExit
	status := soakStatus()

	// Leaks: descriptors and goroutines back to where they were.
	fdsOK := soakWait(func() bool { return len(soakFDs()) <= len(fdsBefore) })
	fdsAfter := soakFDs()
	goroutinesOK := soakWait(func() bool { return runtime.NumGoroutine() <= goroutinesBefore })
	goroutinesAfter := runtime.NumGoroutine()

	bytes := c.bytes.Load()
	var perMethod []string
	for _, k := range sendfile2.Methods() {
		if ms, ok := st.Methods[k]; ok {
			perMethod = append(perMethod, fmt.Sprintf("%s: %d sends (%d errors), %d bytes, zero-copy %d, copied %d", k, ms.Sends, ms.Errors, ms.Bytes, ms.ZeroCopyBytes, ms.CopiedBytes))
		}
	}
	hwm := "VmHWM " + soakMiB(status.hwm)
	if !hwmReset {
		hwm += " (since process start: /proc/self/clear_refs refused)"
	}
	t.Logf("%s (resolved %s): %d connections (%d with a small window) for %v, wall %v\n"+
		"  after the end: last send returned %v later, last byte checked %v later; Close took %v\n"+
		"  sends %d, bytes %d (%.2f GB/s over %v), corrupted bytes %d, overwrites %d\n"+
		"  receiver holds %d (%d extended, %d while Send returned); sends returned with bytes unacknowledged in the socket: %d (%d bytes)\n"+
		"  Stats: %s; fallbacks %d, demotions %d, adaptive %+v\n"+
		"  memory: %s, peak sampled VmRSS %s (RssFile %s), peak sampled RssAnon %s; bounds %s and %s\n"+
		"  fds: before %d, peak %d, after %d; goroutines: before %d, after %d; BuffersOut: %d after the sends, %d after Close",
		m, st.Method, len(conns), len(conns)/soakSmallEvery, d, time.Since(wall).Round(time.Millisecond),
		sendersDone.Round(time.Millisecond), drained.Round(time.Millisecond), closeTime.Round(time.Millisecond),
		c.sends.Load(), bytes, float64(bytes)/elapsed.Seconds()/1e9, elapsed.Round(time.Millisecond), c.corrupted.Load(), c.overwrites.Load(),
		c.held.Load(), c.extended.Load(), c.heldPastReturn.Load(), c.queuedSends.Load(), c.queuedBytes.Load(),
		strings.Join(perMethod, "; "), st.Fallbacks, st.Demotions, st.Adaptive,
		hwm, soakMiB(peak.rss), soakMiB(peak.file), soakMiB(peak.anon), soakMiB(soakMaxRSS), soakMiB(soakMaxAnon),
		len(fdsBefore), peak.fds, len(fdsAfter), goroutinesBefore, goroutinesAfter, buffersAfterSends, buffersAfterClose)

	// Verdicts.
	if c.nerr > 0 {
		t.Errorf("%d errors; the first ones:\n  %s", c.nerr, strings.Join(c.errs, "\n  "))
	}
	if n := c.corrupted.Load(); n != 0 {
		if m.Safe() {
			t.Errorf("%s delivered %d corrupted bytes", m, n)
		} else {
			t.Errorf("%s delivered %d corrupted bytes: the unsafe baseline fails the soak's check, as it must", m, n)
		}
	} else if !m.Safe() {
		t.Errorf("%s, the unsafe baseline, corrupted nothing: the soak has lost its power to fail", m)
	}
	if c.nerr == 0 && (c.sends.Load() < soakConns || bytes == 0) {
		t.Errorf("only %d sends, %d bytes: not every connection sent", c.sends.Load(), bytes)
	}
	var total int64
	for _, ms := range st.Methods {
		total += ms.Sends
	}
	if total != c.sends.Load() {
		t.Errorf("Stats count %d sends, the test made %d", total, c.sends.Load())
	}
	if buffersAfterClose != 0 {
		t.Errorf("%d registered buffers out after Close", buffersAfterClose)
	}
	if soakRace() {
		t.Logf("memory bounds not checked: the race detector's shadow memory counts in RssAnon")
	} else {
		if top := max(status.hwm, peak.rss); top > soakMaxRSS {
			t.Errorf("peak resident memory %s is above the bound %s", soakMiB(top), soakMiB(soakMaxRSS))
		}
		if peak.anon > soakMaxAnon {
			t.Errorf("peak anonymous resident memory %s is above the bound %s", soakMiB(peak.anon), soakMiB(soakMaxAnon))
		}
	}
	if !fdsOK {
		var extra []string
		for fd, target := range fdsAfter {
			if _, ok := fdsBefore[fd]; !ok {
				extra = append(extra, fmt.Sprintf("%d -> %s", fd, target))
			}
		}
		slices.Sort(extra)
		if len(extra) > 20 {
			extra = append(extra[:20], "...")
		}
		t.Errorf("file descriptors: %d before the phase, %d %v after it:\n  %s", len(fdsBefore), len(fdsAfter), soakSettle, strings.Join(extra, "\n  "))
	}
	if !goroutinesOK {
		t.Errorf("goroutines: %d before the phase, %d %v after it: %v", goroutinesBefore, goroutinesAfter, soakSettle, goleak.Find(ignore))
	}
}

// soakReceive reads the n bytes of one send from conn.recv and counts those
// that differ from its snapshot. A send with hold reads prefix bytes, then
// stops reading until Send returns or the hold ends (see soakHoldEvery); if
// Send returned, it waits for the overwrite of the file (up to
// soakOverwriteWait) before it reads the rest.
func soakReceive(conn soakConn, sd *soakSend, buf []byte, c *soakCounters) error {
	pos := int64(0)
	read := func(until int64) error {
		for pos < until {
			k, err := conn.recv.Read(buf[:min(int64(len(buf)), until-pos)])
			if k > 0 {
				c.bytes.Add(int64(k))
				if bad := soakMismatches(buf[:k], sd.key, sd.off+pos); bad > 0 {
					c.corrupted.Add(bad)
				}
				pos += int64(k)
			}
			if err != nil {
				return fmt.Errorf("read at %d of %d: %w", pos, sd.n, err)
			}
		}
		return nil
	}
	if !sd.hold {
		return read(sd.n)
	}
	if err := read(sd.prefix); err != nil {
		return err
	}
	c.held.Add(1)
	returned := false
	wait := func(d time.Duration) bool {
		tm := time.NewTimer(d)
		defer tm.Stop()
		select {
		case <-sd.returned:
			return true
		case <-tm.C:
			return false
		}
	}
	returned = wait(sd.holdFor)
	if !returned && soakQueue(conn.send, unix.SIOCOUTQ)+soakQueue(conn.recv, unix.SIOCINQ) >= sd.n-pos {
		c.extended.Add(1)
		returned = wait(soakHoldExtend)
	}
	if returned {
		c.heldPastReturn.Add(1)
		tm := time.NewTimer(soakOverwriteWait)
		select {
		case <-sd.changed:
		case <-tm.C:
		}
		tm.Stop()
	}
	return read(sd.n)
}

// soakQueue is the number of bytes in a queue of conn's socket: SIOCOUTQ,
// those the peer has not acknowledged; SIOCINQ, those not read yet.
func soakQueue(conn *net.TCPConn, req uint) int64 {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0
	}
	var n int
	rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), req) })
	return int64(n)
}

// soakWait polls cond until it holds or soakSettle passes.
func soakWait(cond func() bool) bool {
	deadline := time.Now().Add(soakSettle)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// soakFDs lists the process's open descriptors and what they point to.
func soakFDs() map[int]string {
	fds := map[int]string{}
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return fds
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd == int(d.Fd()) {
			continue
		}
		target, _ := os.Readlink("/proc/self/fd/" + name)
		fds[fd] = target
	}
	return fds
}

// soakFDCount counts the process's open descriptors, without the one that
// lists them.
func soakFDCount() int {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	return len(names) - 1
}

// soakMem is a reading of /proc/self/status, in bytes.
type soakMem struct{ hwm, rss, anon, file int64 }

func soakStatus() soakMem {
	var m soakMem
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "VmHWM":
			m.hwm = kb << 10
		case "VmRSS":
			m.rss = kb << 10
		case "RssAnon":
			m.anon = kb << 10
		case "RssFile":
			m.file = kb << 10
		}
	}
	return m
}

// soakPeak is the highest sampled VmRSS and its RssFile, the highest
// sampled RssAnon, and the highest descriptor count.
type soakPeak struct {
	rss, file, anon int64
	fds             int
}

// soakSample samples memory every 50 ms and descriptors every 500 ms until
// done is closed, then sends the peaks.
func soakSample(done <-chan struct{}, out chan<- soakPeak) {
	var p soakPeak
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		m := soakStatus()
		if m.rss > p.rss {
			p.rss, p.file = m.rss, m.file
		}
		p.anon = max(p.anon, m.anon)
		if i%10 == 0 {
			p.fds = max(p.fds, soakFDCount())
		}
		select {
		case <-done:
			out <- p
			return
		case <-tick.C:
		}
	}
}

// soakRace reports whether the test binary was built with -race.
func soakRace() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

func soakMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
