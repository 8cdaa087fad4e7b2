package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peerEnv, in the environment of a process, makes ServeIfReceiver run the
// peer: it holds the peerSpec as JSON.
const peerEnv = "SENDFILE2_BENCH_RECEIVER"

// peerSpec tells the child what to do.
type peerSpec struct {
	Addr  string       `json:"addr"`  // where to listen, port 0
	Netns string       `json:"netns"` // network namespace to join first (a /run/netns path)
	Mode  ReceiverMode `json:"mode"`
	// Send makes the peer the sender (direction receive): on each
	// connection it reads the number of bytes to send, as 8 big-endian
	// bytes, and writes them from a buffer in memory.
	Send bool `json:"send"`
}

// peerMsg is a line the child writes on its standard output.
type peerMsg struct {
	Addr  string `json:"addr,omitempty"`  // the listener's address, first
	Error string `json:"error,omitempty"` // setup failed
	// Answer to "mark": user and system CPU time so far.
	UserNs int64 `json:"user_ns"`
	SysNs  int64 `json:"sys_ns"`
}

// ServeIfReceiver turns this process into the bench's peer (the receiver, or
// with direction receive the sender) when Run started it as one, and then
// exits; otherwise it returns at once. Call it first thing in any program
// (or TestMain) that calls Run.
func ServeIfReceiver() {
	v, ok := os.LookupEnv(peerEnv)
	if !ok {
		return
	}
	var spec peerSpec
	err := json.Unmarshal([]byte(v), &spec)
	if err == nil {
		err = servePeer(spec, os.Stdin, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sendfile2 bench peer:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// servePeer listens, reports its address, then accepts connections and
// answers "mark" lines on in until in closes. As the receiver, it reads (or
// discards) each connection to its end; then it writes back, as 8 big-endian
// bytes, how many bytes it got, and closes it. As the sender, it sends each
// connection what the connection asks for (sendTo).
func servePeer(spec peerSpec, in io.Reader, out io.Writer) error {
	enc := json.NewEncoder(out)
	if spec.Netns != "" {
		// The listener's socket belongs to the namespace of the thread that
		// creates it; accepted sockets to the listener's.
		runtime.LockOSThread()
		if err := setns(spec.Netns); err != nil {
			enc.Encode(peerMsg{Error: err.Error()})
			return err
		}
	}
	// Plain TCP, as the sender dials: a listener that takes MPTCP (Go's
	// default since 1.24) accepts MPTCP sockets even from TCP clients, and
	// every receive then goes through MPTCP's fallback layer.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", spec.Addr)
	if err != nil {
		enc.Encode(peerMsg{Error: err.Error()})
		return err
	}
	defer ln.Close()
	var buf []byte
	if spec.Send {
		buf = make([]byte, PeerBufferSize)
		fill(buf, 0)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if spec.Send {
				go sendTo(c.(*net.TCPConn), buf)
			} else {
				go receive(c.(*net.TCPConn), spec.Mode)
			}
		}
	}()
	if err := enc.Encode(peerMsg{Addr: ln.Addr().String()}); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() != "mark" {
			return fmt.Errorf("unknown request %q", sc.Text())
		}
		u, s := rusage(unix.RUSAGE_SELF)
		if err := enc.Encode(peerMsg{UserNs: int64(u * 1e9), SysNs: int64(s * 1e9)}); err != nil {
			return err
		}
	}
	return sc.Err()
}

// sendTo reads from c how many bytes to send (8 big-endian bytes) and sends
// them with write(2) from buf, again and again: the cheapest way to send, so
// that the other side's receive is what a round measures. Then it shuts down
// its side and waits for the other to close.
func sendTo(c *net.TCPConn, buf []byte) {
	defer c.Close()
	var req [8]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return
	}
	for n := int64(binary.BigEndian.Uint64(req[:])); n > 0; {
		k, err := c.Write(buf[:min(int64(len(buf)), n)])
		n -= int64(k)
		if err != nil {
			return
		}
	}
	c.CloseWrite()
	io.Copy(io.Discard, c)
}

