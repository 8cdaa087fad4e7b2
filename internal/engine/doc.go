// Package engine moves bytes between files and sockets: the methods that
// sendfile2's Sender chooses among (uring, uring-mmap, msgzc, copy, and the
// sendfile and splice baselines), the receive side, and what they share (the
// io_uring Loop, the registered buffers, the kept mappings of files).
//
// A send goes in as a Job (a socket, a file and its fstat, a header, a range,
// a context) and comes out as an Outcome (bytes, error, zero-copy and copied
// bytes, fallbacks taken). Every engine returns only when the kernel holds no
// reference to the caller's data. The policy (which engine, when to demote,
// what to count, when a send ends) is the root package's: no engine knows
// the Sender.
package engine
