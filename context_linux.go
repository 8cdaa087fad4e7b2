package sendfile2

import (
	"context"
	"sync"
	"time"
)

// sendContext returns a context that ends when ctx does or when the Sender
// closes (cause ErrClosed), and the function that releases it. It is the one
// way a send ends with the Sender: Send and Receive make one per call, a
// listener's conn one for all of its sends.
func (s *Sender) sendContext(ctx context.Context) (context.Context, context.CancelFunc) {
	c := &sendCtx{parent: ctx, s: s}
	return c, c.end
}

// sendCtx is the context of one send. A context derived from the caller's
// that the Sender's Close cancels costs allocations and a lock that every
// send shares (the AfterFunc on the Sender's context); sendCtx derives it
// only when it is needed: when the send waits (Done), asks for the cause, or
// finds either context ended. A send that never waits, as a copy that the
// socket buffer takes at once, only checks the caller's context and a flag.
type sendCtx struct {
	parent context.Context
	s      *Sender
	once   sync.Once
	// Set by merge, under once.
	merged  context.Context
	cancel  context.CancelCauseFunc
	unwatch func() bool // the AfterFunc on the Sender's context
}

// merge derives the context that ends with either.
func (c *sendCtx) merge() context.Context {
	c.once.Do(func() {
		ctx, cancel := context.WithCancelCause(c.parent)
		stop := context.AfterFunc(c.s.ctx, func() { cancel(ErrClosed) })
		if c.s.closing.Load() {
			cancel(ErrClosed) // now, not later from AfterFunc's goroutine
		}
		c.merged, c.cancel, c.unwatch = ctx, cancel, stop
	})
	return c.merged
}

func (c *sendCtx) Deadline() (time.Time, bool) { return c.parent.Deadline() }
func (c *sendCtx) Done() <-chan struct{}       { return c.merge().Done() }
func (c *sendCtx) Value(key any) any           { return c.merge().Value(key) } // context.Cause asks here

func (c *sendCtx) Err() error {
	if c.parent.Err() == nil && !c.s.closing.Load() {
		return nil
	}
	m := c.merge()
	if c.s.closing.Load() {
		// Merged before Close: its AfterFunc may not have run yet.
		c.cancel(ErrClosed)
	}
	return m.Err()
}

// end releases what merge made. The sends are over: nothing uses c any more.
func (c *sendCtx) end() {
	c.once.Do(func() {}) // orders the reads below after a merge
	if c.cancel != nil {
		c.unwatch()
		c.cancel(context.Canceled)
	}
}
