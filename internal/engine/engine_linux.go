package engine

import (
	"fmt"

	"github.com/sendfile2/sendfile2/internal/probe"
	"github.com/sendfile2/sendfile2/internal/uring"
)

// New returns the engines configured by cfg, without io_uring.
func New(cfg Config) *Engines {
	e := &Engines{cfg: cfg}
	e.maps.idle = cfg.Tuning.MapIdle
	return e
}

// SetupURing creates the ring and, when buffers is set, the registered
// buffer pool. Errors that say "not here" match probe.ErrNotSupported.
func (e *Engines) SetupURing(buffers bool) error {
	loop, err := uring.NewLoop(uring.Config{Thread: e.cfg.Tuning.URingThread})
	if err != nil {
		return probe.URingSetup(err)
	}
	if err := probe.URingOps(loop.Probe(), uring.OpSendZC, uring.OpReadFixed); err != nil {
		loop.Close()
		return err
	}
	if buffers {
		pool, err := newBufPool(loop, e.cfg.Buffers, e.cfg.BufferSize)
		if err != nil {
			loop.Close()
			return fmt.Errorf("registered buffers: %w", probe.Memlock(err))
		}
		e.pool = pool
	}
	e.loop = loop
	return nil
}

// Close releases what the sends shared. Every send has returned: it waits
// for the notifications of cancelled sends, then unmaps the buffers.
func (e *Engines) Close() error {
	e.maps.close()
	e.pipes.close()
	e.closePoller()
	var err error
	if e.loop != nil {
		err = e.loop.Close()
	}
	if e.pool != nil {
		e.pool.release()
	}
	return err
}

// PoolShort is the number of parts of sends and receives that were copied
// because every registered buffer was lent, or the ring was full.
func (e *Engines) PoolShort() int64 { return e.poolShort.Load() }

// Send runs j. It returns when the kernel holds no reference to j's file
// pages or header.
func (e *Engines) Send(j Job) Outcome {
	t := &transfer{e: e, Job: j}
	h, err := t.plainHeader()
	var n int64
	if err == nil {
		n, err = t.engine()
	}
	return Outcome{N: h + n, Err: err, ZeroCopy: t.usage.ZeroCopy.Load(), Copied: t.usage.Copied.Load(), Fallbacks: t.fallbacks}
}

// plainHeader sends the header ahead of the body for the kinds that cannot
// put it in the same submission as the body, corked with MSG_MORE so that it
// leaves in the same segments as the start of the body.
func (t *transfer) plainHeader() (int64, error) {
	if len(t.Header) == 0 || t.Kind == URing || t.Kind == URingMmap || t.Kind == Copy {
		return 0, nil
	}
	sw := t.e.roomWait(t.Sock)
	defer sw.close()
	n, err := sendAllFlags(t.Ctx, sw, t.Header, t.more())
	t.Header = nil
	return int64(n), err
}

func (t *transfer) engine() (int64, error) {
	switch t.Kind {
	case URing:
		return t.uring()
	case URingMmap:
		return t.uringMmap()
	case MsgZC:
		return t.msgzc()
	case Copy:
		return t.copy()
	case Sendfile:
		return t.sendfile()
	case Splice:
		return t.splice()
	}
	return 0, fmt.Errorf("engine %v: %w", t.Kind, probe.ErrNotSupported)
}
