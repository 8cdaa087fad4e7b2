package engine

import (
	"sync"

	"golang.org/x/sys/unix"
)

// maxIdlePipes is the number of empty pipes the Engines keep for the Splice
// receive: two descriptors each, for the Engines' life.
const maxIdlePipes = 4

// pipe is a non-blocking pipe for splice(2): its read and write ends and its
// size.
type pipe struct {
	r, w, size int
}

// pipes keeps empty pipes for the Splice receive, so that a receive makes
// none for each call, and gives its pipe back while it waits for the peer:
// a stalled upload holds no pipe.
type pipes struct {
	mu     sync.Mutex
	idle   []pipe
	closed bool
}

// get returns an empty pipe, kept or new.
func (ps *pipes) get() (pipe, error) {
	ps.mu.Lock()
	if n := len(ps.idle); n > 0 {
		p := ps.idle[n-1]
		ps.idle = ps.idle[:n-1]
		ps.mu.Unlock()
		return p, nil
	}
	ps.mu.Unlock()
	fds, size, err := newPipe()
	if err != nil {
		return pipe{}, err
	}
	return pipe{r: fds[0], w: fds[1], size: size}, nil
}

// put takes back p, which the caller emptied (else it closes it), or closes
// it when enough are kept.
func (ps *pipes) put(p pipe, empty bool) {
	ps.mu.Lock()
	if empty && !ps.closed && len(ps.idle) < maxIdlePipes {
		ps.idle = append(ps.idle, p)
		ps.mu.Unlock()
		return
	}
	ps.mu.Unlock()
	p.close()
}

// close closes the kept pipes; those put back later are closed then.
func (ps *pipes) close() {
	ps.mu.Lock()
	idle := ps.idle
	ps.idle, ps.closed = nil, true
	ps.mu.Unlock()
	for _, p := range idle {
		p.close()
	}
}

func (p pipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}
