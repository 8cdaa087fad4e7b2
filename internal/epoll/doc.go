// Package epoll waits for events on file descriptors through epoll instances
// that Go's netpoller watches. It serves the senders that must wait on a
// socket without going through the socket's own net.Conn (whose deadlines
// are the caller's): a Poller is one instance for many descriptors, where
// sends wait for room and receives for data, on a duplicated descriptor or
// a conn's own; a Waiter is a private instance for one descriptor, for the
// notifications on a socket's error queue (an EPOLLERR-only wakeup through
// the socket's own RawConn fails intermittently with "not pollable";
// docs/KERNEL-FACTS.md, section 4).
//
// Only Linux has epoll; on other systems the package is empty.
package epoll
