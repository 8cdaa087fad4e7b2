package check

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"time"
)

// The steps that a round shares, with the receiver here (runner.round) or on
// a peer (remote.round).

// playRounds plays every scenario Options.Rounds times with round and adds
// up what they checked; the first error ends it, said with the scenario, the
// round and at (where the receiver is, or nothing).
func playRounds(ctx context.Context, opts Options, at string, round func(context.Context, Scenario) (checked, corrupted int64, err error)) Outcome {
	var out Outcome
	for _, s := range Scenarios() {
		for i := range opts.Rounds {
			checked, corrupted, err := round(ctx, s)
			if checked > 0 {
				out.add(s, checked, corrupted)
			}
			if err != nil {
				out.Err = fmt.Errorf("check: %s, round %d of %d%s: %w", s, i+1, opts.Rounds, at, err)
				return out
			}
		}
	}
	return out
}

// randomFile writes size random bytes, made from seed, to a new file in dir
// and returns it open with its content and seed. The caller removes it.
func randomFile(dir string, size int) (f *os.File, want []byte, seed [32]byte, err error) {
	rand.Read(seed[:])
	want = make([]byte, size)
	mrand.NewChaCha8(seed).Read(want)
	f, err = os.CreateTemp(dir, "sendfile2-check-*")
	if err != nil {
		return nil, nil, seed, err
	}
	if _, err := f.Write(want); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, nil, seed, err
	}
	return f, want, seed, nil
}

// sendAndWait calls send for the whole of f (size bytes) on sc, and waits for
// it to return: the whole file sent, or an error. release lets the receiver
// read (it is called at most once for what it starts); for scenario Queued it
// is called after QueuedRelease, while the send runs.
//
// It never hangs on a send that does not return: after Options.Timeout it
// lets the receiver read, gives the send another Options.Timeout, then
// cancels its context and closes sc, and waits for it to return; the error
// matches ErrSendTimeout then, and where says what the file did not fit in.
// When ctx ends, it does the same and returns context.Cause(ctx).
func sendAndWait(ctx context.Context, send SendFunc, opts Options, s Scenario, sc *net.TCPConn, f *os.File, size int, release func(), where func() string) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sendDone := make(chan sendResult, 1)
	go func() {
		n, err := send(sctx, sc, f, 0, int64(size))
		sendDone <- sendResult{n, err}
	}()

	timer := time.NewTimer(opts.Timeout)
	defer timer.Stop()
	var early <-chan time.Time // Queued: the receiver starts reading after QueuedRelease
	if s == Queued {
		t := time.NewTimer(QueuedRelease)
		defer t.Stop()
		early = t.C
	}
	var res sendResult
wait:
	select {
	case res = <-sendDone:
	case <-early:
		release()
		early = nil
		goto wait
	case <-timer.C:
		err := fmt.Errorf("%w (waited %v): the file (%d bytes) did not fit in %s, or the send hangs",
			ErrSendTimeout, opts.Timeout, size, where())
		abandon(opts.Timeout, sendDone, cancel, release, sc)
		return err
	case <-ctx.Done():
		abandon(opts.Timeout, sendDone, cancel, release, sc)
		return context.Cause(ctx)
	}
	if res.err != nil {
		return fmt.Errorf("send: %w", res.err)
	}
	if res.n != int64(size) {
		return fmt.Errorf("send returned %d of %d bytes without an error", res.n, size)
	}
	return nil
}

// changeAndEnd changes f as scenario s says (apply), right after the send
// returned, then ends the stream on sc so that the receiver can tell whether
// more came.
func changeAndEnd(s Scenario, f *os.File, want []byte, sc *net.TCPConn) error {
	if err := apply(s, f, want); err != nil {
		return err
	}
	if err := sc.CloseWrite(); err != nil {
		return fmt.Errorf("after the send: %w", err)
	}
	return nil
}

// abandon ends a round whose send has not returned: it lets the receiver read
// so that a send waiting for room or for acknowledgements can finish, gives the
// send another timeout, then cancels its context and closes its connection,
// and waits for it to return.
func abandon(timeout time.Duration, sendDone <-chan sendResult, cancel context.CancelFunc, release func(), sc *net.TCPConn) {
	release()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-sendDone:
		return
	case <-timer.C:
	}
	cancel()
	sc.Close()
	<-sendDone
}
