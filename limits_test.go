package sendfile2_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/internal/probe"
	"github.com/sendfile2/sendfile2/internal/testutil"
)

// Resource limits, and sockets where zero-copy does not apply.

// limitChildEnv, in the environment of a test process, names the limit that
// one of the child tests below runs under; their parents set it.
const limitChildEnv = "SENDFILE2_TEST_LIMIT_CHILD"

// runLimitChild runs the test name of the binary exe (this one when "") in a
// child process with limitChildEnv=how, set up by attr, and fails t unless
// the child's test passes.
func runLimitChild(t *testing.T, exe, name, how string, attr *syscall.SysProcAttr) {
	t.Helper()
	if exe == "" {
		exe = os.Args[0]
	}
	cmd := exec.Command(exe, "-test.run=^"+name+"$", "-test.count=1", "-test.v", "-test.timeout=120s")
	cmd.Env = append(os.Environ(), limitChildEnv+"="+how)
	cmd.SysProcAttr = attr
	out, err := cmd.CombinedOutput()
	t.Logf("child (%s):\n%s", how, out)
	if err != nil {
		t.Fatalf("child (%s): %v", how, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+name) {
		t.Fatalf("child (%s): %s did not pass", how, name)
	}
}

// limitChild skips t unless this process is a child started to run under
// the limit how, and returns how.
func limitChild(t *testing.T, hows ...string) string {
	t.Helper()
	how := os.Getenv(limitChildEnv)
	for _, h := range hows {
		if how == h {
			return how
		}
	}
	t.Skip("runs only in the child process its parent test starts")
	return ""
}

// sendExact sends the whole of f (whose content is data) through s to a new
// loopback connection and fails t unless the peer receives exactly data.
func sendExact(t *testing.T, s *sendfile2.Sender, f *os.File, data []byte) {
	t.Helper()
	a, b := tcpPair(t)
	got := receive(b)
	// A send that stops making progress ends with the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := s.Send(ctx, a, f, 0, int64(len(data)))
	a.Close()
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Send = %d, %v; want %d", n, err, len(data))
	}
	if r := <-got; !bytes.Equal(r, data) {
		t.Fatalf("received %d bytes that differ from the %d of the file", len(r), len(data))
	}
}

// capEff is the effective capability set of this process (CapEff in
// /proc/self/status).
func capEff(t *testing.T) uint64 {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			var caps uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &caps); err != nil {
				t.Fatalf("CapEff %q: %v", v, err)
			}
			return caps
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return 0
}

// executableForAll copies this test binary into a directory that every user
// may enter: the go command builds it in one only its owner can.
func executableForAll(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sendfile2-limits-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "sendfile2.test")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

// The RLIMIT_MEMLOCK values TestLimitMemlockChild runs under. The Sender's
// ring (256 SQEs, 4096 CQEs: about 84 KiB) does not fit under the first.
// Under the second it fits, with room for the rings of Senders closed just
// before (the kernel releases a ring's charge asynchronously, after Close),
// and so does one default chunk of URingMmap (256 KiB and two pages), but
// not its default chain of 8 chunks, nor the default registered buffers
// (16 x 256 KiB).
var memlockLimits = map[string]uint64{"memlock-64KiB": 64 << 10, "memlock-2MiB": 2 << 20}

// TestLimitMemlock: without CAP_IPC_LOCK, io_uring charges its rings,
// registered buffers and the pages a non-registered SEND_ZC pins to
// RLIMIT_MEMLOCK, and MSG_ZEROCOPY charges its pinned pages too. The test
// runs TestLimitMemlockChild in a process that lacks the capability: as
// root, the child runs as user nobody (setuid to a non-root user clears
// every capability), from a copy of the test binary that nobody may execute.
// Dropping CAP_IPC_LOCK with capset(2) would not do: it changes one thread,
// and the Go runtime runs the test on any of several.
func TestLimitMemlock(t *testing.T) {
	exe := ""
	var attr *syscall.SysProcAttr
	if os.Geteuid() == 0 {
		exe = executableForAll(t)
		attr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	}
	for _, how := range []string{"memlock-64KiB", "memlock-2MiB"} {
		t.Run(how, func(t *testing.T) { runLimitChild(t, exe, "TestLimitMemlockChild", how, attr) })
	}
}

