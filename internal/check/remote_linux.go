package check

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/peer"
)

// runRemote is Run with the receiver on another machine, Options.Peer: the
// same scenarios and rounds, the file made of a stream the peer regenerates
// from its seed, so that the peer counts the changed bytes itself.
func runRemote(ctx context.Context, send SendFunc, opts Options) Outcome {
	var out Outcome
	ps, err := peer.Dial(ctx, opts.Peer)
	if err != nil {
		out.Err = fmt.Errorf("check: %w", err)
		return out
	}
	defer ps.Close()
	r := &remote{send: send, opts: opts, buf: bufferSize(opts.Size), ps: ps}
	for _, s := range Scenarios() {
		for i := range opts.Rounds {
			checked, corrupted, err := r.round(ctx, s)
			if checked > 0 {
				out.add(s, checked, corrupted)
			}
			if err != nil {
				out.Err = fmt.Errorf("check: %s, round %d of %d, peer %s: %w", s, i+1, opts.Rounds, opts.Peer, err)
				return out
			}
		}
	}
	return out
}

type remote struct {
	send SendFunc
	opts Options
	buf  int
	ps   *peer.Session
}

type drainResult struct {
	rep peer.Report
	err error
}

// round is runner.round with the peer as the receiver.
func (r *remote) round(ctx context.Context, s Scenario) (checked, corrupted int64, err error) {
	size := r.opts.Size
	var seed [32]byte
	rand.Read(seed[:])
	want := make([]byte, size)
	mrand.NewChaCha8(seed).Read(want)

	f, err := os.CreateTemp(r.opts.Dir, "sendfile2-check-*")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(want); err != nil {
		return 0, 0, err
	}

	d := &net.Dialer{Control: setBuffer(unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, "SO_SNDBUF", r.buf)}
	sc, _, err := r.ps.Open(ctx, peer.OpenOptions{Seed: seed, Small: s == Queued}, d)
	if err != nil {
		return 0, 0, err
	}
	defer sc.Close()

	// The peer reads once drain is called; every way out of round waits for
	// that read to end.
	var drained chan drainResult
	drain := func() {
		if drained == nil {
			drained = make(chan drainResult, 1)
			go func() {
				rep, err := r.ps.Drain(ctx, 3*r.opts.Timeout)
				drained <- drainResult{rep, err}
			}()
		}
	}
	defer func() {
		if drained != nil {
			sc.Close()
			<-drained
		}
	}()

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sendDone := make(chan sendResult, 1)
	go func() {
		n, err := r.send(sctx, sc, f, 0, int64(size))
		sendDone <- sendResult{n, err}
	}()
	timer := time.NewTimer(r.opts.Timeout)
	defer timer.Stop()
	var early <-chan time.Time
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
		drain()
		early = nil
		goto wait
	case <-timer.C:
		err := fmt.Errorf("%w (waited %v): the file (%d bytes) did not fit in the socket buffers and the peer's window, or the send hangs",
			ErrSendTimeout, r.opts.Timeout, size)
		r.abandon(sendDone, cancel, drain, sc)
		return 0, 0, err
	case <-ctx.Done():
		r.abandon(sendDone, cancel, drain, sc)
		return 0, 0, context.Cause(ctx)
	}
	if res.err != nil {
		return 0, 0, fmt.Errorf("send: %w", res.err)
	}
	if res.n != int64(size) {
		return 0, 0, fmt.Errorf("send returned %d of %d bytes without an error", res.n, size)
	}
	if err := apply(s, f, want); err != nil {
		return 0, 0, err
	}
	if err := sc.CloseWrite(); err != nil {
		return 0, 0, fmt.Errorf("after the send: %w", err)
	}
	drain()
	dr := <-drained
	drained = nil
	if dr.err != nil && dr.rep.Received == 0 {
		return 0, 0, dr.err
	}
	corrupted = dr.rep.Changed + max(int64(size)-dr.rep.Received, 0)
	switch {
	case dr.err != nil:
		err = fmt.Errorf("peer got %d of %d bytes: %w", dr.rep.Received, size, dr.err)
	case dr.rep.Received > int64(size):
		err = fmt.Errorf("peer got %d bytes, more than the %d sent", dr.rep.Received, size)
	case dr.rep.Received < int64(size):
		err = fmt.Errorf("peer got %d of %d bytes", dr.rep.Received, size)
	}
	return int64(size), corrupted, err
}

// abandon is runner.abandon with the peer as the receiver.
func (r *remote) abandon(sendDone <-chan sendResult, cancel context.CancelFunc, drain func(), sc *net.TCPConn) {
	drain()
	timer := time.NewTimer(r.opts.Timeout)
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
