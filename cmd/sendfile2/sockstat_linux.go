package main

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockStat is what the connection tracker reads of a TCP socket.
type sockStat struct {
	acked    uint64 // bytes the peer acknowledged (tcpi_bytes_acked, Linux 4.1+)
	received uint64 // bytes received from the peer (tcpi_bytes_received, Linux 4.1+)
	outq     int    // bytes queued to send, unsent or unacknowledged (SIOCOUTQ)
	inq      int    // bytes received and not read yet (SIOCINQ)
}

// sockStatOf reads the state of c's socket; ok is false if c is closed or
// not a TCP socket.
func sockStatOf(c net.Conn) (st sockStat, ok bool) {
	sc, isSC := c.(syscall.Conn)
	if !isSC {
		return st, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return st, false
	}
	cerr := rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return
		}
		outq, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		if err != nil {
			return
		}
		inq, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		if err != nil {
			return
		}
		st = sockStat{acked: info.Bytes_acked, received: info.Bytes_received, outq: outq, inq: inq}
		ok = true
	})
	return st, ok && cerr == nil
}

// abortSocket resets c's connection now: SO_LINGER 0 for the close to come,
// and connect(2) to AF_UNSPEC, which disconnects a TCP socket at once
// (tcp_disconnect: a RST to the peer, the send and receive queues purged).
// A close alone would wait: the socket stays open while a send holds its
// descriptor, and a zero-copy send that stopped still waits for the kernel
// to let go of what it queued, which a peer that does not read never
// acknowledges. Once the queue is purged, the kernel lets go.
func abortSocket(c net.Conn) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		sa := unix.RawSockaddr{Family: unix.AF_UNSPEC}
		unix.Syscall(unix.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	})
}
