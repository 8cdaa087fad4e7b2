package peer

import (
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// setRcvbuf sets SO_RCVBUFFORCE to size where the process may
// (CAP_NET_ADMIN), which passes net.core.rmem_max, else SO_RCVBUF.
func setRcvbuf(c syscall.RawConn, size int) error {
	var err error
	cerr := c.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
		if err == unix.EPERM {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		}
	})
	if cerr != nil {
		return cerr
	}
	return os.NewSyscallError("setsockopt SO_RCVBUF", err)
}

// getRcvbuf is SO_RCVBUF as getsockopt(2) reads it, 0 if it cannot.
func getRcvbuf(c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	v := 0
	rc.Control(func(fd uintptr) { v, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
	return v
}
