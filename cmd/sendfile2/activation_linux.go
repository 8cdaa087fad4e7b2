package main

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// isMPTCP reports whether l is an MPTCP socket (getsockopt SO_PROTOCOL).
func isMPTCP(l *net.TCPListener) (bool, error) {
	rc, err := l.SyscallConn()
	if err != nil {
		return false, err
	}
	var proto int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		proto, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	}); err != nil {
		return false, err
	}
	if serr != nil {
		return false, os.NewSyscallError("getsockopt SO_PROTOCOL", serr)
	}
	return proto == unix.IPPROTO_MPTCP, nil
}
