package sendfile2

import "github.com/sendfile2/sendfile2/internal/engine"

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
