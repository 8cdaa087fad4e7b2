package uring_test

import (
	"context"
	"io"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/testutil"
	"github.com/sendfile2/sendfile2/internal/uring"
)

// cancelResult submits IORING_OP_ASYNC_CANCEL of ud and returns its CQE.
func cancelResult(t *testing.T, l *uring.Loop, ud uint64) int32 {
	t.Helper()
	e := make(events, 1)
	if err := l.Cancel(ud, e); err != nil {
		t.Fatal(err)
	}
	return next(t, e).Res
}

// sendZCEnd collects a SEND_ZC's CQEs until its last: the result, and the
// notification when the result has F_MORE, after calling drain (if not nil)
// to have the peer take what the send queued.
func sendZCEnd(t *testing.T, e events, drain func()) (res uring.CQE, notified bool) {
	t.Helper()
	res = next(t, e)
	if res.More() {
		if drain != nil {
			drain()
		}
		notified = next(t, e).Notif()
	}
	return res, notified
}

// TestCancelSendZC: what ASYNC_CANCEL answers for a SEND_ZC, the facts
// docs/KERNEL-FACTS.md (section 2) records. A SEND_ZC that waits for room in
// a full socket waits in io_uring's internal poll, also when submitted with
// IOSQE_ASYNC (io-wq issues socket requests non-blocking and arms the same
// poll), so the cancellation finds it and succeeds (0): never -EALREADY,
// which means a target running in an io-wq worker. A SEND_ZC linked behind
// a request that has not completed has not been issued: the cancellation
// does not find it (-ENOENT), and it ends with its chain. Cancellations
// racing with sends that a reading peer completes answer 0 or -ENOENT.
func TestCancelSendZC(t *testing.T) {
	l := newLoop(t)
	testutil.RequireFeature(t, "IORING_OP_SEND_ZC", "6.0", l.Probe().Supports(uring.OpSendZC), nil)
	big := make([]byte, 32<<20)
	stall := func(t *testing.T, e events) {
		t.Helper()
		select {
		case c := <-e:
			t.Fatalf("a send of 32 MiB to a peer that does not read completed: %+v", c)
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, tt := range []struct {
		name  string
		flags uint8
	}{{"blocked", 0}, {"blocked IOSQE_ASYNC", uring.SQEAsync}} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := tcpPair(t)
			e := make(events, 2)
			ud := submit(t, l, e, func(s *uring.SQE) {
				s.PrepSendZC(fdOf(t, a), unsafe.Pointer(&big[0]), uint32(len(big)), unix.MSG_WAITALL, 0, 0)
				s.Flags |= tt.flags
			})
			stall(t, e)
			cres := cancelResult(t, l, ud)
			res, notified := sendZCEnd(t, e, func() { go io.Copy(io.Discard, b) })
			t.Logf("cancel = %d; send = %d, flags %#x, notified %v", cres, res.Res, res.Flags, notified)
			if cres != 0 {
				t.Errorf("ASYNC_CANCEL of a SEND_ZC waiting for room = %d, want 0", cres)
			}
			if res.Res != -int32(unix.ECANCELED) && (res.Res <= 0 || res.Res >= int32(len(big))) {
				t.Errorf("cancelled SEND_ZC = %+v, want -ECANCELED or a partial count", res)
			}
		})
	}
	t.Run("after a timeout", func(t *testing.T) {
		a, b := tcpPair(t)
		e, ce := make(events, 2), make(events, 1)
		ud := submit(t, l, e, func(s *uring.SQE) {
			s.PrepSendZC(fdOf(t, a), unsafe.Pointer(&big[0]), uint32(len(big)), unix.MSG_WAITALL, 0, 0)
		})
		if err := l.CancelAfter(ud, 20*time.Millisecond, ce); err != nil {
			t.Fatal(err)
		}
		if c := next(t, ce); c.Res != 0 {
			t.Errorf("ASYNC_CANCEL behind a TIMEOUT = %+v, want 0", c)
		}
		res, _ := sendZCEnd(t, e, func() { go io.Copy(io.Discard, b) })
		if res.Res != -int32(unix.ECANCELED) && (res.Res <= 0 || res.Res >= int32(len(big))) {
			t.Errorf("cancelled SEND_ZC = %+v, want -ECANCELED or a partial count", res)
		}
	})
	t.Run("linked", func(t *testing.T) {
		a, peer := tcpPair(t)
		fd := fdOf(t, a)
		he, se := make(events, 1), make(events, 2)
		b, err := l.Begin(context.Background(), 2)
		if err != nil {
			t.Fatal(err)
		}
		h, hud := b.Add(he)
		h.PrepSend(fd, unsafe.Pointer(&big[0]), uint32(len(big)), unix.MSG_WAITALL)
		h.Flags |= uring.SQEIOLink
		s, sud := b.Add(se)
		s.PrepSendZC(fd, unsafe.Pointer(&big[0]), 4096, unix.MSG_WAITALL, 0, 0)
		if k, err := b.Submit(); k != 2 || err != nil {
			t.Fatalf("Submit = %d, %v", k, err)
		}
		stall(t, he)
		missed, _ := l.CancelsMissed()
		if cres := cancelResult(t, l, sud); cres != -int32(unix.ENOENT) {
			t.Errorf("ASYNC_CANCEL of a SEND_ZC linked behind a waiting send = %d, want -ENOENT", cres)
		}
		if now, _ := l.CancelsMissed(); now != missed+1 {
			t.Errorf("CancelsMissed counted %d cancellations that found nothing, want 1", now-missed)
		}
		if cres := cancelResult(t, l, hud); cres != 0 {
			t.Errorf("ASYNC_CANCEL of the waiting head = %d, want 0", cres)
		}
		head := next(t, he)
		go io.Copy(io.Discard, peer)
		res, notified := sendZCEnd(t, se, nil)
		t.Logf("head = %d; linked SEND_ZC = %d, flags %#x, notified %v", head.Res, res.Res, res.Flags, notified)
		if res.Res != -int32(unix.ECANCELED) {
			t.Errorf("linked SEND_ZC after its head was cancelled = %+v, want -ECANCELED", res)
		}
	})
	t.Run("racing", func(t *testing.T) {
		a, b := tcpPair(t)
		go io.Copy(io.Discard, b)
		fd := fdOf(t, a)
		counts := map[int32]int{}
		for range 200 {
			e := make(events, 2)
			ud := submit(t, l, e, func(s *uring.SQE) {
				s.PrepSendZC(fd, unsafe.Pointer(&big[0]), 8<<20, unix.MSG_WAITALL, 0, 0)
			})
			counts[cancelResult(t, l, ud)]++
			sendZCEnd(t, e, nil)
		}
		t.Logf("cancel results (0, -ENOENT = -2, -EALREADY = -114): %v", counts)
		if n := counts[-int32(unix.EALREADY)]; n > 0 {
			t.Errorf("%d cancellations answered -EALREADY", n)
		}
	})
}