func TestLimitMemlockChild(t *testing.T) {
	how := limitChild(t, "memlock-64KiB", "memlock-2MiB")
	limit := memlockLimits[how]
	const capIPCLock = 14
	if capEff(t)&(1<<capIPCLock) != 0 {
		t.Fatal("the child holds CAP_IPC_LOCK: io_uring and MSG_ZEROCOPY would charge nothing to RLIMIT_MEMLOCK")
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: limit, Max: limit}); err != nil {
		t.Fatal(os.NewSyscallError("setrlimit", err))
	}
	ringFits := limit >= 2<<20
	f, data := tempFile(t, 4<<20+4097)

	t.Run("probe", func(t *testing.T) {
		p := probe.Fresh()
		t.Logf("probe: io_uring %v %q, memlock %d bytes", p.IOURing, p.IOURingReason, p.MemlockLimit)
		if p.MemlockLimit != limit {
			t.Errorf("probe reports RLIMIT_MEMLOCK %d, want %d", p.MemlockLimit, limit)
		}
	})

	// memlockError fails t unless err says that RLIMIT_MEMLOCK stopped
	// NewSender(cfg).
	memlockError := func(t *testing.T, cfg sendfile2.Config) {
		t.Helper()
		s, err := sendfile2.NewSender(cfg)
		if err == nil {
			s.Close()
			t.Fatalf("NewSender(%s) succeeded under RLIMIT_MEMLOCK %d", cfg.Method, limit)
		}
		t.Logf("NewSender(%s): %v", cfg.Method, err)
		if !errors.Is(err, sendfile2.ErrNotSupported) && !strings.Contains(err.Error(), "RLIMIT_MEMLOCK") {
			t.Errorf("NewSender(%s) = %v; want an error matching ErrNotSupported or naming RLIMIT_MEMLOCK", cfg.Method, err)
		}
		if !errors.Is(err, unix.ENOMEM) {
			t.Errorf("NewSender(%s) = %v; want the kernel's ENOMEM kept in the chain", cfg.Method, err)
		}
	}

	// auto runs last: its failed attempt at the default registered
	// buffers, like that of the "uring" subtest, leaves the limit used up
	// until the kernel tears the ring down.
	auto := func(t *testing.T) {
		s := newSender(t, sendfile2.Config{Method: sendfile2.Auto})
		if m := s.Method(); m == sendfile2.URing {
			t.Fatalf("auto resolved to uring, which does not fit under RLIMIT_MEMLOCK")
		}
		sendExact(t, s, f, data)
		st := s.Stats()
		t.Logf("auto resolved to %s: %+v, %d ENOBUFS retried", st.Method, st, sendfile2.MsgZCNoBufs(s))
		// 64 KiB is less than the pages of one msgzc call: it must copy.
		if !ringFits && st.Method == sendfile2.MsgZC && st.Fallbacks == 0 {
			t.Error("msgzc did not fall back to copying under RLIMIT_MEMLOCK 64 KiB: the limit did not apply, and the test tested nothing")
		}
	}

	if !ringFits {
		t.Run("uring", func(t *testing.T) { memlockError(t, sendfile2.Config{Method: sendfile2.URing}) })
		t.Run("uring-mmap", func(t *testing.T) { memlockError(t, sendfile2.Config{Method: sendfile2.URingMmap}) })
		t.Run("auto", auto)
		return
	}

	// fitting is newSender for a Sender that fits under the limit. The
	// kernel releases the charge of a closed ring some milliseconds after
	// the close (measured: tens), so a ring of an earlier test process of
	// the same user may still hold it: try again for a while.
	fitting := func(t *testing.T, cfg sendfile2.Config) *sendfile2.Sender {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			s, err := sendfile2.NewSender(cfg)
			if err == nil {
				s.Close()
				break
			}
			if !errors.Is(err, unix.ENOMEM) {
				t.Fatalf("NewSender(%+v): %v", cfg, err)
			}
		}
		return newSender(t, cfg)
	}

	t.Run("uring small pool", func(t *testing.T) {
		// Two 16 KiB buffers fit beside the ring: it was the limit, not
		// io_uring, that refused the default pool.
		s := fitting(t, sendfile2.Config{Method: sendfile2.URing, Buffers: 2, BufferSize: 16 << 10})
		sendExact(t, s, f, data)
	})

	t.Run("uring-mmap", func(t *testing.T) {
		// A chain of 8 chunks of 256 KiB does not fit under the limit: the
		// kernel fails it with ENOMEM, and the send goes on one chunk at a
		// time, each after the notifications of the ones before.
		s := fitting(t, sendfile2.Config{Method: sendfile2.URingMmap})
		sendExact(t, s, f, data)
		t.Logf("%+v", s.Stats())
	})

	t.Run("uring-mmap chunk over the limit", func(t *testing.T) {
		// A 2 MiB chunk (and two pages) can never be pinned under the
		// limit. The send must copy instead, and say so, or end with the
		// kernel's ENOMEM.
		s := fitting(t, sendfile2.Config{Method: sendfile2.URingMmap, BufferSize: 2 << 20})
		a, b := tcpPair(t)
		got := receive(b)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n, err := s.Send(ctx, a, f, 0, int64(len(data)))
		a.Close()
		r := <-got
		t.Logf("Send = %d, %v", n, err)
		switch {
		case err == nil:
			if n != int64(len(data)) || !bytes.Equal(r, data) {
				t.Fatalf("Send = %d, nil; the peer received %d bytes, not the file's %d", n, len(r), len(data))
			}
			if st := s.Stats(); st.Fallbacks == 0 {
				t.Errorf("the bytes were copied, but no fallback was counted: %+v", st)
			}
		case !errors.Is(err, unix.ENOMEM):
			t.Fatalf("Send = %d, %v; want the kernel's ENOMEM", n, err)
		case !bytes.Equal(r, data[:n]):
			t.Fatalf("Send = %d, %v; the peer received %d other bytes", n, err, len(r))
		}
	})

	t.Run("uring", func(t *testing.T) { memlockError(t, sendfile2.Config{Method: sendfile2.URing}) })
	t.Run("auto", auto)
}

