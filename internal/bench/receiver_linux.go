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

// receiverEnv, in the environment of a process, makes ServeIfReceiver run
// the receiver: it holds the receiverSpec as JSON.
const receiverEnv = "SENDFILE2_BENCH_RECEIVER"

// receiverSpec tells the child what to do.
type receiverSpec struct {
	Addr  string       `json:"addr"`  // where to listen, port 0
	Netns string       `json:"netns"` // network namespace to join first (a /run/netns path)
	Mode  ReceiverMode `json:"mode"`
}

// receiverMsg is a line the child writes on its standard output.
type receiverMsg struct {
	Addr  string `json:"addr,omitempty"`  // the listener's address, first
	Error string `json:"error,omitempty"` // setup failed
	CPUNs int64  `json:"cpu_ns"`          // answer to "mark": user+system CPU time so far
}

// ServeIfReceiver turns this process into a bench receiver when Run started
// it as one, and then exits; otherwise it returns at once. Call it first
// thing in any program (or TestMain) that calls Run.
func ServeIfReceiver() {
	v, ok := os.LookupEnv(receiverEnv)
	if !ok {
		return
	}
	var spec receiverSpec
	err := json.Unmarshal([]byte(v), &spec)
	if err == nil {
		err = serveReceiver(spec, os.Stdin, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sendfile2 bench receiver:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serveReceiver listens, reports its address, then accepts connections and
// answers "mark" lines on in until in closes. Each connection is read (or
// discarded) to its end; then the receiver writes back, as 8 big-endian
// bytes, how many bytes it got, and closes it.
func serveReceiver(spec receiverSpec, in io.Reader, out io.Writer) error {
	enc := json.NewEncoder(out)
	if spec.Netns != "" {
		// The listener's socket belongs to the namespace of the thread that
		// creates it; accepted sockets to the listener's.
		runtime.LockOSThread()
		if err := setns(spec.Netns); err != nil {
			enc.Encode(receiverMsg{Error: err.Error()})
			return err
		}
	}
	ln, err := net.Listen("tcp", spec.Addr)
	if err != nil {
		enc.Encode(receiverMsg{Error: err.Error()})
		return err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go receive(c.(*net.TCPConn), spec.Mode)
		}
	}()
	if err := enc.Encode(receiverMsg{Addr: ln.Addr().String()}); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() != "mark" {
			return fmt.Errorf("unknown request %q", sc.Text())
		}
		if err := enc.Encode(receiverMsg{CPUNs: cpuNs(unix.RUSAGE_SELF)}); err != nil {
			return err
		}
	}
	return sc.Err()
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

// cpuNs is the user+system CPU time of who (RUSAGE_SELF, RUSAGE_CHILDREN).
func cpuNs(who int) int64 {
	u, s := rusage(who)
	return int64((u + s) * 1e9)
}

// rusage returns the user and system CPU seconds of who.
func rusage(who int) (user, sys float64) {
	var ru unix.Rusage
	if unix.Getrusage(who, &ru) != nil {
		return 0, 0
	}
	return float64(ru.Utime.Nano()) / 1e9, float64(ru.Stime.Nano()) / 1e9
}

// receiver is the parent's handle on the receiver process.
type receiver struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr syncBuffer
	addr   string

	mu sync.Mutex // one mark at a time
}

// startReceiver starts this program again as the receiver, in the network
// namespace netnsPath if it is set, listening on host.
func startReceiver(host, netnsPath string, mode ReceiverMode) (*receiver, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: receiver: %w", err)
	}
	spec, _ := json.Marshal(receiverSpec{Addr: net.JoinHostPort(host, "0"), Netns: netnsPath, Mode: mode})
	r := &receiver{cmd: exec.Command(exe)}
	r.cmd.Env = append(os.Environ(), receiverEnv+"="+string(spec))
	r.cmd.Stderr = &r.stderr
	// The receiver dies with the thread that started it: a sender killed
	// hard leaves no receiver behind. (Its stdin closing stops it too.)
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if r.in, err = r.cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("bench: receiver: %w", err)
	}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		r.in.Close()
		return nil, fmt.Errorf("bench: receiver: %w", err)
	}
	r.out = bufio.NewScanner(stdout)
	// Pdeathsig follows the thread that forks: keep it alive while it does.
	runtime.LockOSThread()
	err = r.cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		r.in.Close()
		return nil, fmt.Errorf("bench: receiver: %w", err)
	}
	m, err := r.read()
	if err == nil && m.Error != "" {
		err = errors.New(m.Error)
	}
	if err != nil {
		r.stop()
		return nil, fmt.Errorf("bench: receiver: %w%s", err, r.stderrNote())
	}
	r.addr = m.Addr
	return r, nil
}

func (r *receiver) read() (receiverMsg, error) {
	var m receiverMsg
	if !r.out.Scan() {
		err := r.out.Err()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return m, err
	}
	return m, json.Unmarshal(r.out.Bytes(), &m)
}

// cpu returns the receiver's CPU seconds so far.
func (r *receiver) cpu() (float64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := io.WriteString(r.in, "mark\n"); err != nil {
		return 0, fmt.Errorf("bench: receiver: %w%s", err, r.stderrNote())
	}
	m, err := r.read()
	if err != nil {
		return 0, fmt.Errorf("bench: receiver: %w%s", err, r.stderrNote())
	}
	return float64(m.CPUNs) / 1e9, nil
}

// stop closes the receiver's input, which ends it, and waits for it; after a
// few seconds it kills it.
func (r *receiver) stop() error {
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

func (r *receiver) stderrNote() string {
	if s := bytes.TrimSpace(r.stderr.bytes()); len(s) > 0 {
		return fmt.Sprintf(" (receiver said: %s)", s)
	}
	return ""
}

// dial connects to the receiver n times, from the network namespace netnsPath
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
// sender may use at once.
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
