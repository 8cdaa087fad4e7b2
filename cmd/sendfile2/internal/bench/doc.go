// Package bench is the instrument behind `sendfile2 bench`: it sends a file
// range (or a buffer) over TCP, on loopback or across a veth pair between two
// network namespaces it creates, with each send method in turn, and reports
// throughput, the sender's CPU time and what the kernel said it copied.
//
// With Direction Receive the roles flip: the peer process writes from memory
// with write(2), the cheapest way to send, and this process receives each
// connection with Sender.Receive into a new file on disk, removed after the
// round; the report then adds how much the page cache (Cached in
// /proc/meminfo) grew per round, to compare RWF_DONTCACHE (the
// "uring+dontcache" entry) with the page cache's usual way.
//
// The peer (the receiver, or with Receive the sender) runs in a child
// process, the same binary started again with an environment variable that
// ServeIfReceiver recognizes, so that this process's CPU time (getrusage(2)
// RUSAGE_SELF) counts the measured side only. A program that calls Run must
// call ServeIfReceiver first thing (from main, an init function, or
// TestMain).
//
// Methods run interleaved, round by round (A B C A B C ...), so that drift on
// a shared machine hits every method alike. No number is checked against a
// target here: this package measures, the docs interpret.
//
// What the numbers mean on loopback and veth: the kernel copies every
// zero-copy send that is delivered to a local socket (docs/KERNEL-FACTS.md, section 3),
// so zero-copy methods show their overhead, never their gain; the copied
// fraction says so. On loopback the sender's CPU time also includes part of
// the receiving side's TCP processing (softirq work done in the sender's
// context), for every method alike.
//
// Linux only; elsewhere Run fails with an error matching
// sendfile2.ErrNotSupported.
package bench