// refuseRegisterOp installs, on every thread of the process, a seccomp
// filter that fails io_uring_register(2) with errno when its opcode is op,
// and lets every other opcode through. testutil.RefuseSyscall refuses the
// whole system call, which also stops the opcode probe and the eventfd that
// every ring registers. It cannot be undone: use it in a child process.
func refuseRegisterOp(t *testing.T, op uint32, errno syscall.Errno) {
	t.Helper()
	var arch uint32
	switch runtime.GOARCH {
	case "amd64":
		arch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		arch = unix.AUDIT_ARCH_AARCH64
	default:
		t.Fatalf("no seccomp architecture for %s", runtime.GOARCH)
	}
	const (
		nrOffset   = 0  // struct seccomp_data.nr
		archOffset = 4  // struct seccomp_data.arch
		arg1Low    = 24 // the low half of args[1], the opcode (little-endian)
	)
	allow := unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW}
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: archOffset},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: arch, Jt: 1},
		allow,
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: nrOffset},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_IO_URING_REGISTER, Jt: 1},
		allow,
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: arg1Low},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: op, Jt: 1},
		allow,
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(errno)&unix.SECCOMP_RET_DATA},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		t.Fatal(os.NewSyscallError("prctl", err))
	}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); e != 0 {
		t.Fatal(os.NewSyscallError("seccomp", e))
	}
}

