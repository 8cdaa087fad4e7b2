package testutil

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RefuseEnv, in a test process's environment, asks TestMain (through
// RefuseIOURingFromEnv) to run the tests with io_uring refused: "EPERM" or
// "ENOSYS" install a seccomp filter that fails io_uring_setup(2) with that
// errno, as container runtimes' default profiles do; "sysctl" says that the
// parent set kernel.io_uring_disabled.
const RefuseEnv = "SENDFILE2_TEST_REFUSE_IO_URING"

// RefuseIOURingFromEnv applies RefuseEnv. Call it from TestMain before the
// tests run.
func RefuseIOURingFromEnv() error {
	switch v := os.Getenv(RefuseEnv); v {
	case "":
		return nil
	case "EPERM":
		return RefuseIOURing(unix.EPERM)
	case "ENOSYS":
		return RefuseIOURing(unix.ENOSYS)
	case "sysctl":
		refused = "kernel.io_uring_disabled"
		return nil
	default:
		return fmt.Errorf("%s=%q: want EPERM, ENOSYS or sysctl", RefuseEnv, v)
	}
}

// RefuseIOURing installs, on every thread of the process, a seccomp filter
// that fails io_uring_setup(2) with errno. It cannot be undone: use it in a
// child process. Afterwards RequireFeature skips io_uring features.
func RefuseIOURing(errno syscall.Errno) error {
	if err := RefuseSyscall(unix.SYS_IO_URING_SETUP, errno); err != nil {
		return err
	}
	refused = "a seccomp filter (" + unix.ErrnoName(errno) + ")"
	return nil
}

// RefuseSyscall installs, on every thread of the process, a seccomp filter
// that fails the system call nr with errno. It cannot be undone: use it in a
// child process.
func RefuseSyscall(nr uintptr, errno syscall.Errno) error {
	const (
		nrOffset   = 0 // struct seccomp_data.nr
		archOffset = 4 // struct seccomp_data.arch
	)
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: archOffset},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: auditArch, Jt: 1, Jf: 0},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: nrOffset},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(nr), Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(errno)&unix.SECCOMP_RET_DATA},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl", err)
	}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); e != 0 {
		return os.NewSyscallError("seccomp", e)
	}
	return nil
}
