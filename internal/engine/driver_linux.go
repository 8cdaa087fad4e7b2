package engine

import (
	"context"
	"time"

	"golang.org/x/sys/unix"

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
	cancelled bool       // ctx ended: cancel, and wait only for what is in flight
	try       bool       // submit returns uring.ErrFull rather than wait for room in the Loop
	missed    []*request // live requests a cancellation did not stop, to cancel again
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
	d.cancelMissed()
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
	evs := d.in.take(d.evs)
	d.evs = evs[:0]
	for _, e := range evs {
		if e.r.kind == reqCancel {
			d.cancelled1(e)
			continue
		}
		d.evs = append(d.evs, e)
		if e.last {
			delete(d.live, e.r)
		}
	}
	clear(evs[len(d.evs):])
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
			d.cancel(r)
		}
	}
}

// cancel asks the kernel to cancel r (IORING_OP_ASYNC_CANCEL). The answer
// comes back as the event of a reqCancel request (cancelled1). A request
// that the cancellation cannot find or stop is not over: one linked behind
// a read that goes on (a read that waits for the disk is found by no
// cancellation; one in an io-wq worker answers -EALREADY) is issued when
// that read completes, and a SEND_ZC to a peer that does not read would then
// wait for the peer, and its owner with it. So such a request is cancelled
// again until its result comes (cancelMissed).
func (d *driver) cancel(r *request) {
	d.loop.Cancel(r.ud, &request{in: d.in, kind: reqCancel, target: r})
}

// cancelled1 takes in the answer to a cancellation.
func (d *driver) cancelled1(e event) {
	switch e.cqe.Res {
	case -int32(unix.ENOENT), -int32(unix.EALREADY):
		d.missed = append(d.missed, e.r.target)
	}
}

// cancelRetryMax bounds the pause before a cancellation is tried again:
// 1 ms, doubled at each miss of the same request up to this.
const cancelRetryMax = 64 * time.Millisecond

// cancelMissed cancels again, after a pause that the kernel times
// (Loop.CancelAfter: nobody waits for it), the requests that a cancellation
// missed and whose result has still not come. Called before each wait, when
// the owner has taken in every event so far: a request whose result came in
// the meantime, or that completed (-ENOENT for that reason too), is left
// alone.
func (d *driver) cancelMissed() {
	for i, r := range d.missed {
		d.missed[i] = nil
		if _, live := d.live[r]; !live || r.seen {
			continue
		}
		r.cancelMisses++
		pause := min(time.Millisecond<<min(r.cancelMisses-1, 16), cancelRetryMax)
		d.loop.CancelAfter(r.ud, pause, &request{in: d.in, kind: reqCancel, target: r})
	}
	d.missed = d.missed[:0]
}