// TestLimitRegisterENOMEM: the kernel refuses to register buffers with
// ENOMEM (memory or RLIMIT_MEMLOCK exhausted; here a seccomp filter in a
// child process says so). An explicit uring Sender fails with an error that
// keeps ENOMEM and says what failed; Auto falls back and delivers. In
// "register-buffers" only IORING_REGISTER_BUFFERS fails, so uring-mmap, which
// registers none, still works; in "register" every io_uring_register(2)
// does (testutil.RefuseSyscall), and no ring can be set up.
func TestLimitRegisterENOMEM(t *testing.T) {
	for _, how := range []string{"register-buffers", "register"} {
		t.Run(how, func(t *testing.T) { runLimitChild(t, "", "TestLimitRegisterENOMEMChild", how, nil) })
	}
}

func TestLimitRegisterENOMEMChild(t *testing.T) {
	how := limitChild(t, "register-buffers", "register")
	const ioringRegisterBuffers = 0
	if how == "register-buffers" {
		refuseRegisterOp(t, ioringRegisterBuffers, unix.ENOMEM)
	} else if err := testutil.RefuseSyscall(unix.SYS_IO_URING_REGISTER, unix.ENOMEM); err != nil {
		t.Fatal(err)
	}
	f, data := tempFile(t, 4<<20+4097)

	s, err := sendfile2.NewSender(sendfile2.Config{Method: sendfile2.URing})
	if err == nil {
		s.Close()
		t.Fatal("NewSender(uring) succeeded though io_uring_register fails with ENOMEM")
	}
	t.Logf("NewSender(uring): %v", err)
	if !errors.Is(err, unix.ENOMEM) {
		t.Errorf("NewSender(uring) = %v; want the kernel's ENOMEM kept in the chain", err)
	}
	want := "io_uring"
	if how == "register-buffers" {
		want = "registered buffers"
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("NewSender(uring) = %v; want it to name %q", err, want)
	}

	auto := newSender(t, sendfile2.Config{Method: sendfile2.Auto})
	if m := auto.Method(); m == sendfile2.URing {
		t.Fatal("auto resolved to uring without registered buffers")
	}
	sendExact(t, auto, f, data)
	t.Logf("auto resolved to %s", auto.Method())

	m, err := sendfile2.NewSender(sendfile2.Config{Method: sendfile2.URingMmap})
	switch {
	case how == "register" && err == nil:
		m.Close()
		t.Error("NewSender(uring-mmap) succeeded though no ring can register its opcode probe")
	case how == "register-buffers" && err != nil:
		t.Errorf("NewSender(uring-mmap) = %v; it registers no buffers", err)
	case err == nil:
		defer m.Close()
		sendExact(t, m, f, data)
	}
}

