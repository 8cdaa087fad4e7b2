//go:build !linux

package main

import (
	"net"
	"syscall"
)

// sockStat is what the connection tracker reads of a TCP socket.
type sockStat struct {
	acked, received uint64
	outq, inq       int
}

// sockStatOf reads nothing on this system: the tracker cuts no stalled
// conn.
func sockStatOf(net.Conn) (sockStat, bool) { return sockStat{}, false }

// abortSocket makes c's close abortive (SO_LINGER 0).
func abortSocket(c net.Conn) {
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) {
				syscall.SetsockoptLinger(int(fd), syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
			})
		}
	}
}
