//go:build linux

package sendfile2_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sendfile2/sendfile2"
)

// TestURingCancelInFlight ends a uring send's context at a submission while a
// SEND_ZC of its own is in flight, as when its wait took a completion over
// the context's end, and stops the peer and shrinks the socket's send buffer
// there, so that the SEND_ZC waits in the kernel for the peer: the Loop
// refuses the submission, and the send must still cancel the SEND_ZC rather
// than wait with it.
func TestURingCancelInFlight(t *testing.T) {
	const size = 64 << 20
	f, _ := tempFile(t, size)
	hits := 0
	for i := 0; i < 20; i++ {
		var once sync.Once
		var stop, hit atomic.Bool
		ctx, cancel := context.WithCancel(context.Background())
		a, b := smallWindowPair(t)
		s := newTunedSender(t, sendfile2.Config{Method: sendfile2.URing}, func(tu *sendfile2.Tuning) {
			tu.URingSubmit = func(sends int) error {
				if sends > 0 {
					once.Do(func() {
						hit.Store(true)
						stop.Store(true)
						setSndbuf(t, a, 1)
						cancel()
					})
				}
				return ctx.Err() // Begin refuses once ctx is done
			}
		})
		go func() {
			buf := make([]byte, 4096)
			for !stop.Load() {
				if _, err := b.Read(buf); err != nil {
					return
				}
				time.Sleep(100 * time.Microsecond) // a slow peer: notifications come while sends wait
			}
		}()
		r := await(t, goSend(ctx, s, a, f, 0, size), "a uring send cancelled with a SEND_ZC in flight")
		cancel()
		if hit.Load() {
			hits++
			if r.n >= size || !errors.Is(r.err, context.Canceled) {
				t.Fatalf("Send = %d, %v; want fewer bytes and context.Canceled", r.n, r.err)
			}
		}
		b.SetLinger(0)
		b.Close() // a reset: the kernel frees what it had queued
		io.Copy(io.Discard, a)
		a.Close()
		s.Close()
	}
	if hits == 0 {
		t.Skip("no submission with a SEND_ZC in flight")
	}
	t.Logf("%d of 20 sends cancelled with a SEND_ZC in flight", hits)
}