// TestLimitOptmem: net.core.optmem_max exhausted. MSG_ZEROCOPY keeps the
// state of each pending notification in the socket's option memory and gets
// ENOBUFS past the limit (TestMsgzcNoBufs covers msgzc's answers). io_uring's
// SEND_ZC does not: its notification is an io_uring request, and the pages
// it pins are charged to RLIMIT_MEMLOCK instead (TestLimitMemlockChild). So
// with optmem_max at 0, the io_uring methods still send zero-copy, with
// notifications, and without a fallback; msgzc, beside them, shows that the
// limit is in force. The test runs itself again in a network namespace of its
// own, like TestMsgzcNoBufs.
func TestLimitOptmem(t *testing.T) {
	if os.Getenv(limitChildEnv) != "optmem" {
		if os.Geteuid() != 0 {
			t.Skip("creating a network namespace needs root")
		}
		restoreOptmem(t)
		runLimitChild(t, "", "TestLimitOptmem", "optmem", &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET})
		return
	}
	setupNetns(t)
	if err := os.WriteFile(optmemSysctl, []byte("0"), 0); err != nil {
		t.Fatal(err)
	}
	f, data := tempFile(t, 8<<20+12345)
	for _, m := range []sendfile2.Method{sendfile2.URing, sendfile2.URingMmap, sendfile2.MsgZC} {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			sendExact(t, s, f, data)
			st := s.Stats()
			ms := st.Methods[m]
			t.Logf("%+v, %d fallbacks, %d ENOBUFS retried", ms, st.Fallbacks, sendfile2.MsgZCNoBufs(s))
			if m == sendfile2.MsgZC {
				if st.Fallbacks == 0 {
					t.Fatal("msgzc did not fall back to copying with optmem_max 0: the limit is not in force, and the test tested nothing")
				}
				return
			}
			if st.Fallbacks != 0 || ms.Errors != 0 {
				t.Errorf("%s with optmem_max 0: %d fallbacks, %d errors", m, st.Fallbacks, ms.Errors)
			}
			// Every byte had its notification: the sends were zero-copy
			// sends (copied by loopback all the same).
			if ms.ZeroCopyBytes+ms.CopiedBytes != int64(len(data)) {
				t.Errorf("%s: notifications accounted %d + %d bytes, want %d", m, ms.ZeroCopyBytes, ms.CopiedBytes, len(data))
			}
		})
	}
}

// sampler calls f every interval in the background until stop is called.
func sampler(interval time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			f()
			select {
			case <-done:
				f()
				return
			case <-tick.C:
			}
		}
	})
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// TestLimitManyInFlight: 256 goroutines on one Sender, each on its own
// connection behind a small receive window, the peers held back until the
// ring's Loop is full. The Loop must admit no more requests than fit twice
// in the completion queue (each may post a result and a notification), so
// the queue cannot overflow; the sends that find it full wait, and every
// byte arrives once the peers read. Chunks of 4 KiB give each send its 8
// requests early: 2048 in all, above the Loop's capacity.
func TestLimitManyInFlight(t *testing.T) {
	const (
		senders = 256
		size    = 64 << 10
	)
	for _, m := range []sendfile2.Method{sendfile2.URing, sendfile2.URingMmap} {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m, BufferSize: 4096, Buffers: 4096})
			f, data := tempFile(t, 1<<20)
			_, capacity, _ := sendfile2.URingLoad(s)
			// A batch may wait for more slots than remain: the Loop is full
			// when fewer than a batch (8 sends and 8 reads) are left.
			const maxBatch = 16
			var peak atomic.Int64
			full := make(chan struct{})
			var fullOnce sync.Once
			stop := sampler(time.Millisecond, func() {
				n, _, _ := sendfile2.URingLoad(s)
				if n > peak.Load() {
					peak.Store(n)
				}
				if n >= int64(capacity-maxBatch) {
					fullOnce.Do(func() { close(full) })
				}
			})
			defer stop()

			type pair struct{ a, b *net.TCPConn }
			pairs := make([]pair, senders)
			for i := range pairs {
				pairs[i].a, pairs[i].b = smallWindowPair(t)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 2*senders)
			for i, p := range pairs {
				off := int64(i*4099) % int64(len(data)-size)
				wg.Go(func() {
					n, err := s.Send(context.Background(), p.a, f, off, size)
					p.a.Close()
					if err != nil || n != size {
						errs <- fmt.Errorf("sender %d: Send = %d, %v", i, n, err)
					}
				})
				wg.Go(func() {
					select {
					case <-full:
					case <-time.After(20 * time.Second):
					}
					got, err := io.ReadAll(p.b)
					if err != nil || !bytes.Equal(got, data[off:off+size]) {
						errs <- fmt.Errorf("receiver %d: %d bytes, %v; not the range", i, len(got), err)
					}
				})
			}
			wg.Wait()
			stop()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			inFlight, _, stray := sendfile2.URingLoad(s)
			t.Logf("capacity %d requests, peak %d in flight, %d stray CQEs", capacity, peak.Load(), stray)
			if peak.Load() > int64(capacity) {
				t.Errorf("%d requests in flight at once; the Loop admits %d", peak.Load(), capacity)
			}
			select {
			case <-full:
			default:
				t.Errorf("the Loop never filled (peak %d of %d): the test did not test admission", peak.Load(), capacity)
			}
			if stray != 0 || inFlight != 0 {
				t.Errorf("%d stray CQEs, %d requests in flight after the sends", stray, inFlight)
			}
			if n := sendfile2.URingOverflows(s); n != 0 {
				t.Errorf("the completion queue overflowed %d times", n)
			}
		})
	}
}

