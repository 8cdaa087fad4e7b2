package sendfile2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/engine"
	"github.com/sendfile2/sendfile2/internal/probe"
)

// Sender sends file ranges to sockets. One Sender serves many goroutines and
// connections at once: they share its io_uring ring and its registered
// buffers. Create one per program (or use the package-level Send) and Close
// it when done.
type Sender struct {
	cfg    Config
	method Method
	eng    *engine.Engines

	ctx     context.Context // cancelled by Close
	cancel  context.CancelCauseFunc
	closing atomic.Bool // set by Close before it cancels ctx

	mu       sync.Mutex
	closed   bool
	sends    sync.WaitGroup
	released chan struct{} // closed once the engines are released, after Close or Shutdown
	closeErr error         // of the engines' Close, set before released closes

	demotions atomic.Int64
	inFlight  atomic.Int64
	fallbacks atomic.Int64

	routes   routes    // Auto's adaptivity
	checked  sync.Pool // of *checkedSend
	counters counters
	bypassed bypassCounts
}

// NewSender returns a Sender configured by cfg. With Method Auto it picks
// URing where the kernel has io_uring with IORING_OP_SEND_ZC and
// IORING_OP_READ_FIXED (and the registered buffers can be pinned), else
// MsgZC where TCP sockets take SO_ZEROCOPY, else Copy. An explicit method
// the kernel lacks gives an error matching ErrNotSupported.
func NewSender(cfg Config) (*Sender, error) {
	return newSender(cfg, engine.DefaultTuning())
}

// newSender is NewSender with the engines' thresholds.
func newSender(cfg Config, tune engine.Tuning) (*Sender, error) {
	if cfg.Method == "" {
		cfg.Method = Auto
	}
	if _, err := ParseMethod(string(cfg.Method)); err != nil {
		return nil, err
	}
	if cfg.BufferSize == 0 {
		cfg.BufferSize = defaultBufferSize
	}
	if cfg.Buffers == 0 {
		cfg.Buffers = defaultBuffers
	}
	if cfg.BufferSize < 4096 || cfg.BufferSize > 1<<30 || cfg.BufferSize%4096 != 0 {
		return nil, fmt.Errorf("sendfile2: buffer size %d: want a multiple of 4096 from 4 KiB to 1 GiB", cfg.BufferSize)
	}
	if cfg.Buffers < 1 || cfg.Buffers > 4096 {
		return nil, fmt.Errorf("sendfile2: %d buffers: want 1 to 4096", cfg.Buffers)
	}
	s := &Sender{cfg: cfg, method: cfg.Method, released: make(chan struct{})}
	s.checked.New = newCheckedSend
	ecfg := engine.Config{BufferSize: cfg.BufferSize, Buffers: cfg.Buffers, DontCache: cfg.DontCache, Sync: cfg.Sync, Tuning: tune}
	if obs := cfg.Observer; obs != nil {
		ecfg.Notified = func(k engine.Kind, latency time.Duration, copied bool) { obs.Notified(methodOf(k), latency, copied) }
	}
	s.eng = engine.New(ecfg)
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	var err error
	switch cfg.Method {
	case Auto:
		// The best safe method the kernel offers: io_uring, else
		// MSG_ZEROCOPY, else copying. Each probe is the real operation.
		if s.eng.SetupURing(true) == nil {
			s.method = URing
		} else if probe.MsgZerocopy() == nil {
			s.method = MsgZC
		} else {
			s.method = Copy
		}
	case URing:
		err = s.eng.SetupURing(true)
	case URingMmap:
		err = s.eng.SetupURing(false)
	case MsgZC:
		err = probe.MsgZerocopy()
	}
	if err != nil {
		s.eng.Close()
		return nil, fmt.Errorf("sendfile2: %s: %w", cfg.Method, err)
	}
	return s, nil
}

// Method is the method the Sender uses: its configured one, or what Auto
// resolved to.
func (s *Sender) Method() Method {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.method
}

// demote replaces Auto's method m, which failed with err before sending
// anything for a reason that says "not here" (EPERM or ENOSYS: io_uring or
// MSG_ZEROCOPY refused by a seccomp filter or a sysctl after the Sender was
// made), with the next one in Auto's order, once. It reports the method to
// retry with.
func (s *Sender) demote(m Method, err error) (Method, bool) {
	if s.cfg.Method != Auto || !(errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS)) {
		return m, false
	}
	next := Copy
	if m == URing && probe.MsgZerocopy() == nil {
		next = MsgZC
	}
	if m == Copy || m == next {
		return m, false
	}
	s.mu.Lock()
	if s.method == m {
		s.method = next
		s.demotions.Add(1)
		s.logger().Warn("sendfile2: method demoted", "from", m, "to", next, "err", err)
	}
	next = s.method
	s.mu.Unlock()
	return next, true
}

func (s *Sender) logger() *slog.Logger {
	if s.cfg.Logger != nil {
		return s.cfg.Logger
	}
	return slog.Default()
}

// Stats returns the Sender's counters.
func (s *Sender) Stats() Stats {
	return Stats{
		Method:    s.Method(),
		Demotions: s.demotions.Load(),
		InFlight:  s.inFlight.Load(),
		Fallbacks: s.fallbacks.Load(),
		PoolShort: s.eng.PoolShort(),
		Methods:   s.counters.stats(),
		Adaptive:  s.routes.stats(),
		Bypassed:  s.bypassed.stats(),
	}
}

// bypass counts a file body that went around the Sender for reason.
func (s *Sender) bypass(reason Bypass) { s.bypassed.add(reason) }

// Close stops the Sender: new sends fail with ErrClosed, sends in flight are
// cancelled and return an error matching ErrClosed, and Close returns when
// every notification of every zero-copy send has arrived and the ring and
// buffers are released. A send whose peer never acknowledges its data keeps
// Close waiting until the connection dies; Shutdown bounds that wait.
func (s *Sender) Close() error { return s.Shutdown(context.Background()) }

// Shutdown is Close bounded by ctx. It stops new sends and receives (they
// fail with ErrClosed) and cancels those in flight, as Close does, then waits
// until they have returned and every notification of their zero-copy sends
// has arrived, and releases the ring, the registered buffers and the kept
// file mappings. If ctx ends first, Shutdown returns ctx.Err() at once and
// releases nothing the kernel may still reference: the registered buffers
// and mappings with notifications still due stay allocated, and the ring
// open, until the last of them arrives (when the peer acknowledges the data
// or its connection dies); a goroutine then releases them. Without that
// notification, they stay until the process exits. The Sender stays closed
// either way; a later Close or Shutdown waits for the same release and
// returns its error.
func (s *Sender) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.closed
	s.closed = true
	s.mu.Unlock()
	if first {
		s.closing.Store(true)
		s.cancel(ErrClosed)
		release := func() {
			s.sends.Wait()
			s.closeErr = s.eng.Close() // waits for the notifications of cancelled sends
			close(s.released)
		}
		if ctx.Done() == nil {
			release() // nothing to bound: no goroutine
		} else {
			go release()
		}
	}
	select {
	case <-s.released:
		return s.closeErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

var (
	defaultMu     sync.Mutex
	defaultSender *Sender
)

// shared returns the Sender shared by the whole program, made with the
// default Config on first use.
func shared() (*Sender, error) {
	defaultMu.Lock()
	defer defaultMu.Unlock()
	if defaultSender == nil {
		s, err := NewSender(Config{})
		if err != nil {
			return nil, err
		}
		defaultSender = s
	}
	return defaultSender, nil
}
