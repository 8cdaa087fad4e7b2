package probe

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/uring"
)

// The questions a Sender asks, answered with nil, an *Error (which matches
// ErrNotSupported), or another error when the question could not be asked.
// The Sender tries the real operation first and asks here only to explain a
// failure, except for MsgZerocopy, which is the real operation.

// URingSetup explains err, the failure of setting up a ring. ENOSYS, EPERM
// and EOPNOTSUPP say "not here": they give an *Error with the reason (the
// kernel, kernel.io_uring_disabled, a seccomp filter). ENOMEM names
// RLIMIT_MEMLOCK.
func URingSetup(err error) error {
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("io_uring: %w", Memlock(err))
	}
	f := Features{Kernel: uname(), IOURingDisabled: -1}
	status, _ := readStatus()
	f.Seccomp = status.Seccomp == 2
	if n, rerr := readSysctlInt("/proc/sys/kernel/io_uring_disabled"); rerr == nil {
		f.IOURingDisabled = n
	}
	f.MemlockLimit, _ = memlockLimit()
	return &Error{Feature: "io_uring", Since: "5.4", Reason: explainSetup(err, &f, kernelOf(f.Kernel), status), Err: err}
}

// URingOps reports the first of ops that the ring's probe p lacks.
func URingOps(p *uring.Probe, ops ...uint8) error {
	for _, op := range ops {
		if !p.Supports(op) {
			return &Error{Feature: "IORING_OP_" + uring.OpName(op), Since: opSince(op), Reason: "this kernel's io_uring lacks it"}
		}
	}
	return nil
}

// opSince is the kernel that brought op, for the opcodes the Sender needs.
func opSince(op uint8) string {
	switch op {
	case uring.OpReadFixed:
		return "5.1"
	case uring.OpRecv:
		return "5.6"
	}
	return "6.0"
}

// MsgZerocopy reports whether TCP sockets take SO_ZEROCOPY (Linux 4.14): it
// opens a TCP socket with socket(2), IPv4 or else IPv6, and sets the option
// with setsockopt(2).
func MsgZerocopy() error { return msgZerocopy(kernelOf(uname())) }

func msgZerocopy(k kernelVersion) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if errors.Is(err, unix.EAFNOSUPPORT) {
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	}
	if err != nil {
		return fmt.Errorf("cannot open a TCP socket: %w", os.NewSyscallError("socket", err))
	}
	defer unix.Close(fd)
	err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ZEROCOPY, 1)
	if err == nil {
		return nil
	}
	err = os.NewSyscallError("setsockopt", err)
	reason := err.Error()
	var errno syscall.Errno
	if errors.As(err, &errno) {
		reason = msgZerocopyReason(errno, k)
	}
	return &Error{Feature: "MSG_ZEROCOPY", Since: "4.14", Reason: reason, Err: err}
}

// Memlock names RLIMIT_MEMLOCK in an ENOMEM from io_uring: without
// CAP_IPC_LOCK the kernel charges to that limit the memory io_uring pins
// (its rings, registered buffers, the pages of a zero-copy send from a
// mapping), and a low limit is the usual cause.
func Memlock(err error) error {
	var rl unix.Rlimit
	if !errors.Is(err, unix.ENOMEM) || unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl) != nil || rl.Cur == unix.RLIM_INFINITY {
		return err
	}
	return fmt.Errorf("RLIMIT_MEMLOCK is %d bytes, and without CAP_IPC_LOCK the memory io_uring pins counts against it: %w", rl.Cur, err)
}

// kernelOf parses a uname(2) release; the zero value when it cannot.
func kernelOf(release string) kernelVersion {
	if major, minor, ok := parseRelease(release); ok {
		return kernelVersion{major, minor}
	}
	return kernelVersion{}
}