// verify reads c to the end and reports whether it carried exactly want,
// comparing as the bytes arrive rather than keeping them. After a difference
// it reads on, so that the send can finish.
func verify(c net.Conn, want []byte) <-chan error {
	out := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		pos := 0
		for {
			n, err := c.Read(buf)
			if pos+n > len(want) || !bytes.Equal(buf[:n], want[pos:pos+n]) {
				out <- fmt.Errorf("bytes %d to %d differ from the range", pos, pos+n)
				io.Copy(io.Discard, c)
				return
			}
			pos += n
			if err == io.EOF && pos == len(want) {
				out <- nil
				return
			}
			if err != nil {
				out <- fmt.Errorf("after %d of %d bytes: %w", pos, len(want), err)
				return
			}
		}
	}()
	return out
}

// TestLimitPoolExhausted: 32 sends at once on a Sender with one or two
// registered buffers, behind small receive windows. Sends that find no
// buffer copy their next part instead of waiting (some must: the pool is
// short); the pool never lends more buffers than it has, every byte
// arrives, and the Go heap does not grow with the bytes sent.
func TestLimitPoolExhausted(t *testing.T) {
	const (
		sends = 32
		size  = 1 << 20
	)
	for _, buffers := range []int{1, 2} {
		t.Run(fmt.Sprint("buffers=", buffers), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: sendfile2.URing, Buffers: buffers, BufferSize: 64 << 10})
			f, data := tempFile(t, 2<<20)
			pairs := make([][2]*net.TCPConn, sends)
			for i := range pairs {
				pairs[i][0], pairs[i][1] = smallWindowPair(t)
			}
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			heapBefore := ms.HeapAlloc
			var maxOut, maxSends atomic.Int64
			var maxHeap atomic.Uint64
			stopOut := sampler(200*time.Microsecond, func() {
				if n := sendfile2.BuffersOut(s); n > maxOut.Load() {
					maxOut.Store(n)
				}
				if n := s.Stats().InFlight; n > maxSends.Load() {
					maxSends.Store(n)
				}
			})
			defer stopOut()
			stopHeap := sampler(10*time.Millisecond, func() {
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapAlloc > maxHeap.Load() {
					maxHeap.Store(ms.HeapAlloc)
				}
			})
			defer stopHeap()

			var wg sync.WaitGroup
			errs := make(chan error, sends)
			for i, p := range pairs {
				off := int64(i*4099) % int64(len(data)-size)
				wg.Go(func() {
					ok := verify(p[1], data[off:off+size])
					n, err := s.Send(context.Background(), p[0], f, off, size)
					p[0].Close()
					if err != nil || n != size {
						errs <- fmt.Errorf("send %d: Send = %d, %v", i, n, err)
						return
					}
					if err := <-ok; err != nil {
						errs <- fmt.Errorf("send %d: %w", i, err)
					}
				})
			}
			wg.Wait()
			stopOut()
			stopHeap()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			growth := int64(maxHeap.Load()) - int64(heapBefore)
			short := s.Stats().PoolShort
			t.Logf("%d buffers: at most %d lent, %d sends in progress at once, %d parts copied for want of a buffer, heap grew by at most %d KiB while %d MiB were sent",
				buffers, maxOut.Load(), maxSends.Load(), short, growth>>10, sends*size>>20)
			if maxOut.Load() > int64(buffers) {
				t.Errorf("%d buffers lent at once from a pool of %d", maxOut.Load(), buffers)
			}
			if short == 0 {
				t.Errorf("no send found the %d buffers all lent: the pool was never short", buffers)
			}
			if growth > 8<<20 {
				t.Errorf("the Go heap grew by %d MiB while %d MiB were sent", growth>>20, sends*size>>20)
			}
		})
	}
}

