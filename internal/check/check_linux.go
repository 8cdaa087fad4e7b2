package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// minBuffer is the socket buffer size Run asks for on both ends of every
// connection: SO_RCVBUF on the receiving side, SO_SNDBUF on the sending side,
// with the FORCE variants where the process may (CAP_NET_ADMIN), which pass
// net.core.rmem_max and wmem_max. Run asks for twice the file size when that
// is more.
//
// A safe method that waits for the peer's acknowledgement returns only once
// the whole file sits in the receive queue of the receiver that does not read
// yet, so the receive window must hold the file. Measured on Linux 6.18
// (loopback, 2 vCPU, as root; TestHeldBackCapacity measures it again): asking
// for 2 MiB (the kernel doubles it, getsockopt reads 4194304), a held-back
// receiver had acknowledged 1179648 bytes when the sender's write(2) first met
// EAGAIN (4.5 times DefaultSize), and 4126383 bytes once the window had grown
// (with 4190912 more unsent in the sender's queue); sendfile(2) gave the same.
// With the system defaults (SO_RCVBUF 131072) it acknowledged only 113152
// bytes, less than half of DefaultSize, and a safe method never returned.
// Files of 1 to 8 MiB (buffers of twice their size) passed too.
const minBuffer = 2 << 20

func bufferSize(size int) int {
	return int(min(max(minBuffer, 2*int64(size)), math.MaxInt32/2))
}

// Run checks send: for each scenario, Options.Rounds times, it writes a file
// of Options.Size random bytes, connects a TCP socket over 127.0.0.1 whose
// receiver does not read yet, calls send for the whole file and, right after it
// returns, changes the file as the scenario says. Only then the receiver reads,
// and every byte it got that differs from the file as it was before the send
// counts as corrupted. A safe method corrupts none.
//
// Run never hangs on a send that does not return: after Options.Timeout it
// lets the receiver read, then cancels the send's context and closes its
// connection, and waits for it to return.
func Run(ctx context.Context, send SendFunc, opts Options) Outcome {
	opts = opts.withDefaults()
	var out Outcome
	if opts.Rounds < 0 || opts.Size < 0 || opts.Timeout < 0 {
		out.Err = fmt.Errorf("check: bad options: rounds %d, size %d, timeout %v", opts.Rounds, opts.Size, opts.Timeout)
		return out
	}
	if opts.Peer != "" {
		return runRemote(ctx, send, opts)
	}
	r := &runner{send: send, opts: opts, buf: bufferSize(opts.Size)}
	ln, err := listen(ctx, r.buf)
	if err != nil {
		out.Err = fmt.Errorf("check: %w", err)
		return out
	}
	defer ln.Close()
	r.ln = ln
	small, err := listen(ctx, queuedWindow)
	if err != nil {
		out.Err = fmt.Errorf("check: %w", err)
		return out
	}
	defer small.Close()
	r.small = small
	return playRounds(ctx, opts, "", r.round)
}

type runner struct {
	send  SendFunc
	opts  Options
	buf   int
	ln    *net.TCPListener
	small *net.TCPListener // a small receive window, for Queued
}

type sendResult struct {
	n   int64
	err error
}

type recvResult struct {
	n   int   // bytes read into the buffer, at most the file size
	err error // why fewer bytes came, or that more came
}

// round plays scenario s once. It returns the bytes checked and corrupted,
// and the error that kept the round from being checked, if any.
func (r *runner) round(ctx context.Context, s Scenario) (checked, corrupted int64, err error) {
	size := r.opts.Size
	f, want, _, err := randomFile(r.opts.Dir, size)
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close() // after the send has returned: see the waits below

	ln := r.ln
	if s == Queued {
		ln = r.small
	}
	sc, rc, err := r.connect(ctx, ln)
	if err != nil {
		return 0, 0, err
	}
	defer sc.Close()

	// The receiver waits for start. Every way out of round closes rc, which
	// ends a read in progress, and waits for the receiver.
	got := make([]byte, size)
	start := make(chan struct{})
	started := false
	release := func() {
		if !started {
			started = true
			close(start)
		}
	}
	var rr recvResult
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		<-start
		rr = receive(rc, got, r.opts.Timeout)
	}()
	defer func() {
		rc.Close()
		release()
		<-recvDone
	}()

	where := func() string { return fmt.Sprintf("the socket buffers (%s)", bufferSizes(sc, rc)) }
	if err := sendAndWait(ctx, r.send, r.opts, s, sc, f, size, release, where); err != nil {
		return 0, 0, err
	}

	if err := changeAndEnd(s, f, want, sc); err != nil {
		return 0, 0, err
	}
	release()
	<-recvDone
	corrupted = int64(size - rr.n)
	for i := range rr.n {
		if got[i] != want[i] {
			corrupted++
		}
	}
	return int64(size), corrupted, rr.err
}

