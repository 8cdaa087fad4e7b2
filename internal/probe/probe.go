package probe

import "sync"

// Features is what the kernel and this process offer. The JSON names are
// stable: the probe command prints them.
type Features struct {
	// Kernel is the uname(2) release, such as "6.18.44-fc-v657".
	Kernel string `json:"kernel"`

	// IOURing reports whether io_uring_setup(2) works in this process, and
	// IOURingReason says why not when it does not.
	IOURing       bool   `json:"io_uring"`
	IOURingReason string `json:"io_uring_reason,omitempty"`

	// SendZC reports IORING_OP_SEND_ZC (Linux 6.0).
	SendZC bool `json:"send_zc"`
	// SendmsgZC reports IORING_OP_SENDMSG_ZC (Linux 6.1).
	SendmsgZC bool `json:"sendmsg_zc"`
	// ZCReportUsage reports whether SEND_ZC accepts
	// IORING_SEND_ZC_REPORT_USAGE (Linux 6.2), which lets the notification
	// say whether the kernel copied the data.
	ZCReportUsage bool `json:"zc_report_usage"`
	// ReadFixed reports IORING_OP_READ_FIXED (Linux 5.1).
	ReadFixed bool `json:"read_fixed"`

	// DontCache reports whether preadv2(2) accepts RWF_DONTCACHE (Linux
	// 6.14) on a file in os.TempDir(); support depends on the filesystem.
	// DontCacheReason says why not.
	DontCache       bool   `json:"dontcache"`
	DontCacheReason string `json:"dontcache_reason,omitempty"`

	// MsgZerocopy reports whether setsockopt(SO_ZEROCOPY) works on a TCP
	// socket (Linux 4.14), and MsgZerocopyReason says why not.
	MsgZerocopy       bool   `json:"msg_zerocopy"`
	MsgZerocopyReason string `json:"msg_zerocopy_reason,omitempty"`

	// MemlockLimit is the RLIMIT_MEMLOCK soft limit in bytes,
	// math.MaxUint64 when unlimited.
	MemlockLimit uint64 `json:"memlock_limit_bytes"`
	// IOURingDisabled is /proc/sys/kernel/io_uring_disabled (Linux 6.6):
	// 0 allowed, 1 only for CAP_SYS_ADMIN or kernel.io_uring_group, 2
	// refused; -1 when the file is absent.
	IOURingDisabled int `json:"io_uring_disabled"`
	// Seccomp reports whether this process runs under a seccomp filter
	// ("Seccomp: 2" in /proc/self/status).
	Seccomp bool `json:"seccomp_filter"`
}

// run caches the first probe. Every probe here is conclusive for the life of
// the process: none of the answers can change without a restart (a sysctl
// could, but a process that saw io_uring refused keeps its fallback).
var run = sync.OnceValue(fresh)

// Run probes the kernel once per process and returns the cached result
// afterwards. It is safe for concurrent use.
func Run() Features { return run() }

// Fresh probes the kernel again, bypassing the cache of Run. It is for tests
// and the probe command.
func Fresh() Features { return fresh() }
