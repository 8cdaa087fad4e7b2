package main

import (
	"container/list"
	"net"
	"time"
)

// idleList holds the idle keep-alive conns, the longest idle first.
type idleList struct{ l list.List }

// idleEntry is a conn's place in the idleList.
type idleEntry struct {
	e     *list.Element
	since time.Time
}

func (il *idleList) push(c *trackedConn, now time.Time) {
	if c.idleAt != nil {
		return
	}
	c.idleAt = &idleEntry{since: now}
	c.idleAt.e = il.l.PushBack(c)
}

func (il *idleList) remove(c *trackedConn) {
	if c.idleAt != nil {
		il.l.Remove(c.idleAt.e)
		c.idleAt = nil
	}
}

// oldest removes the conn idle the longest from the list and returns it,
// with when it turned idle; nil if none is idle.
func (il *idleList) oldest() (*trackedConn, time.Time) {
	e := il.l.Front()
	if e == nil {
		return nil, time.Time{}
	}
	c := e.Value.(*trackedConn)
	since := c.idleAt.since
	il.remove(c)
	return c, since
}

// reclaimIdle closes the conn that has waited longest for a next request,
// to make room for a new one at --max-conns, and reports whether there was
// one. The client sees its kept-alive conn close, as after --idle-timeout,
// and opens another when it needs one.
func (t *connTracker) reclaimIdle() bool {
	t.mu.Lock()
	c, since := t.idle.oldest()
	t.mu.Unlock()
	if c == nil {
		return false
	}
	t.log.Info("connection closed: limit reached", "limit", limitMaxConns, "idle", time.Since(since).Round(time.Millisecond), "peer", c.peer)
	t.cuts.WithLabelValues(limitMaxConns).Inc()
	c.Close()
	return true
}

// idled receives when a conn turns idle.
func (t *connTracker) idled() <-chan struct{} { return t.poke }

// limitReclaiming is limitListener, whose Accept at the limit closes the
// longest idle conn of r to make room (see limitedListener.Accept).
func limitReclaiming(ln net.Listener, n int, r reclaimer) net.Listener {
	l := limitListener(ln, n).(*limitedListener)
	l.reclaim = r
	return l
}
