package engine

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/testutil"
	"github.com/sendfile2/sendfile2/internal/uring"
)

// TestDriverCancelsAgain: a SEND_ZC linked behind a request that its
// cancellation does not stop (here a TIMEOUT that the driver does not
// cancel, as a read waiting for the disk or running in an io-wq worker is
// not stopped) is not found by its own cancellation (-ENOENT): it has not
// been issued. When the head completes, the send is issued and waits for
// room in the socket of a peer that does not read. The driver must cancel
// it again, or its owner waits for the peer.
//
// The cancellation must reach the ring before the head completes; on a slow
// machine (qemu without KVM) 50 ms may not be enough, so the head's time
// grows until a cancellation misses.
func TestDriverCancelsAgain(t *testing.T) {
	for _, head := range []time.Duration{50 * time.Millisecond, 500 * time.Millisecond, 5 * time.Second} {
		if cancelsAgain(t, head) {
			return
		}
		t.Logf("the send's cancellation found it after a head of %v", head)
	}
	t.Error("no cancellation missed the send: the test tested nothing")
}

// cancelsAgain runs the case with a head of the given time and reports
// whether a cancellation missed the send.
func cancelsAgain(t *testing.T, headTime time.Duration) bool {
	loop, err := uring.NewLoop(uring.Config{Thread: ThreadByDefault})
	testutil.RequireFeature(t, "io_uring", "5.6", err == nil, err)
	defer loop.Close()
	testutil.RequireFeature(t, "IORING_OP_SEND_ZC", "6.0", loop.Probe().Supports(uring.OpSendZC), nil)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	rc, _ := a.(*net.TCPConn).SyscallConn()
	var fd int
	rc.Control(func(f uintptr) { fd = int(f) })

	ctx, cancel := context.WithCancel(context.Background())
	d := newDriver(loop, ctx)
	head, send := &request{kind: reqRead}, &request{kind: reqSend}
	big := make([]byte, 32<<20)
	ts := uring.Timespec{Sec: int64(headTime / time.Second), Nsec: int64(headTime % time.Second)}
	prep := func(i int, r *request, sqe *uring.SQE) {
		if r == head {
			sqe.PrepTimeout(&ts, uring.TimeoutEtimeSuccess)
			return
		}
		sqe.PrepSendZC(fd, unsafe.Pointer(&big[0]), uint32(len(big)), unix.MSG_WAITALL, 0, 0)
	}
	if k, err := d.submit(ctx, []*request{head, send}, prep, func(i int) bool { return i == 0 }, func(*request, bool) {}); k != 2 || err != nil {
		t.Fatalf("submit = %d, %v", k, err)
	}
	missed, _ := loop.CancelsMissed()
	cancel()

	done := make(chan uring.CQE, 1)
	go func() {
		var res uring.CQE
		for len(d.live) > 0 {
			for _, e := range d.next(func() { d.cancel(send) }) {
				if e.r == send && !e.cqe.Notif() {
					send.seen, res = true, e.cqe
					go io.Copy(io.Discard, peer) // for the notification
				}
			}
		}
		done <- res
	}()
	select {
	case res := <-done:
		t.Logf("send = %d, flags %#x", res.Res, res.Flags)
		if res.Res != -int32(unix.ECANCELED) && (res.Res <= 0 || res.Res >= int32(len(big))) {
			t.Errorf("cancelled SEND_ZC = %+v, want -ECANCELED or a partial count", res)
		}
	case <-time.After(10 * time.Second):
		peer.Close()
		t.Fatal("the cancelled send was still waiting for the peer after 10 s")
	}
	now, _ := loop.CancelsMissed()
	return now != missed
}
