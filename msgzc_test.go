package sendfile2_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/internal/check"
)

// countingObserver counts notifications.
type countingObserver struct{ notified, copied atomic.Int64 }

func (o *countingObserver) Notified(m sendfile2.Method, _ time.Duration, copied bool) {
	if m != sendfile2.MsgZC {
		panic("notification for method " + string(m))
	}
	o.notified.Add(1)
	if copied {
		o.copied.Add(1)
	}
}

// TestMsgzcWaitsForNotifications: behind a small receive window, most of
// the file is still queued in the sender's socket, on the file's own pages,
// when the last send(2) returns. Send must wait until the peer has read it
// (which brings the notifications), not return when the calls do.
func TestMsgzcWaitsForNotifications(t *testing.T) {
	obs := &countingObserver{}
	s := newSender(t, sendfile2.Config{Method: sendfile2.MsgZC, Observer: obs})
	f, data := tempFile(t, 4<<20)
	a, b := smallWindowPair(t)
	var read atomic.Int64
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		var buf bytes.Buffer
		p := make([]byte, 64<<10)
		for {
			n, err := b.Read(p)
			buf.Write(p[:n])
			read.Add(int64(n))
			if err != nil {
				got <- buf.Bytes()
				return
			}
		}
	}()
	n, err := s.Send(context.Background(), a, f, 0, int64(len(data)))
	readAtReturn := read.Load()
	a.Close()
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Send = %d, %v", n, err)
	}
	// A few hundred KiB at most fit in the receiver's buffer and in flight.
	if readAtReturn < int64(len(data))-1<<20 {
		t.Fatalf("Send returned when the peer had read %d of %d bytes: the rest was still queued on the file's pages", readAtReturn, len(data))
	}
	if !bytes.Equal(<-got, data) {
		t.Fatal("wrong bytes")
	}
	st := s.Stats().Methods[sendfile2.MsgZC]
	if st.ZeroCopyBytes+st.CopiedBytes != int64(len(data)) {
		t.Errorf("notifications accounted %d zero-copy + %d copied bytes, want %d in all", st.ZeroCopyBytes, st.CopiedBytes, len(data))
	}
	if obs.notified.Load() == 0 {
		t.Error("the Observer saw no notification")
	}
	// Loopback copies every zero-copy send: the kernel copies a zero-copy
	// skb that it delivers to a local socket.
	if st.CopiedBytes != int64(len(data)) || obs.copied.Load() != obs.notified.Load() {
		t.Errorf("on loopback every notification should say copied: %+v, observer %d of %d", st, obs.copied.Load(), obs.notified.Load())
	}
}

// TestMsgzcForeignNotification: a notification already queued on the
// socket when Send starts is another MSG_ZEROCOPY user's; Send reads it and
// refuses to start rather than take such notifications for its own later.
// With the queue empty again, the next Send works.
func TestMsgzcForeignNotification(t *testing.T) {
	s := newSender(t, sendfile2.Config{Method: sendfile2.MsgZC})
	f, data := tempFile(t, 100000)
	a, b := tcpPair(t)
	got := receive(b)
	foreign := []byte("foreign")
	rc, err := a.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ZEROCOPY, 1); serr != nil {
			return
		}
		if serr = unix.Sendto(int(fd), foreign, unix.MSG_ZEROCOPY, nil); serr != nil {
			return
		}
		// Wait until its notification is queued (POLLERR), without reading it.
		_, serr = unix.Poll([]unix.PollFd{{Fd: int32(fd)}}, 10000)
	})
	if serr != nil {
		t.Fatal(serr)
	}
	if n, err := s.Send(context.Background(), a, f, 0, int64(len(data))); err == nil || n != 0 {
		t.Fatalf("Send with a foreign notification queued = %d, %v; want 0 and an error", n, err)
	}
	// The refused send read the foreign notification: the queue is empty.
	if n, err := s.Send(context.Background(), a, f, 0, int64(len(data))); err != nil || n != int64(len(data)) {
		t.Fatalf("Send once the queue is empty = %d, %v", n, err)
	}
	a.Close()
	if !bytes.Equal(<-got, append(foreign, data...)) {
		t.Fatal("wrong bytes")
	}
}

const optmemSysctl = "/proc/sys/net/core/optmem_max"

// restoreOptmem puts net.core.optmem_max back at the end of t if a child
// process changed it from a network namespace of its own: on kernels where the
// sysctl is not per namespace, that changed it for the whole machine.
func restoreOptmem(t *testing.T) {
	t.Helper()
	before, err := os.ReadFile(optmemSysctl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if now, err := os.ReadFile(optmemSysctl); err == nil && !bytes.Equal(now, before) {
			t.Logf("optmem_max is not per network namespace on this kernel: restoring %s", bytes.TrimSpace(before))
			os.WriteFile(optmemSysctl, before, 0)
		}
	})
}

