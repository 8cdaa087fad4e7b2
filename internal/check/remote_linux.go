package check

import (
	"context"
	"fmt"
	"net"
	"os"

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
	return playRounds(ctx, opts, ", peer "+opts.Peer, r.round)
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
	f, want, seed, err := randomFile(r.opts.Dir, size)
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()

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

	where := func() string { return "the socket buffers and the peer's window" }
	if err := sendAndWait(ctx, r.send, r.opts, s, sc, f, size, drain, where); err != nil {
		return 0, 0, err
	}
	if err := changeAndEnd(s, f, want, sc); err != nil {
		return 0, 0, err
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
