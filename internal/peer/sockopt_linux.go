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

// clampWindow limits the window c advertises to size bytes
// (TCP_WINDOW_CLAMP) and returns the clamp as getsockopt(2) reads it back.
// Unlike a small SO_RCVBUF set after the handshake, which makes the kernel
// drop segments that the window it advertised before still admitted, the
// clamp keeps the receive buffer and only stops the window from opening.
func clampWindow(c *net.TCPConn, size int) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	v := 0
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_WINDOW_CLAMP, size)
		v, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_WINDOW_CLAMP)
	})
	return v
}
