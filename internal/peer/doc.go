// Package peer is the far end of a safety check or benchmark between two
// machines: a receiver that one host runs (`sendfile2 peer --listen ADDR`)
// and that a sender on another host drives over a small control protocol,
// as iperf3 does.
//
// The peer listens on two ports: one for control connections and data
// connections with a large window, one for data connections with a small
// window (a receive buffer of 4 KiB from the handshake on).
//
// A client opens a control connection (Dial), asks for a data connection
// (Session.Open) and sends on it with whatever method it tests. The peer
// reads the data connection only when the client asks it to (Session.Read,
// Session.Drain), so the client can hold it back while it changes the file
// it sent, and it compares every byte it reads with a stream the client
// named by a seed (ChaCha8), so that it can count the bytes that arrived
// changed without the data being sent twice. It can also reset or close the
// data connection on request, and it reports the CPU time it used.
//
// # What the peer exposes
//
// Anyone who can reach the peer's ports can do what a client does, and
// nothing more:
//
//   - make it accept TCP connections on its ports and read from them into a
//     buffer that is compared with a generated stream and then dropped. The
//     peer never writes to a file, never opens one, never connects anywhere,
//     and sends back only fixed-size replies (64 bytes): counts of bytes
//     received and changed, the first changed offset, whether the stream
//     ended, the receive buffer the kernel granted, the port of the second
//     listener, and the CPU time of the peer process. The CPU it spends is
//     in proportion to the bytes sent to it, plus at most 64 MiB of stream
//     generated per data connection asked for (where the comparison
//     starts).
//   - hold a data connection unread, up to the idle timeout (Server.Idle, 2
//     minutes by default), with a receive buffer of Server.MaxRcvbuf (8
//     MiB): kernel memory of at most 2 x MaxSessions x MaxRcvbuf (the
//     kernel doubles the buffer). A control connection's receive buffer
//     shrinks to 4 KiB once it has said what it is, and a data connection
//     is closed when its session ends, or asks for another one, even if
//     it joined meanwhile. At most 3 x MaxSessions connections are open,
//     counting those that have not said what they are yet.
//   - reset or close the data connection of its own session. A data
//     connection joins a session only with the session's random 128-bit
//     token, which the peer sends on that session's control connection.
//
// Every message has a fixed size (96 bytes from the client, 64 from the
// peer) and a magic number and version; anything else closes the
// connection. Every read from a client has a deadline, at most
// Server.MaxSessions control connections are served at once (more are
// answered "busy" and closed), and a connection that has not said what it
// is within 10 seconds is closed. There is no authentication and no
// encryption: run the peer on a network you trust, or behind a firewall that
// admits only the sender.
package peer
