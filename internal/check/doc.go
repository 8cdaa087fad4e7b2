// Package check proves, on the running kernel, whether a way of sending a file
// to a socket is safe: whether the caller may overwrite or truncate the file
// as soon as the send returns without changing what the peer receives.
//
// sendfile(2) and splice(2) are not safe in that sense: they return while
// socket buffers still reference the file's page-cache pages, so a write to
// the file after the call can still reach the peer (docs/KERNEL-FACTS.md, section 1).
// Run puts a send method through that situation on a loopback TCP connection
// whose receiver is held back until the file has changed, and counts the bytes
// the receiver got wrong. It is the harness behind `sendfile2 check`. With
// Options.Peer the receiver is a peer (package peer) on another machine,
// across a real network device, which counts the changed bytes itself.
//
// The package knows nothing of sendfile2's own methods: the send operation is
// a SendFunc. Only Linux is supported; on other systems Run returns an error
// matching errors.ErrUnsupported.
package check
