//go:build !linux

package peer

import (
	"net"
	"syscall"
)

// setRcvbuf sets SO_RCVBUF to size.
func setRcvbuf(c syscall.RawConn, size int) error {
	var err error
	cerr := c.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// getRcvbuf is SO_RCVBUF as getsockopt(2) reads it, 0 if it cannot.
func getRcvbuf(c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	v := 0
	rc.Control(func(fd uintptr) { v, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) })
	return v
}
