package engine

import "github.com/sendfile2/sendfile2/internal/uring"

// What the Sender's tests read of the engines: the registered buffers not in
// the pool, the kept mappings, the ENOBUFS that MsgZC retried, the Loop's
// load.

// BuffersOut is the number of registered buffers not in the pool.
func (e *Engines) BuffersOut() int64 {
	if e.pool == nil {
		return 0
	}
	return e.pool.out.Load()
}

// MsgZCNoBufs is the number of times MsgZC sends got ENOBUFS and sent again
// after notifications.
func (e *Engines) MsgZCNoBufs() int64 { return e.msgzcNoBufs.Load() }

// Loop is the io_uring Loop, nil without one.
func (e *Engines) Loop() *uring.Loop { return e.loop }

// MapCounts returns the mappings of files e keeps now, the mappings it has
// made, and the sends that found theirs kept.
func (e *Engines) MapCounts() (kept int, mapped, hits int64) {
	c := &e.maps
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, fm := range c.m {
		if fm.mem != nil {
			kept++
		}
	}
	return kept, c.mapped, c.hits
}
