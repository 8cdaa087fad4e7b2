//go:build linux

// Command gofacts checks the Go behaviour that sendfile2 relies on, on this
// machine: which reader net/http hands to a conn's ReadFrom, that io.Copy
// asks the file's WriteTo first, that an eventfd registered with an io_uring
// wakes a goroutine through the netpoller, and what happens when a
// MSG_ZEROCOPY socket's error queue is awaited through the socket's own
// RawConn rather than through a private epoll descriptor.
//
//	go run ./scripts/kernel-facts/gofacts
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	readFromHandoff()
	copyWriteToFirst()
	eventfdWakes()
	errqueueWait()
}

// --- net/http hands a file body to the conn's ReadFrom ---

type rfConn struct {
	net.Conn
	seen *atomic.Value
}

func (c rfConn) ReadFrom(r io.Reader) (int64, error) {
	desc := fmt.Sprintf("%T", r)
	if lr, ok := r.(*io.LimitedReader); ok {
		desc += fmt.Sprintf(" around %T", lr.R)
	}
	c.seen.Store(desc)
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

type rfListener struct {
	net.Listener
	seen *atomic.Value
}

func (l rfListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	return rfConn{c, l.seen}, err
}

func readFromHandoff() {
	dir, _ := os.MkdirTemp("", "gofacts")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "f"), make([]byte, 1<<20), 0o600)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	seen := new(atomic.Value)
	seen.Store("nothing")
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go srv.Serve(rfListener{ln, seen})
	defer srv.Close()
	for _, h := range []struct{ name, method string }{{"GET", "GET"}, {"HEAD", "HEAD"}} {
		seen.Store("nothing")
		req, _ := http.NewRequest(h.method, "http://"+ln.Addr().String()+"/f", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Printf("net/http FileServer, %s of a 1 MiB file: conn's ReadFrom got %v; body %d bytes\n", h.name, seen.Load(), n)
	}
	// FileServerFS hides the descriptor.
	seen.Store("nothing")
	srv2 := &http.Server{Handler: http.FileServerFS(os.DirFS(dir))}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv2.Serve(rfListener{ln2, seen})
	defer srv2.Close()
	resp, err := http.Get("http://" + ln2.Addr().String() + "/f")
	if err != nil {
		panic(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	fmt.Printf("net/http FileServerFS(os.DirFS), GET: conn's ReadFrom got %v\n", seen.Load())
}

// --- io.Copy tries the source's WriteTo before the destination's ReadFrom ---

type embedded struct {
	*net.TCPConn
	calls *int
}

func (e embedded) ReadFrom(r io.Reader) (int64, error) {
	*e.calls++
	return io.Copy(struct{ io.Writer }{e.TCPConn}, r)
}

func copyWriteToFirst() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		c, _ := ln.Accept()
		io.Copy(io.Discard, c)
		c.Close()
	}()
	c, _ := net.Dial("tcp", ln.Addr().String())
	f, _ := os.CreateTemp("", "gofacts")
	defer os.Remove(f.Name())
	f.Write(make([]byte, 1<<20))
	f.Seek(0, 0)
	calls := 0
	n, err := io.Copy(embedded{c.(*net.TCPConn), &calls}, f)
	fmt.Printf("io.Copy(wrapper embedding *net.TCPConn with its own ReadFrom, *os.File): %d bytes, err %v, wrapper's ReadFrom called %d times\n", n, err, calls)
	c.Close()
}

// --- an eventfd registered with a ring wakes a goroutine in the netpoller ---

const (
	ioringOffSQRing       = 0
	ioringOffSQEs         = 0x10000000
	ioringRegisterEventfd = 4
	ioringOpNop           = 0
	ioringOpTimeout       = 11
	sqeSize               = 64
	ioringEnterGetevents  = 1
	paramsSize            = 120
	sqOffTailOffset       = 40 + 4 // sq_off.tail
	sqOffRingMaskOffset   = 40 + 8
	sqOffArrayOffset      = 40 + 24
	sqEntriesOffset       = 0
)

type sqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}
type cqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1 uint32
	UserAddr                                                        uint64
}
type params struct {
	SqEntries, CqEntries, Flags, SqThreadCPU, SqThreadIdle, Features, WqFd uint32
	Resv                                                                   [3]uint32
	SqOff                                                                  sqringOffsets
	CqOff                                                                  cqringOffsets
}

