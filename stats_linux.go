package sendfile2

import (
	"sync/atomic"

	"github.com/sendfile2/sendfile2/internal/engine"
)

// methodIndex orders the concrete methods for the counters, with the engine
// that runs each.
var methodIndex = [...]struct {
	m Method
	k engine.Kind
}{{URing, engine.URing}, {URingMmap, engine.URingMmap}, {MsgZC, engine.MsgZC}, {Copy, engine.Copy}, {Sendfile, engine.Sendfile}, {Splice, engine.Splice}}

// kindOf is the engine of the concrete method m.
func kindOf(m Method) engine.Kind {
	for _, x := range methodIndex {
		if x.m == m {
			return x.k
		}
	}
	return 0
}

// methodOf is the method that engine k runs.
func methodOf(k engine.Kind) Method {
	for _, x := range methodIndex {
		if x.k == k {
			return x.m
		}
	}
	return ""
}

type methodCounters struct {
	sends, errors, bytes atomic.Int64
	usage                engine.Usage // zero-copy and copied bytes, from the notifications

	receives, receiveErrors, received atomic.Int64
}

func (s *Sender) counter(m Method) *methodCounters {
	for i, x := range methodIndex {
		if x.m == m {
			return &s.counters[i]
		}
	}
	panic("sendfile2: no counters for method " + string(m))
}

// Stats returns the Sender's counters.
func (s *Sender) Stats() Stats {
	st := Stats{
		Method:    s.Method(),
		Demotions: s.demotions.Load(),
		InFlight:  s.inFlight.Load(),
		Fallbacks: s.fallbacks.Load(),
		Methods:   map[Method]MethodStats{},
		Adaptive: AdaptiveStats{
			Switches:      s.adaptSwitches.Load(),
			CopyingRoutes: s.copyingRoutes(),
			CopiedRoute:   s.adaptedSends.Load(),
			Small:         s.smallSends.Load(),
			Probing:       s.probingSends.Load(),
		},
	}
	for i, x := range methodIndex {
		c := &s.counters[i]
		if c.sends.Load() == 0 && c.receives.Load() == 0 {
			continue
		}
		st.Methods[x.m] = MethodStats{
			Sends:         c.sends.Load(),
			Errors:        c.errors.Load(),
			Bytes:         c.bytes.Load(),
			ZeroCopyBytes: c.usage.ZeroCopy.Load(),
			CopiedBytes:   c.usage.Copied.Load(),
			Receives:      c.receives.Load(),
			ReceiveErrors: c.receiveErrors.Load(),
			Received:      c.received.Load(),
		}
	}
	return st
}