// receive takes everything c sends, then answers with the count.
func receive(c *net.TCPConn, mode ReceiverMode) {
	defer c.Close()
	var n int64
	buf := make([]byte, 1<<20)
	if mode == Discard {
		rc, err := c.SyscallConn()
		if err != nil {
			return
		}
		var errno syscall.Errno
		for {
			var k uintptr
			err := rc.Read(func(fd uintptr) bool {
				// MSG_TRUNC on TCP drops the bytes without copying them and
				// returns how many it dropped.
				k, _, errno = unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
					unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
				return errno != unix.EAGAIN
			})
			if err != nil || errno != 0 && errno != unix.EINTR || errno == 0 && k == 0 {
				break
			}
			if errno == 0 {
				n += int64(k)
			}
		}
	} else if mode == Block {
		n = receiveBlocking(c, buf)
	} else {
		for {
			k, err := c.Read(buf)
			n += int64(k)
			if err != nil {
				break
			}
		}
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	c.Write(b[:])
}

// receiveBlocking reads c until its end on a duplicate of its descriptor
// switched to blocking mode (the mode belongs to the open file, so c's own
// descriptor blocks too, which nothing else here reads or writes until the
// end), so that the wait is in read(2), as a C receiver's is, and returns
// the count. The goroutine holds its thread for the whole receive.
func receiveBlocking(c *net.TCPConn, buf []byte) int64 {
	f, err := c.File()
	if err != nil {
		return 0
	}
	defer f.Close()
	fd := int(f.Fd()) // Fd switches the duplicate to blocking mode
	if unix.SetNonblock(fd, false) != nil {
		return 0
	}
	var n int64
	for {
		k, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil || k == 0 {
			break
		}
		n += int64(k)
	}
	// The answer goes out through c, which the netpoller expects not to block.
	unix.SetNonblock(fd, true)
	return n
}

// rusage returns the user and system CPU seconds of who.
func rusage(who int) (user, sys float64) {
	var ru unix.Rusage
	if unix.Getrusage(who, &ru) != nil {
		return 0, 0
	}
	return float64(ru.Utime.Nano()) / 1e9, float64(ru.Stime.Nano()) / 1e9
}

// peer is the parent's handle on the peer process.
type peer struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr syncBuffer
	addr   string

	mu sync.Mutex // one mark at a time
}

// startPeer starts this program again as the peer, in the network namespace
// netnsPath if it is set, listening on host: the receiver (in mode), or with
// send the sender.
func startPeer(host, netnsPath string, mode ReceiverMode, send bool) (*peer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: peer: %w", err)
	}
	spec, _ := json.Marshal(peerSpec{Addr: net.JoinHostPort(host, "0"), Netns: netnsPath, Mode: mode, Send: send})
	r := &peer{cmd: exec.Command(exe)}
	r.cmd.Env = append(os.Environ(), peerEnv+"="+string(spec))
	r.cmd.Stderr = &r.stderr
	// The peer dies with the thread that started it: a bench killed hard
	// leaves no peer behind. (Its stdin closing stops it too.)
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if r.in, err = r.cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("bench: peer: %w", err)
	}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		r.in.Close()
		return nil, fmt.Errorf("bench: peer: %w", err)
	}
	r.out = bufio.NewScanner(stdout)
	// Pdeathsig follows the thread that forks: keep it alive while it does.
	runtime.LockOSThread()
	err = r.cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		r.in.Close()
		return nil, fmt.Errorf("bench: peer: %w", err)
	}
	m, err := r.read()
	if err == nil && m.Error != "" {
		err = errors.New(m.Error)
	}
	if err != nil {
		r.stop()
		return nil, fmt.Errorf("bench: peer: %w%s", err, r.stderrNote())
	}
	r.addr = m.Addr
	return r, nil
}

func (r *peer) read() (peerMsg, error) {
	var m peerMsg
	if !r.out.Scan() {
		err := r.out.Err()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return m, err
	}
	return m, json.Unmarshal(r.out.Bytes(), &m)
}

// cpu returns the peer's user and system CPU seconds so far.
func (r *peer) cpu() (user, sys float64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := io.WriteString(r.in, "mark\n"); err != nil {
		return 0, 0, fmt.Errorf("bench: peer: %w%s", err, r.stderrNote())
	}
	m, err := r.read()
	if err != nil {
		return 0, 0, fmt.Errorf("bench: peer: %w%s", err, r.stderrNote())
	}
	return float64(m.UserNs) / 1e9, float64(m.SysNs) / 1e9, nil
}

// stop closes the peer's input, which ends it, and waits for it; after a
// few seconds it kills it.
func (r *peer) stop() error {
	r.in.Close()
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		r.cmd.Process.Kill()
		return <-done
	}
}

func (r *peer) stderrNote() string {
	if s := bytes.TrimSpace(r.stderr.bytes()); len(s) > 0 {
		return fmt.Sprintf(" (peer said: %s)", s)
	}
	return ""
}

// dial connects to the peer n times, from the network namespace netnsPath
// when it is set.
func dial(ctx context.Context, addr, netnsPath string, n int) ([]*net.TCPConn, error) {
	var conns []*net.TCPConn
	err := inNetns(netnsPath, func() error {
		var d net.Dialer
		for range n {
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return err
			}
			conns = append(conns, c.(*net.TCPConn))
		}
		return nil
	})
	if err != nil {
		for _, c := range conns {
			c.Close()
		}
		return nil, fmt.Errorf("bench: dial: %w", err)
	}
	return conns, nil
}

// syncBuffer is a bytes.Buffer that exec's copying goroutine and the
// bench may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 64<<10 {
		return len(p), nil // enough to explain a failure
	}
	return b.b.Write(p)
}

func (b *syncBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.b.Bytes())
}
