package epoll

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Poller waits for events on many descriptors through one epoll instance
// that Go's netpoller watches: one descriptor for the Poller, none per wait.
// One goroutine collects the events and hands each to the Watch it belongs
// to. Each Arm registers its descriptor for one event (EPOLLONESHOT,
// level-triggered: an event that already holds is reported at once).
type Poller struct {
	f    *os.File
	rc   syscall.RawConn
	ep   int
	done chan struct{} // closed when the collecting goroutine returns

	mu      sync.Mutex
	watches map[uint64]*Watch
	nextID  uint64
}

// NewPoller creates the epoll instance (epoll_create1(2)) and starts the
// goroutine that collects its events. Close stops it.
func NewPoller() (*Poller, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// Non-blocking, so that os.NewFile registers it with the netpoller.
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(ep)
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(ep), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	p := &Poller{f: f, rc: rc, ep: ep, done: make(chan struct{}), watches: map[uint64]*Watch{}}
	go p.collect()
	return p, nil
}

// collect waits in the netpoller for the epoll instance to have events and
// hands them out, until Close.
func (p *Poller) collect() {
	defer close(p.done)
	var events [64]unix.EpollEvent
	for {
		var werr error
		err := p.rc.Read(func(fd uintptr) bool {
			for {
				n, err := unix.EpollWait(int(fd), events[:], 0)
				switch {
				case err == unix.EINTR:
					continue
				case err != nil:
					werr = err
					return true
				}
				p.deliver(events[:n])
				if n < len(events) {
					return false // wait in the netpoller for more
				}
			}
		})
		if err != nil || werr != nil {
			return // closed
		}
	}
}

// deliver hands each event to its Watch.
func (p *Poller) deliver(events []unix.EpollEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range events {
		if w := p.watches[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]; w != nil {
			select {
			case w.c <- ev.Events:
			default: // an event not taken yet says as much
			}
		}
	}
}

// Close stops the collecting goroutine and closes the epoll instance. Every
// Watch must be closed first.
func (p *Poller) Close() error {
	err := p.f.Close()
	<-p.done
	return err
}

// Watch is the events of one descriptor that one goroutine waits for.
type Watch struct {
	p     *Poller
	fd    int
	id    uint64
	c     chan uint32
	added bool
}

// Watch returns a Watch of fd; nothing is registered until Arm. The caller
// keeps fd open until the Watch's Close.
func (p *Poller) Watch(fd int) *Watch {
	p.mu.Lock()
	p.nextID++
	w := &Watch{p: p, fd: fd, id: p.nextID, c: make(chan uint32, 1)}
	p.watches[w.id] = w
	p.mu.Unlock()
	return w
}

// ErrBusy is the error of Arm when the Poller already watches the same
// descriptor number for another Watch.
var ErrBusy = errors.New("epoll: descriptor already watched")

// Arm asks for the next of events (EPOLLOUT, EPOLLIN...; EPOLLERR and
// EPOLLHUP are always reported) on C, once. An event that holds already is
// reported at once. It wraps epoll_ctl(2).
func (w *Watch) Arm(events uint32) error {
	select {
	case <-w.c: // from an earlier Arm that was not waited for
	default:
	}
	ev := unix.EpollEvent{Events: events | unix.EPOLLONESHOT, Fd: int32(uint32(w.id)), Pad: int32(uint32(w.id >> 32))}
	op := unix.EPOLL_CTL_MOD
	if !w.added {
		op = unix.EPOLL_CTL_ADD
	}
	if err := unix.EpollCtl(w.p.ep, op, w.fd, &ev); err != nil {
		if err == unix.EEXIST {
			return ErrBusy
		}
		return os.NewSyscallError("epoll_ctl", err)
	}
	w.added = true
	return nil
}

// C delivers the events of each Arm.
func (w *Watch) C() <-chan uint32 { return w.c }

// Wait arms w for events and blocks until one is ready or ctx ends. The
// goroutine parks meanwhile.
func (w *Watch) Wait(ctx context.Context, events uint32) (uint32, error) {
	if err := ctx.Err(); err != nil {
		return 0, context.Cause(ctx)
	}
	if err := w.Arm(events); err != nil {
		return 0, err
	}
	select {
	case ev := <-w.c:
		return ev, nil
	case <-ctx.Done():
		return 0, context.Cause(ctx)
	}
}

// Close removes fd from the Poller (epoll_ctl(2) with EPOLL_CTL_DEL).
func (w *Watch) Close() {
	if w.added {
		unix.EpollCtl(w.p.ep, unix.EPOLL_CTL_DEL, w.fd, nil)
		w.added = false
	}
	w.p.mu.Lock()
	delete(w.p.watches, w.id)
	w.p.mu.Unlock()
}
