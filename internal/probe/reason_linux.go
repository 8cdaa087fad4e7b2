package probe

import (
	"fmt"
	"math"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// The reason functions turn an errno and the facts around it into a short
// sentence that names the cause and the fix. They are pure, so a table test
// can cover every branch.

// kernelVersion is a kernel's major.minor; the zero value means unknown.
type kernelVersion struct{ Major, Minor int }

// olderThan reports whether v is known and older than major.minor.
func (v kernelVersion) olderThan(major, minor int) bool {
	if v.Major == 0 {
		return false
	}
	return v.Major < major || v.Major == major && v.Minor < minor
}

func (v kernelVersion) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// setupFacts is what setupReason weighs besides the errno.
type setupFacts struct {
	Kernel     kernelVersion
	Seccomp    bool   // the process runs under a seccomp filter
	Disabled   int    // kernel.io_uring_disabled, -1 when absent
	Memlock    uint64 // RLIMIT_MEMLOCK soft limit in bytes
	Privileged bool   // CAP_SYS_ADMIN, or member of kernel.io_uring_group
}

// errnoText is "operation not permitted (EPERM)".
func errnoText(errno syscall.Errno) string {
	if name := unix.ErrnoName(errno); name != "" {
		return fmt.Sprintf("%v (%s)", errno, name)
	}
	return errno.Error()
}

// setupReason explains why io_uring_setup(2) (or the ring setup around it)
// failed with errno.
func setupReason(errno syscall.Errno, f setupFacts) string {
	seccomp := func() string {
		return fmt.Sprintf("io_uring_setup refused by a seccomp filter (%s): allow io_uring_setup, "+
			"io_uring_enter and io_uring_register in the profile or run without it "+
			"(containers: Docker's and containerd's default profiles block io_uring)", unix.ErrnoName(errno))
	}
	switch errno {
	case unix.ENOSYS:
		switch {
		case f.Kernel.olderThan(5, 1):
			return fmt.Sprintf("kernel %v is older than 5.1, which brought io_uring", f.Kernel)
		case f.Kernel.olderThan(5, 4):
			// NewRing reports ENOSYS itself when IORING_FEAT_SINGLE_MMAP is missing.
			return fmt.Sprintf("kernel %v is older than 5.4, which brought IORING_FEAT_SINGLE_MMAP that sendfile2's ring needs", f.Kernel)
		case f.Seccomp:
			return seccomp()
		}
		return "io_uring_setup is not implemented (ENOSYS): the kernel was built without CONFIG_IO_URING, or a sandbox hides it"
	case unix.EPERM:
		switch {
		case f.Disabled == 2:
			return "io_uring disabled by kernel.io_uring_disabled=2; sysctl kernel.io_uring_disabled=0 enables it"
		case f.Disabled == 1 && !f.Privileged:
			return "kernel.io_uring_disabled=1 allows io_uring only for CAP_SYS_ADMIN or the group in kernel.io_uring_group; " +
				"add this user to that group or set kernel.io_uring_disabled=0"
		case f.Seccomp:
			return seccomp()
		}
		return "io_uring_setup refused (EPERM) though neither kernel.io_uring_disabled nor a seccomp filter forbids it: " +
			"a security module (SELinux, AppArmor) may deny it"
	case unix.ENOMEM:
		if f.Kernel.olderThan(5, 12) || f.Kernel.Major == 0 {
			if f.Memlock == math.MaxUint64 {
				return "not enough memory for the ring (ENOMEM), though RLIMIT_MEMLOCK is unlimited"
			}
			return fmt.Sprintf("the memlock limit (RLIMIT_MEMLOCK = %d bytes) is too small for the ring; raise it with ulimit -l", f.Memlock)
		}
		if f.Memlock == math.MaxUint64 {
			return "not enough memory for the ring (ENOMEM): its memory is charged to the memory cgroup; raise the cgroup's memory limit"
		}
		// 5.12 moved the rings' charge to the memory cgroup; recent kernels
		// (6.18 measured) charge them to RLIMIT_MEMLOCK again as well,
		// without CAP_IPC_LOCK: a 64 KiB limit refuses a 256-entry ring.
		return fmt.Sprintf("not enough memory for the ring (ENOMEM): without CAP_IPC_LOCK the ring counts against "+
			"RLIMIT_MEMLOCK (%d bytes; raise it with ulimit -l), and against the memory cgroup's limit", f.Memlock)
	}
	return "io_uring_setup failed: " + errnoText(errno)
}

// dontcacheReason explains why preadv2(2) with RWF_DONTCACHE failed with
// errno on a file in dir.
func dontcacheReason(errno syscall.Errno, k kernelVersion, dir string) string {
	switch {
	case (errno == unix.EOPNOTSUPP || errno == unix.EINVAL) && k.olderThan(6, 14):
		// Kernels refuse RWF_* flags they do not know with EOPNOTSUPP.
		return fmt.Sprintf("kernel %v is older than 6.14, which brought RWF_DONTCACHE", k)
	case errno == unix.EOPNOTSUPP:
		return fmt.Sprintf("the filesystem holding %s does not support RWF_DONTCACHE (EOPNOTSUPP); reads there go through the page cache", dir)
	case errno == unix.ENOSYS:
		return "preadv2 is not implemented (ENOSYS): kernel older than 4.6, or a seccomp filter refuses it"
	}
	return "preadv2 with RWF_DONTCACHE failed: " + errnoText(errno)
}

// msgZerocopyReason explains why setsockopt(SO_ZEROCOPY) failed with errno
// on a TCP socket.
func msgZerocopyReason(errno syscall.Errno, k kernelVersion) string {
	switch {
	case errno == unix.ENOPROTOOPT && k.olderThan(4, 14):
		return fmt.Sprintf("kernel %v is older than 4.14, which brought MSG_ZEROCOPY", k)
	case errno == unix.ENOPROTOOPT:
		return "the kernel does not know SO_ZEROCOPY (ENOPROTOOPT)"
	case errno == unix.EOPNOTSUPP:
		return "this kernel's TCP sockets refuse SO_ZEROCOPY (EOPNOTSUPP)"
	}
	return "setsockopt(SO_ZEROCOPY) failed: " + errnoText(errno)
}

// privileged reports whether io_uring_allowed() in the kernel would pass
// with kernel.io_uring_disabled=1: CAP_SYS_ADMIN in the effective set, or
// group (kernel.io_uring_group, -1 for none) among the egid and the
// supplementary groups. CapEff is relative to the process's user namespace
// while the kernel asks the initial one, so inside a user namespace this
// can say yes where the kernel says no.
func privileged(capEff uint64, group, egid int, groups []int) bool {
	const capSysAdmin = 21
	if capEff&(1<<capSysAdmin) != 0 {
		return true
	}
	if group < 0 {
		return false
	}
	return egid == group || slices.Contains(groups, group)
}
