//go:build linux

package sendfile2_test

import (
	"context"
	"errors"
	"testing"

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
