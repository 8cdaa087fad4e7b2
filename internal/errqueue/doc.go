// Package errqueue parses what recvmsg(2) with MSG_ERRQUEUE returns for a TCP
// socket that sends with MSG_ZEROCOPY (Linux 4.14+), and counts the
// zero-copy send calls that the kernel has released.
//
// Each successful send(2) with MSG_ZEROCOPY on a socket with SO_ZEROCOPY set
// takes the next value of a per-socket 32-bit counter. When the kernel no
// longer references the pages of a range of those calls, it queues on the
// socket's error queue a struct sock_extended_err (linux/errqueue.h) with
// ee_origin SO_EE_ORIGIN_ZEROCOPY and the inclusive range [ee_info, ee_data]
// of the counter, in a control message SOL_IP/IP_RECVERR or
// SOL_IPV6/IPV6_RECVERR. ee_code has SO_EE_CODE_ZEROCOPY_COPIED when the
// kernel copied the data after all (always so on loopback and veth). The
// kernel merges adjacent ranges while they wait in the queue, and ranges may
// come out of order; the counter wraps.
//
// Parse reads the control messages of one recvmsg call; it makes no system
// call and is safe on arbitrary bytes. Tracker tells when every call of one
// send has been notified. The package reads Linux's layout on any system.
package errqueue
