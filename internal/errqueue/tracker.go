package errqueue

import (
	"errors"
	"fmt"
)

// MaxOutstanding bounds the calls a Tracker can tell apart: the calls made
// and not yet notified, and, until every call made has been notified once,
// all the calls made. CanSend reports whether one more call stays within it.
const MaxOutstanding = 1 << 31

// ErrUnexpected is matched by the error of Tracker.Notify for a range that
// cannot belong to the send: more calls than it has outstanding, calls
// notified already, or calls out of its range of counter values. Another user
// of MSG_ZEROCOPY on the same socket produces them.
var ErrUnexpected = errors.New("errqueue: notification for calls this send did not make")

// Tracker counts the zero-copy send calls of one send that the kernel has
// not released yet. The zero value is ready to use.
//
// It needs no absolute counter value. The calls of a send take consecutive
// values of the socket's counter: a call that fails takes none (the kernel
// takes its value back, msg_zerocopy_put_abort), a call that sends part of its
// bytes takes one. If no notification of the socket is pending when the send
// starts, because every earlier send waited for all of its own, then every
// notification that arrives covers calls of this send only, each once. So the
// send is released exactly when the sizes of the ranges, hi-lo+1 in 32-bit
// arithmetic, add up to its number of calls.
//
// Tracker also checks that: a range larger than the calls outstanding, one
// that overlaps a range counted already, or (once the first value is known)
// one outside the values the send's calls took, is refused with an error
// matching ErrUnexpected and not counted. The first value becomes known the
// first time every call made has been notified: the ranges then join into one
// that starts there.
type Tracker struct {
	sent     uint64
	notified uint64
	known    bool   // next is exact
	next     uint32 // when known: every call before next is notified
	ahead    uint64 // when known: calls in spans (notified after next)
	spans    []span // notified and not before next; disjoint
	scratch  []span
}

// span is the n calls from lo on; n is 1 to 2^32.
type span struct {
	lo uint32
	n  uint64
}

func (s span) overlaps(lo uint32, n uint64) bool {
	return uint64(lo-s.lo) < s.n || uint64(s.lo-lo) < n
}

// Sent records one successful send(2) with MSG_ZEROCOPY: it returned a
// count, not an error.
func (t *Tracker) Sent() { t.sent++ }

// CanSend reports whether one more call stays within MaxOutstanding.
func (t *Tracker) CanSend() bool {
	if t.known {
		return t.sent-t.notified < MaxOutstanding
	}
	return t.sent < MaxOutstanding
}

// Pending is the number of calls made and not notified yet.
func (t *Tracker) Pending() uint64 { return t.sent - t.notified }

// Calls is the number of calls made.
func (t *Tracker) Calls() uint64 { return t.sent }

// Notify counts the calls of n and returns how many there were. A range
// that cannot belong to the send counts nothing and gives an error matching
// ErrUnexpected.
func (t *Tracker) Notify(n Notification) (uint64, error) {
	c := n.Calls()
	if c > t.Pending() {
		return 0, fmt.Errorf("%w: [%d, %d] is %d calls, %d outstanding", ErrUnexpected, n.Lo, n.Hi, c, t.Pending())
	}
	if t.known {
		// The calls not joined to next are the values next to
		// next+window-1.
		window := t.sent - (t.notified - t.ahead)
		if uint64(n.Lo-t.next)+c > window {
			return 0, fmt.Errorf("%w: [%d, %d] outside the %d calls from %d", ErrUnexpected, n.Lo, n.Hi, window, t.next)
		}
	}
	for _, s := range t.spans {
		if s.overlaps(n.Lo, c) {
			return 0, fmt.Errorf("%w: [%d, %d] notified twice", ErrUnexpected, n.Lo, n.Hi)
		}
	}
	if t.known {
		t.notified += c
		if n.Lo != t.next {
			t.ahead += c
			t.insert(span{n.Lo, c})
			return c, nil
		}
		t.next += uint32(c) // c < 2^32: it is at most window <= MaxOutstanding
		t.joinNext()
		return c, nil
	}
	if t.notified+c < t.sent {
		t.notified += c
		t.insert(span{n.Lo, c})
		return c, nil
	}
	// The last calls: every range must now join into one, which starts at
	// the first call of the send.
	t.scratch = append(t.scratch[:0], t.spans...)
	t.insert(span{n.Lo, c})
	if len(t.spans) != 1 {
		t.spans, t.scratch = t.scratch, t.spans
		return 0, fmt.Errorf("%w: [%d, %d] completes the count, but the ranges do not join", ErrUnexpected, n.Lo, n.Hi)
	}
	t.notified += c
	t.known = true
	t.next = t.spans[0].lo + uint32(t.spans[0].n) // n = sent < MaxOutstanding
	t.spans = t.spans[:0]
	t.ahead = 0
	return c, nil
}

// insert adds s to the spans, joined with the spans it touches.
func (t *Tracker) insert(s span) {
	for i := 0; i < len(t.spans); {
		o := t.spans[i]
		switch {
		case o.lo+uint32(o.n) == s.lo && o.n+s.n <= 1<<32:
			s = span{o.lo, o.n + s.n}
		case s.lo+uint32(s.n) == o.lo && o.n+s.n <= 1<<32:
			s.n += o.n
		default:
			i++
			continue
		}
		t.spans[i] = t.spans[len(t.spans)-1]
		t.spans = t.spans[:len(t.spans)-1]
	}
	t.spans = append(t.spans, s)
}

// joinNext moves next past the spans that now start at it.
func (t *Tracker) joinNext() {
	for i := 0; i < len(t.spans); {
		if s := t.spans[i]; s.lo == t.next {
			t.next += uint32(s.n)
			t.ahead -= s.n
			t.spans[i] = t.spans[len(t.spans)-1]
			t.spans = t.spans[:len(t.spans)-1]
			i = 0
			continue
		}
		i++
	}
}
