package engine

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Socket is a connected stream socket to send on, with what Inspect learned
// about it.
type Socket struct {
	FD     int
	Family int           // AF_INET, AF_INET6, AF_UNIX...
	Peer   unix.Sockaddr // the peer's address
	Local  unix.Sockaddr // the local address, once looked up
}

// TCP reports whether the socket is TCP over IPv4 or IPv6, which alone
// sends zero-copy.
func (s *Socket) TCP() bool { return s.Family == unix.AF_INET || s.Family == unix.AF_INET6 }

// Inspect checks that fd is a connected stream socket (getsockopt(2) with
// SO_TYPE, getpeername(2)). The peer's address gives the family; for a
// family whose addresses x/sys/unix cannot decode, getsockopt(2) with
// SO_DOMAIN does.
func Inspect(fd int) (Socket, error) {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return Socket{}, os.NewSyscallError("getsockopt", err) // ENOTSOCK for files and pipes
	}
	if typ != unix.SOCK_STREAM {
		return Socket{}, fmt.Errorf("not a stream socket: %w", unix.EPROTOTYPE)
	}
	peer, err := unix.Getpeername(fd)
	if err != nil && err != unix.EAFNOSUPPORT {
		return Socket{}, os.NewSyscallError("getpeername", err) // ENOTCONN
	}
	family := unix.AF_UNSPEC
	switch peer.(type) {
	case *unix.SockaddrInet4:
		family = unix.AF_INET
	case *unix.SockaddrInet6:
		family = unix.AF_INET6
	case *unix.SockaddrUnix:
		family = unix.AF_UNIX
	default:
		if family, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil {
			return Socket{}, os.NewSyscallError("getsockopt", err)
		}
	}
	return Socket{FD: fd, Family: family, Peer: peer}, nil
}

// InspectConn is Inspect for the descriptor of c; the Socket's FD is -1.
func InspectConn(c syscall.Conn) (Socket, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Socket{FD: -1}, err
	}
	var sock Socket
	var ierr error
	if err := rc.Control(func(fd uintptr) { sock, ierr = Inspect(int(fd)) }); err != nil {
		return Socket{FD: -1}, err
	}
	sock.FD = -1
	return sock, ierr
}

// Dup duplicates c's descriptor after checking that it is a connected
// stream socket. The Socket's FD is the duplicate, which the caller closes.
func Dup(c syscall.Conn) (Socket, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Socket{FD: -1}, err
	}
	var sock Socket
	var derr error
	err = rc.Control(func(sfd uintptr) {
		if sock, derr = Inspect(int(sfd)); derr != nil {
			return
		}
		sock.FD, derr = unix.FcntlInt(sfd, unix.F_DUPFD_CLOEXEC, 0)
		if derr != nil {
			derr = os.NewSyscallError("fcntl", derr)
		}
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return Socket{FD: -1}, err
	}
	return sock, nil
}