// TestMsgzcNoBufs: with net.core.optmem_max too small for the notifications
// of many calls, send(MSG_ZEROCOPY) fails with ENOBUFS. MsgZC then waits for
// notifications and sends again, or, with nothing to wait for, copies the
// rest: every byte still arrives, and the file is still safe when Send
// returns. The test runs itself again in a network namespace of its own,
// where optmem_max is its own on recent kernels; where the sysctl turns out
// to be global, the test restores it.
func TestMsgzcNoBufs(t *testing.T) {
	if os.Getenv("SENDFILE2_NETNS_CHILD") == "" {
		if os.Geteuid() != 0 {
			t.Skip("creating a network namespace needs root")
		}
		restoreOptmem(t)
		cmd := exec.Command(os.Args[0], "-test.run=^TestMsgzcNoBufs$", "-test.v", "-test.count=1", "-test.timeout=120s")
		cmd.Env = append(os.Environ(), "SENDFILE2_NETNS_CHILD=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		out, err := cmd.CombinedOutput()
		t.Logf("in a new network namespace:\n%s", out)
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		if !strings.Contains(string(out), "--- PASS: TestMsgzcNoBufs") {
			t.Fatal("the test did not pass in the network namespace")
		}
		return
	}
	setupNetns(t)
	for _, tt := range []struct {
		name   string
		optmem int
	}{
		// Room for the notification state of a call or two: ENOBUFS with
		// calls outstanding, so MsgZC waits for them and sends again.
		{"retry", 1536},
		// Room for none: ENOBUFS with nothing outstanding, so MsgZC copies.
		{"fallback", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(optmemSysctl, []byte(fmt.Sprint(tt.optmem)), 0); err != nil {
				t.Fatal(err)
			}
			s := newSender(t, sendfile2.Config{Method: sendfile2.MsgZC})
			f, data := tempFile(t, 16<<20+12345)
			a, b := tcpPair(t)
			got := receive(b)
			n, err := s.Send(context.Background(), a, f, 0, int64(len(data)))
			a.Close()
			if err != nil || n != int64(len(data)) {
				t.Fatalf("Send = %d, %v", n, err)
			}
			if !bytes.Equal(<-got, data) {
				t.Fatal("wrong bytes")
			}
			out := check.Run(context.Background(), s.Send, check.Options{Dir: t.TempDir()})
			if out.Err != nil {
				t.Fatal(out.Err)
			}
			for sc, o := range out.PerScenario {
				if o.CorruptedBytes != 0 {
					t.Errorf("%s: %d of %d bytes corrupted", sc, o.CorruptedBytes, o.BytesChecked)
				}
			}
			st := s.Stats()
			retries := sendfile2.MsgZCNoBufs(s)
			t.Logf("optmem_max %d: %d ENOBUFS retried, %d fallbacks, %+v", tt.optmem, retries, st.Fallbacks, st.Methods[sendfile2.MsgZC])
			switch tt.name {
			case "retry":
				if retries == 0 {
					t.Error("no ENOBUFS was retried: the test did not test it")
				}
			case "fallback":
				if st.Fallbacks == 0 {
					t.Error("no fallback to copying: the test did not test it")
				}
			}
		})
	}
}

// setupNetns brings up the loopback interface of the network namespace the
// test runs in (SIOCSIFFLAGS).
func setupNetns(t *testing.T) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		t.Fatal(os.NewSyscallError("ioctl SIOCGIFFLAGS", err))
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		t.Fatal(os.NewSyscallError("ioctl SIOCSIFFLAGS", err))
	}
}

// BenchmarkMsgZCVariants measures MsgZC's chunk size. On loopback the
// kernel copies every zero-copy send: these numbers show MSG_ZEROCOPY's
// overhead, not its gain.
func BenchmarkMsgZCVariants(b *testing.B) {
	for _, chunk := range []int{16 << 10, 64 << 10, 256 << 10, 1 << 20} {
		for _, size := range []int{1 << 20, 64 << 20} {
			b.Run(fmt.Sprintf("variant=mmap/chunk=%s/size=%s", sizeName(chunk), sizeName(size)), func(b *testing.B) {
				tune := func(t *sendfile2.Tuning) { t.MsgZCChunk = chunk }
				benchSend(b, newTunedSender(b, sendfile2.Config{Method: sendfile2.MsgZC}, tune), size)
			})
		}
	}
}
