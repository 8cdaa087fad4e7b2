package uring_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/testutil"
	"github.com/sendfile2/sendfile2/internal/uring"
)

// taskRunKernels is the kernel that brought each task-work mode.
var taskRunKernels = map[uring.TaskRun]string{uring.TaskRunDefer: "6.1", uring.TaskRunCoop: "5.19", uring.TaskRunPlain: "5.6"}

// forEachTaskRun runs f on a thread-mode Loop set up for each task-work
// mode, as the kernels without the better ones would set it up.
func forEachTaskRun(t *testing.T, cfg uring.Config, f func(t *testing.T, l *uring.Loop)) {
	for tr := uring.TaskRunDefer; tr <= uring.TaskRunPlain; tr++ {
		t.Run("taskrun="+tr.String(), func(t *testing.T) {
			cfg := cfg
			cfg.Thread, cfg.TaskRun = true, tr
			l, err := uring.NewLoop(cfg)
			testutil.RequireFeature(t, "io_uring", "5.6", err == nil, err)
			t.Cleanup(func() {
				if err := l.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			testutil.RequireFeature(t, "io_uring task work "+tr.String(), taskRunKernels[tr], l.TaskRun() == tr, nil)
			f(t, l)
		})
	}
}

// waitAsleep waits until l's ring thread waits in io_uring_enter.
func waitAsleep(t *testing.T, l *uring.Loop) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !uring.Asleep(l); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the ring thread did not go to sleep within 10s")
		}
	}
}

// TestThreadSubmitWhileAsleep: a request handed to a ring thread that waits
// in io_uring_enter for a completion wakes it (through its eventfd) and
// completes.
func TestThreadSubmitWhileAsleep(t *testing.T) {
	forEachTaskRun(t, uring.Config{}, func(t *testing.T, l *uring.Loop) {
		for range 3 {
			waitAsleep(t, l)
			e := make(events, 1)
			submit(t, l, e, (*uring.SQE).PrepNop)
			if c := next(t, e); c.Res != 0 {
				t.Fatalf("NOP CQE = %+v", c)
			}
		}
	})
}

// blocking is a Handler that holds the ring thread in its drain until
// released.
type blocking struct {
	in      chan struct{}
	release chan struct{}
}

func (b blocking) HandleCQE(uring.CQE, bool) {
	b.in <- struct{}{}
	<-b.release
}

// TestThreadSubmitWhileDraining: a request handed to the ring thread while
// it delivers CQEs (it said it is awake: nobody writes its eventfd) is
// submitted when it has delivered them.
func TestThreadSubmitWhileDraining(t *testing.T) {
	forEachTaskRun(t, uring.Config{}, func(t *testing.T, l *uring.Loop) {
		b := blocking{in: make(chan struct{}), release: make(chan struct{})}
		submit(t, l, b, (*uring.SQE).PrepNop)
		<-b.in // the thread is inside the handler
		e := make(events, 1)
		submit(t, l, e, (*uring.SQE).PrepNop)
		close(b.release)
		if c := next(t, e); c.Res != 0 {
			t.Fatalf("NOP CQE = %+v", c)
		}
	})
}

// TestThreadSubmissionQueueFull: submitters that find the submission queue
// full of SQEs the ring thread has not submitted yet wait for it, and every
// request completes once.
func TestThreadSubmissionQueueFull(t *testing.T) {
	forEachTaskRun(t, uring.Config{SQEntries: 4}, func(t *testing.T, l *uring.Loop) {
		const goroutines, each = 16, 200
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				e := make(events, 1)
				for range each {
					b, err := l.Begin(context.Background(), 1)
					if err != nil {
						t.Error(err)
						return
					}
					sqe, _ := b.Add(e)
					sqe.PrepNop()
					b.Submit()
					if c := <-e; c.Res != 0 {
						t.Errorf("NOP CQE = %+v", c)
					}
				}
			})
		}
		wg.Wait()
		if l.Stray() != 0 {
			t.Errorf("%d stray CQEs", l.Stray())
		}
	})
}

// TestThreadCloseWhileAsleep: Close wakes a ring thread that waits in
// io_uring_enter, and the thread's goroutine ends with the Loop.
func TestThreadCloseWhileAsleep(t *testing.T) {
	for tr := uring.TaskRunDefer; tr <= uring.TaskRunPlain; tr++ {
		t.Run("taskrun="+tr.String(), func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			l, err := uring.NewLoop(uring.Config{Thread: true, TaskRun: tr})
			testutil.RequireFeature(t, "io_uring", "5.6", err == nil, err)
			e := make(events, 1)
			submit(t, l, e, (*uring.SQE).PrepNop)
			next(t, e)
			waitAsleep(t, l)
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := goleak.Find(before); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSingleIssuerRefusesOtherThreads is why a Thread Loop registers
// buffers on its thread: a ring set up with IORING_SETUP_SINGLE_ISSUER
// belongs to the thread that created it, and the kernel refuses
// io_uring_register(2) and io_uring_enter(2) from any other thread with
// EEXIST; a ring with COOP_TASKRUN takes them. DEFER_TASKRUN needs
// SINGLE_ISSUER: alone it is EINVAL.
func TestSingleIssuerRefusesOtherThreads(t *testing.T) {
	for _, c := range []struct {
		tr   uring.TaskRun
		want error
	}{{uring.TaskRunDefer, unix.EEXIST}, {uring.TaskRunCoop, nil}} {
		t.Run("taskrun="+c.tr.String(), func(t *testing.T) {
			setup, register, enter := uring.OtherThread(c.tr)
			testutil.RequireFeature(t, "io_uring task work "+c.tr.String(), taskRunKernels[c.tr], setup == nil, setup)
			if register != c.want || enter != c.want {
				t.Errorf("from another thread: register %v, enter %v; want %v", register, enter, c.want)
			}
		})
	}
	if err := uring.DeferAlone(); !errors.Is(err, unix.EINVAL) {
		t.Errorf("DEFER_TASKRUN without SINGLE_ISSUER: %v, want EINVAL", err)
	}
}

// TestThreadLargestBatch: a batch of MaxBatch SQEs fits beside the ring
// thread's wake read, and completes.
func TestThreadLargestBatch(t *testing.T) {
	forEachTaskRun(t, uring.Config{SQEntries: 4}, func(t *testing.T, l *uring.Loop) {
		e := make(events, l.MaxBatch())
		for range 3 {
			b, err := l.Begin(context.Background(), l.MaxBatch())
			if err != nil {
				t.Fatal(err)
			}
			for range l.MaxBatch() {
				sqe, _ := b.Add(e)
				sqe.PrepNop()
			}
			if n, err := b.Submit(); n != l.MaxBatch() || err != nil {
				t.Fatalf("Submit = %d, %v", n, err)
			}
			for range l.MaxBatch() {
				if c := next(t, e); c.Res != 0 {
					t.Fatalf("NOP CQE = %+v", c)
				}
			}
		}
	})
}
