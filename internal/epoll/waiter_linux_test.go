package epoll_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/epoll"
	"github.com/sendfile2/sendfile2/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func socketpair(t *testing.T) (int, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

func TestWaitWritable(t *testing.T) {
	a, b := socketpair(t)
	// Fill a's buffer.
	buf := make([]byte, 64<<10)
	for {
		if _, err := unix.Write(a, buf); err == unix.EAGAIN {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	w, err := epoll.New(a, unix.EPOLLOUT)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	got := make(chan error, 1)
	go func() {
		ev, err := w.Wait(context.Background())
		if err == nil && ev&unix.EPOLLOUT == 0 {
			err = errors.New("woke without EPOLLOUT")
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("Wait returned before the peer read: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	for { // drain b so that a becomes writable
		if _, err := unix.Read(b, buf); err == unix.EAGAIN {
			break
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

func TestWaitCancel(t *testing.T) {
	a, b := socketpair(t)
	w, err := epoll.New(a, unix.EPOLLIN)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := w.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want context.DeadlineExceeded", err)
	}
	// The Waiter still works after a cancelled wait.
	unix.Write(b, []byte("x"))
	if ev, err := w.Wait(context.Background()); err != nil || ev&unix.EPOLLIN == 0 {
		t.Fatalf("Wait after a cancelled one = %#x, %v", ev, err)
	}
}

func TestWaitHangup(t *testing.T) {
	a, b := socketpair(t)
	w, err := epoll.New(a, unix.EPOLLIN)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	unix.Shutdown(b, unix.SHUT_RDWR)
	ev, err := w.Wait(context.Background())
	if err != nil || ev&(unix.EPOLLHUP|unix.EPOLLIN|unix.EPOLLRDHUP) == 0 {
		t.Fatalf("Wait after the peer hung up = %#x, %v", ev, err)
	}
}

// waitBriefly waits for 20 ms at most and reports the events, or 0.
func waitBriefly(t *testing.T, w *epoll.Waiter) uint32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	ev, err := w.Wait(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestModify: Modify switches the events watched, and with EPOLLET a state
// that holds is reported once, not on every Wait.
func TestModify(t *testing.T) {
	a, b := socketpair(t)
	w, err := epoll.New(a, unix.EPOLLIN)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if ev := waitBriefly(t, w); ev != 0 {
		t.Fatalf("nothing to read, yet Wait = %#x", ev)
	}
	if err := w.Modify(unix.EPOLLOUT); err != nil {
		t.Fatal(err)
	}
	for range 2 { // level-triggered: as long as it holds
		if ev := waitBriefly(t, w); ev&unix.EPOLLOUT == 0 {
			t.Fatalf("writable socket, Wait = %#x", ev)
		}
	}
	if err := w.Modify(unix.EPOLLOUT | unix.EPOLLET); err != nil {
		t.Fatal(err)
	}
	if ev := waitBriefly(t, w); ev&unix.EPOLLOUT == 0 {
		t.Fatalf("after Modify with EPOLLET, Wait = %#x, want EPOLLOUT once", ev)
	}
	if ev := waitBriefly(t, w); ev != 0 {
		t.Fatalf("edge-triggered, no change, yet Wait = %#x", ev)
	}
	if err := w.Modify(unix.EPOLLIN | unix.EPOLLET); err != nil {
		t.Fatal(err)
	}
	if ev := waitBriefly(t, w); ev != 0 {
		t.Fatalf("nothing to read, yet Wait = %#x", ev)
	}
	unix.Write(b, []byte("x"))
	if ev := waitBriefly(t, w); ev&unix.EPOLLIN == 0 {
		t.Fatalf("after a write by the peer, Wait = %#x", ev)
	}
	if ev := waitBriefly(t, w); ev != 0 {
		t.Fatalf("edge-triggered, no new data, yet Wait = %#x", ev)
	}
	unix.Write(b, []byte("y"))
	if ev := waitBriefly(t, w); ev&unix.EPOLLIN == 0 {
		t.Fatalf("after a second write, Wait = %#x", ev)
	}
}

// TestPoller: one Poller serves many Watches; each wakes for its own
// descriptor only, a cancelled wait leaves the Watch usable, and Close
// stops the collecting goroutine (the leak check of TestMain).
func TestPoller(t *testing.T) {
	p, err := epoll.NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 16
	var peers [n]int
	var watches [n]*epoll.Watch
	for i := range n {
		a, b := socketpair(t)
		peers[i] = b
		watches[i] = p.Watch(a)
		defer watches[i].Close()
	}
	// Nothing to read anywhere: a wait ends with its context.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := watches[3].Wait(ctx, unix.EPOLLIN); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with nothing to read = %v, want context.DeadlineExceeded", err)
	}
	// Data for one: only its Watch wakes.
	for i := range n {
		if err := watches[i].Arm(unix.EPOLLIN); err != nil {
			t.Fatal(err)
		}
	}
	unix.Write(peers[5], []byte("x"))
	select {
	case ev := <-watches[5].C():
		if ev&unix.EPOLLIN == 0 {
			t.Fatalf("woke with %#x, want EPOLLIN", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the Watch with data did not wake")
	}
	for i := range n {
		select {
		case ev := <-watches[i].C():
			t.Fatalf("Watch %d woke (%#x) without data", i, ev)
		default:
		}
	}
	// A descriptor number another Watch has armed is refused.
	a, _ := socketpair(t)
	w1, w2 := p.Watch(a), p.Watch(a)
	defer w1.Close()
	defer w2.Close()
	if err := w1.Arm(unix.EPOLLOUT); err != nil {
		t.Fatal(err)
	}
	if err := w2.Arm(unix.EPOLLOUT); !errors.Is(err, epoll.ErrBusy) {
		t.Fatalf("Arm of a descriptor armed by another Watch = %v, want ErrBusy", err)
	}
}
