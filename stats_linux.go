package sendfile2

import (
	"sync/atomic"

	"github.com/sendfile2/sendfile2/internal/engine"
)

// counters are a Sender's counters of each method, in the order of
// methodIndex.
type counters [len(methodIndex)]methodCounters

type methodCounters struct {
	sends, errors, bytes atomic.Int64
	usage                engine.Usage // zero-copy and copied bytes, from the notifications

	receives, receiveErrors, received atomic.Int64
}

// of returns the counters of the concrete method m.
func (c *counters) of(m Method) *methodCounters {
	for i, x := range methodIndex {
		if x.m == m {
			return &c[i]
		}
	}
	panic("sendfile2: no counters for method " + string(m))
}

// stats returns the counters of every method that has run (a probe of
// Auto counts bytes under a method that may have ended no send).
func (c *counters) stats() map[Method]MethodStats {
	st := map[Method]MethodStats{}
	for i, x := range methodIndex {
		mc := &c[i]
		if mc.sends.Load() == 0 && mc.bytes.Load() == 0 && mc.receives.Load() == 0 {
			continue
		}
		st[x.m] = MethodStats{
			Sends:         mc.sends.Load(),
			Errors:        mc.errors.Load(),
			Bytes:         mc.bytes.Load(),
			ZeroCopyBytes: mc.usage.ZeroCopy.Load(),
			CopiedBytes:   mc.usage.Copied.Load(),
			Receives:      mc.receives.Load(),
			ReceiveErrors: mc.receiveErrors.Load(),
			Received:      mc.received.Load(),
		}
	}
	return st
}

// bypassCounts are a Sender's counters of file bodies sent around it, in
// the order of bypasses.
type bypassCounts [len(bypasses)]atomic.Int64

// add counts one body bypassed for reason.
func (b *bypassCounts) add(reason Bypass) {
	for i, x := range bypasses {
		if x == reason {
			b[i].Add(1)
			return
		}
	}
	panic("sendfile2: no counter for bypass " + string(reason))
}

// stats returns the counts that are not zero, or nil.
func (b *bypassCounts) stats() map[Bypass]int64 {
	var st map[Bypass]int64
	for i, x := range bypasses {
		if n := b[i].Load(); n != 0 {
			if st == nil {
				st = map[Bypass]int64{}
			}
			st[x] = n
		}
	}
	return st
}
