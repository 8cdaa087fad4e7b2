package probe

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/uring"
)

// fresh runs every probe once.
func fresh() Features {
	f := Features{Kernel: uname(), IOURingDisabled: -1}
	k := kernelOf(f.Kernel)
	status, _ := readStatus()
	f.Seccomp = status.Seccomp == 2
	if n, err := readSysctlInt("/proc/sys/kernel/io_uring_disabled"); err == nil {
		f.IOURingDisabled = n
	}
	f.MemlockLimit, _ = memlockLimit()

	probeIOURing(&f, k, status)
	f.DontCache, f.DontCacheReason = probeDontCache(os.TempDir(), k)
	if err := msgZerocopy(k); err != nil {
		f.MsgZerocopyReason = err.Error()
		var e *Error
		if errors.As(err, &e) {
			f.MsgZerocopyReason = e.Reason
		}
	} else {
		f.MsgZerocopy = true
	}
	return f
}

// uname returns the kernel release from uname(2), or "" when it fails.
func uname() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// readStatus reads /proc/self/status.
func readStatus() (procStatus, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return procStatus{Seccomp: -1}, err
	}
	return parseStatus(data), nil
}

// readSysctlInt reads an integer sysctl from its file under /proc/sys.
func readSysctlInt(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := parseSysctlInt(data)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// memlockLimit returns the RLIMIT_MEMLOCK soft limit; it wraps getrlimit(2).
// RLIM_INFINITY is math.MaxUint64.
func memlockLimit() (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		return 0, os.NewSyscallError("getrlimit", err)
	}
	return rl.Cur, nil
}

// probeIOURing sets up a small ring with io_uring_setup(2) and, when that
// works, lists its opcodes with IORING_REGISTER_PROBE and tries
// IORING_SEND_ZC_REPORT_USAGE. When setup fails it fills IOURingReason.
func probeIOURing(f *Features, k kernelVersion, status procStatus) {
	ring, err := uring.NewRing(8, 16)
	if err != nil {
		f.IOURingReason = explainSetup(err, f, k, status)
		return
	}
	defer ring.Close()
	f.IOURing = true

	p, err := ring.Probe()
	if err != nil {
		// IORING_REGISTER_PROBE came in 5.6; the zero-copy opcodes are
		// all younger, and READ_FIXED (5.1) is older than the 5.4 that
		// NewRing needs.
		f.ReadFixed = true
		return
	}
	f.SendZC = p.Supports(uring.OpSendZC)
	f.SendmsgZC = p.Supports(uring.OpSendmsgZC)
	f.ReadFixed = p.Supports(uring.OpReadFixed)
	if f.SendZC {
		f.ZCReportUsage, _ = sendZCFlagsAccepted(ring, uring.SendZCReportUsage)
	}
}

// explainSetup turns the error of uring.NewRing into IOURingReason.
func explainSetup(err error, f *Features, k kernelVersion, status procStatus) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err.Error()
	}
	var se *os.SyscallError
	if errors.As(err, &se) && se.Syscall != "io_uring_setup" {
		// The ring was set up, then mapping it failed.
		return err.Error()
	}
	group := -1
	if n, err := readSysctlInt("/proc/sys/kernel/io_uring_group"); err == nil {
		group = n
	}
	groups, _ := unix.Getgroups()
	return setupReason(errno, setupFacts{
		Kernel:     k,
		Seccomp:    f.Seccomp,
		Disabled:   f.IOURingDisabled,
		Memlock:    f.MemlockLimit,
		Privileged: privileged(status.CapEff, group, unix.Getegid(), groups),
	})
}

// sendZCFlagsAccepted submits one IORING_OP_SEND_ZC of one byte with
// zcFlags (such as IORING_SEND_ZC_REPORT_USAGE) on ring and reports whether
// the kernel accepted the flags. IORING_REGISTER_PROBE lists opcodes, not
// flags, so a flag is tried.
//
// The socket is one end of a unix socketpair(2). Unix sockets do not do
// zero-copy, so the send fails with -EOPNOTSUPP and no byte moves; but the
// kernel validates the flags while preparing the request, before it looks at
// the socket, and answers -EINVAL for a flag it does not know. Measured on
// 6.18: REPORT_USAGE gives -EOPNOTSUPP on a unix socket (and sends the byte
// on TCP), an unknown flag (1<<7) gives -EINVAL on both. Either way the
// result CQE carries IORING_CQE_F_MORE and a notification follows: it is
// reaped before returning, so the ring is left empty.
func sendZCFlagsAccepted(ring *uring.Ring, zcFlags uint16) (bool, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, os.NewSyscallError("socketpair", err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])

	// Heap memory, which does not move, kept alive until the notification.
	buf := make([]byte, 1)
	const userData = 1
	sqe := ring.SQE()
	if sqe == nil {
		return false, uring.ErrRingFull
	}
	// MSG_DONTWAIT: should a kernel ever accept the send, it must not block.
	sqe.PrepSendZC(fds[0], unsafe.Pointer(&buf[0]), 1, unix.MSG_DONTWAIT, zcFlags, 0)
	sqe.UserData = userData
	if n, err := ring.Submit(); err != nil || n != 1 {
		ring.Retract()
		if err == nil {
			err = errors.New("send zc: submission not consumed")
		}
		return false, err
	}
	res, err := waitFinal(ring, userData)
	runtime.KeepAlive(buf)
	if err != nil {
		return false, err
	}
	return res != -int32(unix.EINVAL), nil
}

// waitFinal waits with io_uring_enter(2) for the CQEs of the request
// userData until its final one (the notification when the result carried
// IORING_CQE_F_MORE) and returns the result CQE's res.
func waitFinal(ring *uring.Ring, userData uint64) (int32, error) {
	var res int32
	cqes := make([]uring.CQE, 0, 4)
	for {
		if err := ring.Wait(1); err != nil {
			return 0, err
		}
		cqes = ring.Reap(cqes[:0])
		for _, c := range cqes {
			if c.UserData != userData {
				continue
			}
			if !c.Notif() {
				res = c.Res
			}
			if c.Final() {
				return res, nil
			}
		}
	}
}

// probeDontCache writes 4 KiB to a temporary file in dir and reads it back
// with preadv2(2) and RWF_DONTCACHE (Linux 6.14). Support depends on the
// filesystem. The file is removed before returning.
func probeDontCache(dir string, k kernelVersion) (bool, string) {
	file, err := os.CreateTemp(dir, "sendfile2-probe-*")
	if err != nil {
		return false, "cannot create a test file: " + err.Error()
	}
	defer os.Remove(file.Name())
	defer file.Close()

	buf := make([]byte, 4096)
	if _, err := file.Write(buf); err != nil {
		return false, "cannot write a test file: " + err.Error()
	}
	rc, err := file.SyscallConn()
	if err != nil {
		return false, err.Error()
	}
	var rerr error
	if err := rc.Control(func(fd uintptr) {
		_, rerr = unix.Preadv2(int(fd), [][]byte{buf}, 0, unix.RWF_DONTCACHE)
	}); err != nil {
		return false, err.Error()
	}
	if rerr == nil {
		return true, ""
	}
	rerr = os.NewSyscallError("preadv2", rerr)
	var errno syscall.Errno
	if !errors.As(rerr, &errno) {
		return false, rerr.Error()
	}
	return false, dontcacheReason(errno, k, dir)
}
