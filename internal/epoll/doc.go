// Package epoll waits for events on one file descriptor through a private
// epoll instance that Go's netpoller watches. It serves the senders that must
// wait on a socket without going through the socket's own net.Conn: waiting
// for room to write on a duplicated descriptor, or for notifications on the
// socket error queue (an EPOLLERR-only wakeup through the socket's own RawConn
// fails intermittently with "not pollable"; see docs/KERNEL-FACTS.md, section 4).
//
// Only Linux has epoll; on other systems the package is empty.
package epoll