// unixPair returns a connected pair of unix stream sockets.
func unixPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(os.NewSyscallError("socketpair", err))
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "unix")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// TestLimitUnixSocket: the methods TestUnixSocket leaves out, Auto and the
// baselines, on a unix stream socket. Auto's zero-copy method does not apply
// there: it copies and counts a fallback.
func TestLimitUnixSocket(t *testing.T) {
	f, data := tempFile(t, 3<<20+4097)
	for _, m := range []sendfile2.Method{sendfile2.Auto, sendfile2.Sendfile, sendfile2.Splice} {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			a, b := unixPair(t)
			got := receive(b)
			n, err := s.Send(context.Background(), a, f, 0, int64(len(data)))
			a.Close()
			if err != nil || n != int64(len(data)) {
				t.Fatalf("Send = %d, %v", n, err)
			}
			if !bytes.Equal(<-got, data) {
				t.Fatal("wrong bytes")
			}
			st := s.Stats()
			if m == sendfile2.Auto && st.Fallbacks == 0 {
				t.Errorf("auto (%s) on a unix socket counted no fallback: %+v", st.Method, st)
			}
		})
	}
}

// allMethods is Auto and every concrete method.
func allMethods() []sendfile2.Method {
	return append([]sendfile2.Method{sendfile2.Auto}, sendfile2.Methods()...)
}

// cpuTime is the CPU time this process has used (getrusage(2)).
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(os.NewSyscallError("getrusage", err))
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fillSocket writes to the socket c until its buffers are full (EAGAIN)
// and returns what it wrote.
func fillSocket(t *testing.T, c syscall.Conn) []byte {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("filler. "), 8<<10)
	var out []byte
	var werr error
	rc.Control(func(fd uintptr) {
		for {
			n, err := unix.SendmsgN(int(fd), chunk, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				return
			}
			if err != nil {
				werr = err
				return
			}
			out = append(out, chunk[:n]...)
		}
	})
	if werr != nil {
		t.Fatal(os.NewSyscallError("sendmsg", werr))
	}
	return out
}

// TestLimitFullSocket: a send to a socket whose buffers are already full,
// with the socket's descriptor in non-blocking mode (set explicitly, as a
// caller may have; Go's own sockets are) and in blocking mode (a socket
// someone handed over as a blocking descriptor). Send must wait without
// spinning, using next to no CPU while the peer reads nothing, then deliver
// every byte once the peer reads.
func TestLimitFullSocket(t *testing.T) {
	f, data := tempFile(t, 4<<20)
	const window = 300 * time.Millisecond
	for _, mode := range []string{"nonblocking", "blocking"} {
		for _, m := range allMethods() {
			t.Run(mode+"/"+string(m), func(t *testing.T) {
				s := newSender(t, sendfile2.Config{Method: m})
				a, b := tcpPair(t)
				rc, err := a.SyscallConn()
				if err != nil {
					t.Fatal(err)
				}
				rc.Control(func(fd uintptr) { err = unix.SetNonblock(int(fd), mode == "nonblocking") })
				if err != nil {
					t.Fatal(err)
				}
				filler := fillSocket(t, a)
				type result struct {
					n   int64
					err error
				}
				done := make(chan result, 1)
				go func() {
					n, err := s.Send(context.Background(), a, f, 0, int64(len(data)))
					done <- result{n, err}
				}()
				time.Sleep(50 * time.Millisecond) // let the send reach its wait
				before := cpuTime(t)
				select {
				case r := <-done:
					t.Fatalf("Send = %d, %v, while the socket was full and the peer read nothing", r.n, r.err)
				case <-time.After(window):
				}
				if used := cpuTime(t) - before; used > window/5 {
					t.Errorf("the process used %v of CPU in %v while Send waited for room: it spins", used, window)
				}
				got := receive(b)
				var r result
				select {
				case r = <-done:
				case <-time.After(20 * time.Second):
					t.Fatal("Send did not finish within 20s of the peer reading")
				}
				a.Close()
				if r.err != nil || r.n != int64(len(data)) {
					t.Fatalf("Send = %d, %v", r.n, r.err)
				}
				if !bytes.Equal(<-got, append(filler, data...)) {
					t.Fatal("the peer did not receive the filler, then the file")
				}
			})
		}
	}
}

