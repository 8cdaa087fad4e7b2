package main

import (
	"net"
	"time"
)

// idleList holds the idle keep-alive conns, the longest idle first: a list
// through the conns themselves (idle), so that a conn turning idle at the
// end of each request allocates nothing.
type idleList struct{ front, back *trackedConn }

// idleLink is a conn's place in the idleList; listed says it is in it.
type idleLink struct {
	prev, next *trackedConn
	since      time.Time
	listed     bool
}

func (il *idleList) push(c *trackedConn, now time.Time) {
	if c.idle.listed {
		return
	}
	c.idle = idleLink{prev: il.back, since: now, listed: true}
	if il.back != nil {
		il.back.idle.next = c
	} else {
		il.front = c
	}
	il.back = c
}

func (il *idleList) remove(c *trackedConn) {
	if !c.idle.listed {
		return
	}
	if c.idle.prev != nil {
		c.idle.prev.idle.next = c.idle.next
	} else {
		il.front = c.idle.next
	}
	if c.idle.next != nil {
		c.idle.next.idle.prev = c.idle.prev
	} else {
		il.back = c.idle.prev
	}
	c.idle = idleLink{}
}

// oldest removes the conn idle the longest from the list and returns it,
// with when it turned idle; nil if none is idle.
func (il *idleList) oldest() (*trackedConn, time.Time) {
	c := il.front
	if c == nil {
		return nil, time.Time{}
	}
	since := c.idle.since
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
