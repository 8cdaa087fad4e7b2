package uring_test

import (
	"context"
	"testing"

	"github.com/sendfile2/sendfile2/internal/uring"
)

// BenchmarkNopRoundTrip is one NOP submitted and its CQE received by the
// submitting goroutine, one after another: the hand-offs of a Loop without
// the work. By default the NOP completes inside the submitter's
// io_uring_enter and the submitter delivers it itself; in thread mode the
// ring thread is woken to submit it and wakes the submitter with its CQE.
func BenchmarkNopRoundTrip(b *testing.B) {
	for _, mode := range []struct {
		name string
		cfg  uring.Config
	}{{"default", uring.Config{}}, {"thread", uring.Config{Thread: true}}} {
		b.Run("mode="+mode.name, func(b *testing.B) {
			l, err := uring.NewLoop(mode.cfg)
			if err != nil {
				b.Skip(err)
			}
			defer l.Close()
			e := make(events, 1)
			for b.Loop() {
				bt, err := l.Begin(context.Background(), 1)
				if err != nil {
					b.Fatal(err)
				}
				sqe, _ := bt.Add(e)
				sqe.PrepNop()
				bt.Submit()
				<-e
			}
		})
	}
}