// apply changes f as scenario s says; want is what f holds.
func apply(s Scenario, f *os.File, want []byte) error {
	switch s {
	case Overwrite, Queued:
		other := make([]byte, len(want))
		for i, b := range want {
			other[i] = ^b
		}
		_, err := f.WriteAt(other, 0)
		return err
	case Truncate:
		n := int64(truncateSize)
		if int64(len(want)) <= n {
			n = int64(len(want)) / 2
		}
		return f.Truncate(n)
	}
	return fmt.Errorf("unknown scenario %q", s)
}

// receive reads len(buf) bytes from c, then expects the end of the stream,
// all within timeout.
func receive(c *net.TCPConn, buf []byte, timeout time.Duration) recvResult {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return recvResult{err: fmt.Errorf("receiver: %w", err)}
	}
	n, err := io.ReadFull(c, buf)
	if err != nil {
		return recvResult{n: n, err: fmt.Errorf("receiver got %d of %d bytes: %w", n, len(buf), err)}
	}
	var one [1]byte
	m, err := c.Read(one[:])
	switch {
	case m > 0:
		return recvResult{n: n, err: fmt.Errorf("receiver got more than the %d bytes sent", len(buf))}
	case err != nil && !errors.Is(err, io.EOF):
		return recvResult{n: n, err: fmt.Errorf("receiver, after %d bytes: %w", n, err)}
	}
	return recvResult{n: n}
}

// listen opens a TCP listener on 127.0.0.1, port 0, whose accepted sockets
// inherit a receive buffer of size bytes. The buffer is set before listen(2)
// so that the window scale negotiated at the handshake allows a window that
// large.
func listen(ctx context.Context, size int) (*net.TCPListener, error) {
	lc := net.ListenConfig{Control: setBuffer(unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, "SO_RCVBUF", size)}
	ln, err := lc.Listen(ctx, "tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// connect dials ln with a send buffer of r.buf bytes and returns the sending
// and the receiving end.
func (r *runner) connect(ctx context.Context, ln *net.TCPListener) (send, recv *net.TCPConn, err error) {
	d := net.Dialer{Control: setBuffer(unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, "SO_SNDBUF", r.buf)}
	c, err := d.DialContext(ctx, "tcp4", ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	send = c.(*net.TCPConn)
	if err := ln.SetDeadline(time.Now().Add(r.opts.Timeout)); err != nil {
		send.Close()
		return nil, nil, err
	}
	// Another process may connect to the port too: take ours.
	for {
		a, err := ln.AcceptTCP()
		if err != nil {
			send.Close()
			return nil, nil, err
		}
		if a.RemoteAddr().String() == send.LocalAddr().String() {
			return send, a, nil
		}
		a.Close()
	}
}

// setBuffer returns a net.ListenConfig or net.Dialer Control function that
// sets the socket option force (SO_RCVBUFFORCE, SO_SNDBUFFORCE) to size, or
// plain (SO_RCVBUF, SO_SNDBUF) when the process may not use force. It wraps
// setsockopt(2).
func setBuffer(force, plain int, name string, size int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var err error
		cerr := c.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, force, size)
			if err == unix.EPERM {
				err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, plain, size)
			}
		})
		if cerr != nil {
			return cerr
		}
		if err != nil {
			return os.NewSyscallError("setsockopt "+name, err)
		}
		return nil
	}
}

// bufferSizes says what the kernel made of the buffer sizes, for errors.
func bufferSizes(send, recv *net.TCPConn) string {
	get := func(c *net.TCPConn, opt int) string {
		rc, err := c.SyscallConn()
		if err != nil {
			return "?"
		}
		v, gerr := 0, error(nil)
		if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, opt) }); err != nil || gerr != nil {
			return "?"
		}
		return fmt.Sprint(v)
	}
	return fmt.Sprintf("receiver SO_RCVBUF %s, sender SO_SNDBUF %s", get(recv, unix.SO_RCVBUF), get(send, unix.SO_SNDBUF))
}
