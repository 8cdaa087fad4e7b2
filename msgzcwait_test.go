//go:build linux

package sendfile2_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/sendfile2/sendfile2"
)

// TestMsgZCWaitFails: a msgzc send whose wait for its socket fails, with
// calls outstanding to a peer that does not read, must not return until the
// kernel has let go of them: the socket's output queue is empty then.
func TestMsgZCWaitFails(t *testing.T) {
	const size = 8 << 20
	f, _ := tempFile(t, size)
	injected := errors.New("epoll: injected")
	s := newTunedSender(t, sendfile2.Config{Method: sendfile2.MsgZC}, func(tu *sendfile2.Tuning) {
		tu.MsgZCWait = func(pending int) error {
			if pending > 0 {
				return injected
			}
			return nil
		}
	})
	a, b := smallWindowPair(t)
	defer b.Close()
	r := await(t, goSend(context.Background(), s, a, f, 0, size), "a msgzc send whose wait fails")
	if !errors.Is(r.err, injected) {
		t.Fatalf("Send = %d, %v; want %v", r.n, r.err, injected)
	}
	if ms := s.Stats().Methods[sendfile2.MsgZC]; ms.ZeroCopyBytes+ms.CopiedBytes != r.n {
		t.Errorf("Send returned with %d bytes sent, of which %d zero-copy and %d copied notified", r.n, ms.ZeroCopyBytes, ms.CopiedBytes)
	}
}

// TestMsgZCReclaim: a msgzc send whose wait fails resets its connection and
// then waits for the notifications of the calls whose segments a queueing
// discipline still holds: a token bucket (tc's tbf) on the loopback device
// of a network namespace of its own lets them out slowly. Freed at a rate
// that empties the queue in about a second, they all arrive and end the
// send (with the injected error only): the wait wakes on them. Held far
// longer than Tuning.MsgZCReclaim, they do not, and the send fails with the
// error that says so instead of hanging.
func TestMsgZCReclaim(t *testing.T) {
	if os.Getenv(limitChildEnv) != "tbf" {
		if os.Geteuid() != 0 {
			t.Skip("creating a network namespace needs root")
		}
		if _, err := exec.LookPath("tc"); err != nil {
			t.Skip("needs iproute2's tc")
		}
		runLimitChild(t, "", "TestMsgZCReclaim", "tbf", &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET})
		return
	}
	setupNetns(t)
	for _, tt := range []struct {
		name     string
		rate     string // of the token bucket
		bound    time.Duration
		released bool // every call notified within bound
	}{
		{"drained", "400kbit", 30 * time.Second, true},
		{"held", "8kbit", 100 * time.Millisecond, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// 1500-byte segments, 32 KB of them queued at most.
			for _, args := range [][]string{
				{"ip", "link", "set", "lo", "mtu", "1500"},
				{"tc", "qdisc", "replace", "dev", "lo", "root", "tbf", "rate", tt.rate, "burst", "1600", "limit", "32000"},
			} {
				if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
					t.Skipf("%v: %v: %s", args, err, out)
				}
			}
			const size = 4 << 20
			f, _ := tempFile(t, size)
			injected := errors.New("epoll: injected")
			s := newTunedSender(t, sendfile2.Config{Method: sendfile2.MsgZC}, func(tu *sendfile2.Tuning) {
				tu.MsgZCReclaim = tt.bound
				tu.MsgZCWait = func(pending int) error {
					if pending > 0 {
						return injected
					}
					return nil
				}
			})
			a, b := tcpPair(t)
			defer b.Close()
			r := await(t, goSend(context.Background(), s, a, f, 0, size), "a msgzc send whose wait fails")
			a.Close()
			if !errors.Is(r.err, injected) {
				t.Fatalf("Send = %d, %v; want %v", r.n, r.err, injected)
			}
			ms := s.Stats().Methods[sendfile2.MsgZC]
			notified := ms.ZeroCopyBytes + ms.CopiedBytes
			t.Logf("Send = %d, %v; %d bytes notified", r.n, r.err, notified)
			if tt.released {
				if notified != r.n {
					t.Errorf("Send returned with %d bytes sent, of which %d notified", r.n, notified)
				}
				if sendfile2.IsNotReleased(r.err) {
					t.Errorf("Send gave up waiting: %v", r.err)
				}
				return
			}
			if notified == r.n {
				t.Fatal("every call was notified at once: the queueing discipline held nothing, and the test tested nothing")
			}
			if !sendfile2.IsNotReleased(r.err) {
				t.Errorf("Send returned with %d of %d bytes not notified and no error saying so: %v", r.n-notified, r.n, r.err)
			}
		})
	}
}
