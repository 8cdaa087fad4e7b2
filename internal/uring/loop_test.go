package uring_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/testutil"
	"github.com/sendfile2/sendfile2/internal/uring"
)

// events collects the CQEs of one request.
type events chan uring.CQE

func (e events) HandleCQE(c uring.CQE, _ bool) { e <- c }

func newLoop(t *testing.T) *uring.Loop {
	t.Helper()
	l, err := uring.NewLoop(loopConfig)
	testutil.RequireFeature(t, "io_uring", "5.6", err == nil, err)
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

func submit(t *testing.T, l *uring.Loop, h uring.Handler, prep func(*uring.SQE)) uint64 {
	t.Helper()
	b, err := l.Begin(context.Background(), 1)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	sqe, ud := b.Add(h)
	prep(sqe)
	if n, err := b.Submit(); n != 1 || err != nil {
		t.Fatalf("Submit = %d, %v", n, err)
	}
	return ud
}

func next(t *testing.T, e events) uring.CQE {
	t.Helper()
	select {
	case c := <-e:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no CQE within 10s")
		return uring.CQE{}
	}
}

// tcpPair returns the two ends of a TCP connection over loopback.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func fdOf(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

func TestProbe(t *testing.T) {
	l := newLoop(t)
	p := l.Probe()
	for _, op := range []uint8{uring.OpNop, uring.OpReadFixed, uring.OpSend, uring.OpAsyncCancel} {
		if !p.Supports(op) {
			t.Errorf("probe says %s is unsupported", uring.OpName(op))
		}
	}
	testutil.RequireFeature(t, "IORING_OP_SEND_ZC", "6.0", p.Supports(uring.OpSendZC), nil)
	if p.Supports(255) {
		t.Error("probe says opcode 255 is supported")
	}
	if l.Features()&uring.FeatSingleMmap == 0 {
		t.Error("no IORING_FEAT_SINGLE_MMAP")
	}
}

func TestNop(t *testing.T) {
	l := newLoop(t)
	e := make(events, 1)
	submit(t, l, e, (*uring.SQE).PrepNop)
	c := next(t, e)
	if c.Res != 0 || c.More() || !c.Final() {
		t.Errorf("NOP CQE = %+v", c)
	}
	if l.Stray() != 0 {
		t.Errorf("%d stray CQEs", l.Stray())
	}
}

// TestSubmitWhileDraining: a request that completes inside io_uring_enter
// while another goroutine drains the completion queue (and has looked at it
// for the last time) reaches its handler. The eventfd signals nothing during
// a Submit's io_uring_enter, so nothing else would look at the queue again.
func TestSubmitWhileDraining(t *testing.T) {
	l := newLoop(t)
	for range 3 {
		e := make(events, 1)
		release := uring.HoldDrain(l)
		submit(t, l, e, (*uring.SQE).PrepNop)
		release()
		if c := next(t, e); c.Res != 0 {
			t.Fatalf("NOP CQE = %+v", c)
		}
	}
}

// TestConcurrentSubmitters has many goroutines share one Loop; every request
// must complete exactly once, through its own handler.
func TestConcurrentSubmitters(t *testing.T) {
	l := newLoop(t)
	const goroutines, perG = 32, 200
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for range goroutines {
		wg.Go(func() {
			e := make(events, 8)
			for range perG {
				b, err := l.Begin(context.Background(), 4)
				if err != nil {
					errs <- err
					return
				}
				for range 4 {
					sqe, _ := b.Add(e)
					sqe.PrepNop()
				}
				if n, err := b.Submit(); n != 4 || err != nil {
					errs <- err
					return
				}
				for range 4 {
					select {
					case c := <-e:
						if c.Res != 0 {
							errs <- syscall.Errno(-c.Res)
							return
						}
					case <-time.After(10 * time.Second):
						errs <- errors.New("timed out")
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := l.InFlight(); n != 0 {
		t.Errorf("%d requests still in flight", n)
	}
}

// TestBeginWaitsAtCapacity: with every slot taken, Begin blocks until ctx ends.
func TestBeginWaitsAtCapacity(t *testing.T) {
	l := newLoop(t)
	a, b := tcpPair(t)
	// Fill a's send buffer so that a SEND waits in the kernel.
	blockers := make(events, l.Capacity()*2)
	big := make([]byte, 16<<20)
	var uds []uint64
	for range l.Capacity() {
		uds = append(uds, submit(t, l, blockers, func(s *uring.SQE) {
			s.PrepSend(fdOf(t, a), unsafe.Pointer(&big[0]), uint32(len(big)), unix.MSG_WAITALL)
		}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.Begin(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Begin at capacity = %v, want context.DeadlineExceeded", err)
	}
	for _, ud := range uds {
		if err := l.Cancel(ud, nil); err != nil && !errors.Is(err, uring.ErrClosed) {
			// Cancel itself needs a slot: free some by reading.
			t.Logf("cancel: %v", err)
		}
	}
	go io.Copy(io.Discard, b)
	for range l.Capacity() {
		next(t, blockers)
	}
}

func TestReadFixed(t *testing.T) {
	l := newLoop(t)
	want := bytes.Repeat([]byte("0123456789abcdef"), 8192)
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, want, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf, err := uring.Mmap(len(want))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	if err := l.RegisterBuffers([][]byte{buf}); err != nil {
		t.Fatal(err)
	}
	defer l.UnregisterBuffers()
	e := make(events, 1)
	submit(t, l, e, func(s *uring.SQE) {
		s.PrepReadFixed(int(f.Fd()), unsafe.Pointer(&buf[7]), uint32(len(want)-7), 7, 0, 0)
	})
	if c := next(t, e); c.Res != int32(len(want)-7) {
		t.Fatalf("READ_FIXED res = %d", c.Res)
	}
	if !bytes.Equal(buf[7:], want[7:]) {
		t.Fatal("READ_FIXED read the wrong bytes")
	}
}

// TestSendZCNotification: a zero-copy send from a registered buffer posts its
// result with F_MORE, then a notification; on loopback the usage report says
// the kernel copied (docs/KERNEL-FACTS.md, section 3).
func TestSendZCNotification(t *testing.T) {
	l := newLoop(t)
	testutil.RequireFeature(t, "IORING_OP_SEND_ZC", "6.0", l.Probe().Supports(uring.OpSendZC), nil)
	a, b := tcpPair(t)
	buf, err := uring.Mmap(64 << 10)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	if err := l.RegisterBuffers([][]byte{buf}); err != nil {
		t.Fatal(err)
	}
	defer l.UnregisterBuffers()
	e := make(events, 2)
	submit(t, l, e, func(s *uring.SQE) {
		s.PrepSendZC(fdOf(t, a), unsafe.Pointer(&buf[0]), uint32(len(buf)), unix.MSG_WAITALL,
			uring.RecvsendFixedBuf|uring.SendZCReportUsage, 0)
	})
	got := make([]byte, len(buf))
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, buf) {
		t.Fatal("received bytes differ")
	}
	var res, notif uring.CQE
	for range 2 {
		c := next(t, e)
		if c.Notif() {
			notif = c
		} else {
			res = c
		}
	}
	if res.Res != int32(len(buf)) || !res.More() {
		t.Errorf("result CQE = %+v, want %d bytes with F_MORE", res, len(buf))
	}
	if !notif.Notif() || !notif.Final() {
		t.Errorf("notification CQE = %+v", notif)
	}
	if !notif.Copied() {
		t.Errorf("loopback notification does not report a copy: %+v", notif)
	}
}

// TestLinkedChain: READ_FIXED linked to SEND_ZC runs in order; a short read
// breaks the chain and the send completes with -ECANCELED, without F_MORE.
func TestLinkedChain(t *testing.T) {
	l := newLoop(t)
	testutil.RequireFeature(t, "IORING_OP_SEND_ZC", "6.0", l.Probe().Supports(uring.OpSendZC), nil)
	a, b := tcpPair(t)
	want := bytes.Repeat([]byte{'x', 'y', 'z'}, 10000)
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, want, 0o644)
	f, _ := os.Open(path)
	defer f.Close()
	buf, err := uring.Mmap(64 << 10)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	if err := l.RegisterBuffers([][]byte{buf}); err != nil {
		t.Fatal(err)
	}
	defer l.UnregisterBuffers()

	run := func(n uint32) (read, send uring.CQE) {
		re, se := make(events, 1), make(events, 2)
		bt, err := l.Begin(context.Background(), 2)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := bt.Add(re)
		r.PrepReadFixed(int(f.Fd()), unsafe.Pointer(&buf[0]), n, 0, 0, 0)
		r.Flags |= uring.SQEIOLink
		s, _ := bt.Add(se)
		s.PrepSendZC(fdOf(t, a), unsafe.Pointer(&buf[0]), n, unix.MSG_WAITALL, uring.RecvsendFixedBuf, 0)
		if k, err := bt.Submit(); k != 2 || err != nil {
			t.Fatalf("Submit = %d, %v", k, err)
		}
		read, send = next(t, re), next(t, se)
		if send.More() {
			if c := next(t, se); !c.Notif() {
				t.Fatalf("after F_MORE came %+v, not a notification", c)
			}
		}
		return read, send
	}

	read, send := run(uint32(len(want)))
	if read.Res != int32(len(want)) || send.Res != int32(len(want)) {
		t.Fatalf("chain: read %d, send %d", read.Res, send.Res)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("chain delivered wrong bytes (%v)", err)
	}

	read, send = run(uint32(len(want) + 100)) // past EOF: short read
	if read.Res != int32(len(want)) {
		t.Fatalf("short read res = %d", read.Res)
	}
	if send.Res != -int32(unix.ECANCELED) || send.More() {
		t.Fatalf("send after short read = %+v, want -ECANCELED without F_MORE", send)
	}
	// Some kernels (6.18) post the cancelled send's notification anyway. The
	// Loop must take it for what it is, not for a CQE of no request.
	deadline := time.Now().Add(2 * time.Second)
	for l.Late() == 0 && l.Stray() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if l.Stray() != 0 {
		t.Errorf("%d CQEs named no live request", l.Stray())
	}
	t.Logf("late notifications: %d", l.Late())
}

// TestCancel: ASYNC_CANCEL stops a send that waits for socket space.
func TestCancel(t *testing.T) {
	l := newLoop(t)
	a, _ := tcpPair(t)
	big := make([]byte, 64<<20)
	e := make(events, 1)
	ud := submit(t, l, e, func(s *uring.SQE) {
		s.PrepSend(fdOf(t, a), unsafe.Pointer(&big[0]), uint32(len(big)), unix.MSG_WAITALL)
	})
	select {
	case c := <-e:
		t.Fatalf("send of 64 MiB to a peer that does not read completed: %+v", c)
	case <-time.After(50 * time.Millisecond):
	}
	if err := l.Cancel(ud, nil); err != nil {
		t.Fatal(err)
	}
	c := next(t, e)
	if c.Res != -int32(unix.ECANCELED) && (c.Res <= 0 || c.Res >= int32(len(big))) {
		t.Fatalf("cancelled send = %+v, want -ECANCELED or a partial count", c)
	}
}

func TestBeginAfterClose(t *testing.T) {
	l, err := uring.NewLoop(loopConfig)
	testutil.RequireFeature(t, "io_uring", "5.6", err == nil, err)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Begin(context.Background(), 1); !errors.Is(err, uring.ErrClosed) {
		t.Fatalf("Begin after Close = %v, want ErrClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}
