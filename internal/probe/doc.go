// Package probe reports what the running kernel and this process offer for
// safe zero-copy sending: whether io_uring can be set up here and, when it
// cannot, why (kernel too old, seccomp filter, kernel.io_uring_disabled,
// memory limits); which zero-copy opcodes and flags the kernel accepts
// (IORING_OP_SEND_ZC 6.0, IORING_OP_SENDMSG_ZC 6.1,
// IORING_SEND_ZC_REPORT_USAGE 6.2, IORING_OP_READ_FIXED 5.1); whether
// RWF_DONTCACHE (6.14) works on the temporary directory's filesystem; and
// whether MSG_ZEROCOPY (4.14), the path without io_uring, is available.
//
// Every answer comes from trying the operation, never from the kernel
// version alone: backports, seccomp profiles and sysctls make version checks
// wrong in both directions. The version only serves to explain a failure.
//
// Run probes once per process and caches the result; Fresh probes again. On
// systems other than Linux every feature is false and the reasons say
// "not Linux".
package probe