// openFDs is the number of open file descriptors of the process.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// sigpipeSince reports whether a SIGPIPE reached the process since the
// last call, through ch (signal.Notify for SIGPIPE and SIGALRM). It raises
// SIGALRM as a marker and takes the signals before it: a SIGPIPE raised by a
// system call is handled on the calling thread before the call returns, and
// os/signal hands over pending signals lowest number first, SIGPIPE (13)
// before SIGALRM (14).
func sigpipeSince(t *testing.T, ch <-chan os.Signal) bool {
	t.Helper()
	if err := unix.Kill(unix.Getpid(), unix.SIGALRM); err != nil {
		t.Fatal(os.NewSyscallError("kill", err))
	}
	pipe := false
	for {
		select {
		case sig := <-ch:
			if sig == unix.SIGALRM {
				return pipe
			}
			pipe = true
		case <-time.After(10 * time.Second):
			t.Fatal("SIGALRM did not arrive within 10s")
		}
	}
}

// TestLimitShutWrite: a socket shut down for writing before the send. Every
// method fails at once with EPIPE, sends nothing, and leaves no descriptor
// or send behind (newSender checks, after Close, that every buffer came back). No method kills the process with SIGPIPE: the safe
// ones raise none (MSG_NOSIGNAL), which a host program that keeps SIGPIPE's
// default action needs; the baselines' sendfile(2) and splice(2) have no
// such flag, and the Go runtime ignores the signal.
func TestLimitShutWrite(t *testing.T) {
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, unix.SIGPIPE, unix.SIGALRM)
	defer signal.Stop(ch)
	f, data := tempFile(t, 1<<20)
	for _, m := range allMethods() {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			a, b := tcpPair(t)
			if err := a.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			sigpipeSince(t, ch)
			fds := openFDs(t)
			done := make(chan error, 1)
			var n int64
			go func() {
				var err error
				n, err = s.Send(context.Background(), a, f, 0, int64(len(data)))
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Send to a socket shut down for writing did not return within 10s")
			}
			t.Logf("Send = %d, %v", n, err)
			if n != 0 || !errors.Is(err, syscall.EPIPE) {
				t.Errorf("Send = %d, %v; want 0 and EPIPE", n, err)
			}
			pipe := sigpipeSince(t, ch)
			switch {
			case pipe && m.Safe():
				t.Errorf("%s raised SIGPIPE", m)
			case pipe:
				t.Logf("%s raised SIGPIPE, which the Go runtime ignores", m)
			}
			if now := openFDs(t); now != fds {
				t.Errorf("%d descriptors open after Send, %d before", now, fds)
			}
			if st := s.Stats(); st.InFlight != 0 {
				t.Errorf("%d sends in flight after Send returned", st.InFlight)
			}
			b.SetReadDeadline(time.Now().Add(10 * time.Second))
			if r, err := io.ReadAll(b); len(r) != 0 || err != nil {
				t.Errorf("the peer read %d bytes, %v; want none and EOF", len(r), err)
			}
		})
	}
}