func eventfdWakes() {
	var p params
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		fmt.Println("io_uring_setup:", errno)
		return
	}
	ring := int(fd)
	defer unix.Close(ring)
	sq, err := unix.Mmap(ring, ioringOffSQRing, int(p.SqOff.Array+p.SqEntries*4), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		panic(err)
	}
	sqes, err := unix.Mmap(ring, ioringOffSQEs, int(p.SqEntries*sqeSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		panic(err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		panic(err)
	}
	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(ring), ioringRegisterEventfd, uintptr(unsafe.Pointer(&efd)), 1, 0, 0); errno != 0 {
		fmt.Println("IORING_REGISTER_EVENTFD:", errno)
		return
	}
	ev := os.NewFile(uintptr(efd), "eventfd") // non-blocking: the netpoller watches it
	defer ev.Close()
	// A timeout of 50 ms, so that the completion comes after the goroutine parked.
	ts := unix.Timespec{Nsec: 50e6}
	tail := (*uint32)(unsafe.Pointer(&sq[p.SqOff.Tail]))
	mask := *(*uint32)(unsafe.Pointer(&sq[p.SqOff.RingMask]))
	idx := *tail & mask
	sqe := sqes[idx*sqeSize : (idx+1)*sqeSize]
	clear(sqe)
	sqe[0] = ioringOpTimeout
	*(*uint64)(unsafe.Pointer(&sqe[16])) = uint64(uintptr(unsafe.Pointer(&ts))) // addr
	*(*uint32)(unsafe.Pointer(&sqe[24])) = 1                                    // len
	*(*uint32)(unsafe.Pointer(&sq[p.SqOff.Array+idx*4])) = idx
	atomic.AddUint32(tail, 1)
	start := time.Now()
	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(ring), 1, 0, 0, 0, 0); errno != 0 {
		panic(errno)
	}
	var b [8]byte
	n, err := ev.Read(b[:]) // parks the goroutine in the netpoller until the eventfd is written
	fmt.Printf("eventfd registered with IORING_REGISTER_EVENTFD, read through os.File (netpoller): %d bytes, err %v, after %v (the ring's 50 ms timeout)\n",
		n, err, time.Since(start).Round(time.Millisecond))
	runtime_keep(ts)
}

//go:noinline
func runtime_keep(unix.Timespec) {}

// --- the error queue through the socket's RawConn, and through a private epoll fd ---

func zcPair() (*net.TCPConn, syscall.RawConn, func()) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	done := make(chan struct{})
	go func() {
		c, _ := ln.Accept()
		// A slow reader: the sender's buffer fills, so a notification often
		// finds the socket not writable (an EPOLLERR-only event).
		buf := make([]byte, 4096)
		for {
			time.Sleep(50 * time.Microsecond)
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		c.Close()
		close(done)
	}()
	c, _ := net.Dial("tcp", ln.Addr().String())
	tc := c.(*net.TCPConn)
	rc, _ := tc.SyscallConn()
	rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ZEROCOPY, 1) })
	return tc, rc, func() { tc.Close(); ln.Close(); <-done }
}

// recvErr reads error-queue notifications; returns the sends they cover, or EAGAIN.
func recvErr(fd int) (int, error) {
	oob := make([]byte, 128)
	_, oobn, _, _, err := unix.Recvmsg(fd, nil, oob, unix.MSG_ERRQUEUE)
	if err != nil {
		return 0, err
	}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	covered := 0
	for _, m := range msgs {
		e := (*unix.SockExtendedErr)(unsafe.Pointer(&m.Data[0]))
		covered += int(e.Data - e.Info + 1)
	}
	return covered, nil
}

func errqueueWait() {
	const sends = 400
	for _, how := range []string{"the socket's RawConn.Read", "a private epoll fd (EPOLLERR) through os.File"} {
		_, rc, done := zcPair()
		var ep *os.File
		var eprc syscall.RawConn
		if how != "the socket's RawConn.Read" {
			rc.Control(func(fd uintptr) {
				e, _ := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
				unix.EpollCtl(e, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: unix.EPOLLERR, Fd: int32(fd)})
				unix.SetNonblock(e, true)
				ep = os.NewFile(uintptr(e), "epoll")
			})
			eprc, _ = ep.SyscallConn()
		}
		// Bursts: MSG_ZEROCOPY sends until the socket is full, then wait for
		// every notification while the socket is still (nearly) full, so that
		// a notification often arrives as an EPOLLERR-only event.
		buf := make([]byte, 65536)
		failures := map[string]int{}
		sent, covered := 0, 0
		deadline := time.Now().Add(40 * time.Second)
		for sent < sends && time.Now().Before(deadline) {
			var sockfd int
			rc.Control(func(fd uintptr) { sockfd = int(fd) })
			for {
				_, err := unix.SendmsgN(sockfd, buf, nil, nil, unix.MSG_ZEROCOPY|unix.MSG_DONTWAIT)
				if err != nil {
					break
				}
				sent++
			}
			for covered < sent && time.Now().Before(deadline) {
				var n int
				var rerr error
				wait := func(fd uintptr) bool {
					n, rerr = recvErr(int(fd))
					return rerr != unix.EAGAIN
				}
				var err error
				if eprc == nil {
					err = rc.Read(wait)
				} else {
					err = eprc.Read(func(uintptr) bool {
						var evs [1]unix.EpollEvent
						if k, _ := unix.EpollWait(int(ep.Fd()), evs[:], 0); k == 0 {
							return false
						}
						return wait(uintptr(sockfd))
					})
				}
				if err != nil {
					msg := err.Error()
					msg = msg[strings.LastIndex(msg, ": ")+2:] // without the addresses
					failures[msg]++
					time.Sleep(time.Millisecond)
					continue
				}
				if rerr == nil {
					covered += n
				}
			}
		}
		fmt.Printf("error queue awaited through %s: %d MSG_ZEROCOPY sends, %d notified, waits that failed: %v\n", how, sent, covered, failures)
		if ep != nil {
			ep.Close()
		}
		done()
	}
}
