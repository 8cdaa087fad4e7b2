package engine

import (
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/uring"
)

// bufPool is the Sender's set of registered buffers: one anonymous mapping,
// outside the Go heap, cut into equal buffers registered with the ring as
// fixed buffers 0..n-1. A buffer belongs to the pool, to a send that reads
// into it, or to the kernel until the notification of its last zero-copy
// send; only then does it come back.
type bufPool struct {
	mem  []byte
	size int
	n    int
	out  atomic.Int64 // buffers not in the pool

	mu    sync.Mutex
	free  []uint16     // a stack: the buffer given back last is lent first
	nfree atomic.Int64 // len(free), read without mu
}

func newBufPool(loop *uring.Loop, n, size int) (*bufPool, error) {
	mem, err := mmap(-1, 0, n*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, err
	}
	// Keep the buffers out of transparent huge pages (THP "always", the
	// default of Debian's kernels). Measured on Linux 6.12 and 6.18, not on
	// 6.1: zero-copy sends from registered buffers inside a huge page closed
	// a loopback receiver's 4 MiB window after 128 KiB, so a send to a local
	// peer that was not reading yet stalled until it read (TestSafety/uring
	// and `sendfile2 check` failed). Kernels without THP refuse the advice
	// (EINVAL), which changes nothing.
	_ = unix.Madvise(mem, unix.MADV_NOHUGEPAGE)
	p := &bufPool{mem: mem, size: size, n: n, free: make([]uint16, n)}
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = p.buf(uint16(i))
		p.free[i] = uint16(n - 1 - i)
	}
	p.nfree.Store(int64(n))
	if err := loop.RegisterBuffers(bufs); err != nil {
		munmap(mem)
		return nil, err
	}
	return p, nil
}

// share is the most buffers one send or receive may hold at once, those
// waiting for their notification included, while the pool is in demand: a
// quarter of the pool (at most maxDepth, at least one), so that a few peers
// that stall cannot hold the whole pool. A send or receive that finds the
// pool empty takes a path that needs no buffer rather than wait for one.
func (p *bufPool) share() int { return max(1, min(maxDepth, p.n/4)) }

// allows reports whether a send or receive that holds held buffers may take
// one more: up to its share, and, while more than half of the pool is free,
// up to maxDepth (with the default 16 buffers, one connection alone keeps 8
// in flight, as many as before there was a share; a second one finds half
// the pool taken and keeps to its share of 4).
func (p *bufPool) allows(held int64) bool {
	return held < int64(p.share()) || held < int64(min(maxDepth, p.n)) && p.nfree.Load() > int64(p.n/2)
}

func (p *bufPool) buf(i uint16) []byte {
	off := int(i) * p.size
	return p.mem[off : off+p.size : off+p.size]
}

// tryGet takes the buffer given back last, the likeliest to be in the CPU's
// caches still: a send that keeps 8 buffers in flight cycles through the
// same 8, not through the whole pool.
func (p *bufPool) tryGet() (uint16, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := len(p.free)
	if k == 0 {
		return 0, false
	}
	i := p.free[k-1]
	p.free = p.free[:k-1]
	p.nfree.Store(int64(k - 1))
	p.out.Add(1)
	return i, true
}

func (p *bufPool) put(i uint16) {
	p.mu.Lock()
	p.out.Add(-1)
	p.free = append(p.free, i)
	p.nfree.Store(int64(len(p.free)))
	p.mu.Unlock()
}

// release unmaps the buffers. The ring must be closed (which unregisters
// them) and every buffer back.
func (p *bufPool) release() {
	munmap(p.mem)
	p.mem = nil
}
