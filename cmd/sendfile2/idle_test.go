package main

import (
	"testing"
	"time"
)

// TestIdleList: conns come out of the idle list longest idle first, a conn
// removed from any place leaves the rest in order, and one pushed twice is
// listed once, with the time it first turned idle.
func TestIdleList(t *testing.T) {
	var il idleList
	cs := make([]*trackedConn, 5)
	t0 := time.Unix(1000, 0)
	for i := range cs {
		cs[i] = &trackedConn{}
		il.push(cs[i], t0.Add(time.Duration(i)*time.Second))
	}
	il.push(cs[0], t0.Add(time.Hour)) // already idle: no change
	il.remove(cs[2])                  // the middle
	il.remove(cs[4])                  // the back
	il.remove(cs[4])                  // not listed: no change
	il.push(cs[2], t0.Add(10*time.Second))
	want := []struct {
		c     *trackedConn
		since time.Time
	}{{cs[0], t0}, {cs[1], t0.Add(time.Second)}, {cs[3], t0.Add(3 * time.Second)}, {cs[2], t0.Add(10 * time.Second)}}
	for i, w := range want {
		c, since := il.oldest()
		if c != w.c || !since.Equal(w.since) {
			t.Fatalf("oldest #%d: conn %p since %v, want %p since %v", i, c, since, w.c, w.since)
		}
		if c.idle.listed {
			t.Fatalf("oldest #%d still listed", i)
		}
	}
	if c, _ := il.oldest(); c != nil || il.front != nil || il.back != nil {
		t.Fatalf("empty list: oldest %p, front %p, back %p", c, il.front, il.back)
	}
}
