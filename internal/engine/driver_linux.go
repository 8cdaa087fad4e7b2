package engine

import (
	"context"

	"github.com/sendfile2/sendfile2/internal/uring"
)

// driver is what every io_uring loop of the engines shares: the requests in
// flight, the wait for their CQEs, and their cancellation when the context
// ends. Its owner plans and submits requests, then calls next and handles
// the events it returns, until nothing of it is in flight.
type driver struct {
	loop      *uring.Loop
	ctx       context.Context
	in        *inbox
	live      map[*request]struct{} // submitted, last CQE not seen yet
	evs       []event
	cancelled bool // ctx ended: cancel, and wait only for what is in flight
	try       bool // submit returns uring.ErrFull rather than wait for room in the Loop
}

func newDriver(loop *uring.Loop, ctx context.Context) *driver {
	return &driver{loop: loop, ctx: ctx, in: newInbox(), live: map[*request]struct{}{}}
}

// submit submits batch in one io_uring_enter, prepared by prep;
// link(i) says whether batch[i] is linked to batch[i+1]. It returns how many
// the kernel took: those are live until their last CQE. undo is called for
// each of the others, with whether prep ran for it.
func (d *driver) submit(ctx context.Context, batch []*request, prep func(i int, r *request, sqe *uring.SQE), link func(i int) bool, undo func(r *request, prepared bool)) (int, error) {
	var b uring.Batch
	var err error
	if d.try {
		b, err = d.loop.TryBegin(len(batch))
	} else {
		b, err = d.loop.Begin(ctx, len(batch))
	}
	if err != nil {
		for _, r := range batch {
			undo(r, false)
		}
		return 0, err
	}
	for i, r := range batch {
		r.in = d.in
		sqe, ud := b.Add(r)
		r.ud = ud
		prep(i, r, sqe)
		if link(i) {
			sqe.Flags |= uring.SQEIOLink
		}
	}
	k, err := b.Submit()
	for _, r := range batch[:k] {
		d.live[r] = struct{}{}
	}
	for _, r := range batch[k:] {
		undo(r, true)
	}
	return k, err
}

// next waits for events and returns them. When ctx ends first, it marks the
// operation cancelled, calls cancel, and returns none: the caller goes round
// again, and from then on next waits for what is in flight whatever ctx says.
func (d *driver) next(cancel func()) []event {
	evs, _, _ := d.nextOr(cancel, nil)
	return evs
}

// nextOr is next that also returns, with no events, when ready delivers
// (a socket's readiness, see sockWait.arm): it returns ready's events and
// true then.
func (d *driver) nextOr(cancel func(), ready <-chan uint32) ([]event, uint32, bool) {
	clear(d.evs)
	d.evs = d.evs[:0]
	if d.cancelled {
		<-d.in.wake
	} else {
		select {
		case <-d.in.wake:
		case ev := <-ready:
			return nil, ev, true
		case <-d.ctx.Done():
			d.stop(cancel)
			return nil, 0, false
		}
	}
	d.evs = d.in.take(d.evs)
	for _, e := range d.evs {
		if e.last {
			delete(d.live, e.r)
		}
	}
	return d.evs, 0, false
}

// stop marks the operation cancelled and, the first time, calls cancel
// (cancelLive when nil) to cancel what is in flight. Every place that finds
// ctx ended goes through it: an operation marked cancelled waits in next only
// for what is in flight, so a request left uncancelled there (a SEND_ZC
// waiting for a peer that does not read) would keep it waiting for the peer.
func (d *driver) stop(cancel func()) {
	if d.cancelled {
		return
	}
	d.cancelled = true
	if cancel == nil {
		cancel = d.cancelLive
	}
	cancel()
}

// cancelLive asks the kernel to cancel the requests whose result has not
// come yet; each still completes through its handler.
func (d *driver) cancelLive() {
	for r := range d.live {
		if !r.seen {
			d.loop.Cancel(r.ud)
		}
	}
}
