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

// clampWindow limits c's receive buffer to size bytes (SO_RCVBUF) and
// returns it as getsockopt(2) reads it.
func clampWindow(c *net.TCPConn, size int) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	v := 0
	rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
		v, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	})
	return v
}
