package uring

import "golang.org/x/sys/unix"

// Handler receives the CQEs of one request, in the order the kernel posted
// them; last is set on the CQE after which the request holds nothing (its
// result without IORING_CQE_F_MORE, or the later of its result and its
// notification). HandleCQE runs on the goroutine that drains the completion
// queue, one at a time: the Loop's reaper, or a submitter right after its
// io_uring_enter (see Batch.Submit). It must not block and must not submit
// to the Loop; record the event and hand it on.
type Handler interface {
	HandleCQE(c CQE, last bool)
}

// slot tracks one request from submission to its last CQE.
type slot struct {
	gen       uint32
	h         Handler
	sawResult bool
	more      bool // the result CQE had IORING_CQE_F_MORE
	sawNotif  bool
	// late holds the generations of the last earlier requests in this slot
	// whose result said -ECANCELED without IORING_CQE_F_MORE: zero-copy
	// sends failed because a request they were linked to failed. The
	// kernel posts such a send's notification anyway, after the result (see
	// complete). Freed slots are reused first, so a slot may end several
	// such sends before their notifications come.
	late [lateKept]uint32
}

// lateKept is how many cancelled sends a slot remembers.
const lateKept = 4

// table maps user_data to the handlers of requests in flight. A request is
// done after its result CQE when that CQE lacks IORING_CQE_F_MORE, or after
// both its result and its notification, in whichever order they arrive. A
// CQE whose user_data names no live request is stray and is dropped.
//
// One kind of CQE names a finished request and is expected: when a request
// in a chain fails, the kernel completes the SEND_ZC linked after it with
// -ECANCELED and no IORING_CQE_F_MORE, and then, when it frees that send,
// posts the notification it had allocated for it (seen on 6.18; the send
// never ran, so the notification holds no data). The result without F_MORE
// is what the uapi promises no notification after, so the request is done
// at its result, and the notification that follows is counted as late,
// not stray.
type table struct {
	slots []slot
	free  []uint32
}

func newTable(n int) *table {
	t := &table{slots: make([]slot, n), free: make([]uint32, n)}
	for i := range t.slots {
		t.slots[i].gen = 1
		t.free[i] = uint32(n - 1 - i)
	}
	return t
}

// alloc takes a free slot for h and returns the request's user_data. The
// caller guarantees a free slot (the Loop admits no more than len(slots)).
func (t *table) alloc(h Handler) uint64 {
	idx := t.free[len(t.free)-1]
	t.free = t.free[:len(t.free)-1]
	s := &t.slots[idx]
	s.h = h
	return packUserData(idx, s.gen)
}

// release frees the slot of a request that never reached the kernel.
func (t *table) release(ud uint64) {
	idx, gen := unpackUserData(ud)
	if int(idx) < len(t.slots) && t.slots[idx].gen == gen && t.slots[idx].h != nil {
		t.retire(idx)
	}
}

func (t *table) retire(idx uint32) {
	s := &t.slots[idx]
	gen := s.gen + 1
	if gen == 0 {
		gen = 1
	}
	*s = slot{gen: gen, late: s.late}
	t.free = append(t.free, idx)
}

// complete routes c. It returns the handler to call (nil for a CQE that
// names no live request), whether c finished its request, whose slot is then
// free again, and whether c was the late notification of a send that failed
// with its chain.
func (t *table) complete(c CQE) (h Handler, done, late bool) {
	idx, gen := unpackUserData(c.UserData)
	if int(idx) >= len(t.slots) {
		return nil, false, false
	}
	s := &t.slots[idx]
	if s.gen != gen || s.h == nil {
		if c.Notif() && gen != 0 {
			for i, g := range s.late {
				if g == gen {
					s.late[i] = 0
					return nil, false, true
				}
			}
		}
		return nil, false, false
	}
	h = s.h
	if c.Notif() {
		if s.sawNotif {
			return nil, false, false // a second notification: not ours to deliver
		}
		s.sawNotif = true
	} else {
		s.sawResult = true
		s.more = c.More()
	}
	done = s.sawResult && (!s.more || s.sawNotif)
	if done {
		if !c.Notif() && !s.sawNotif && c.Res == -int32(unix.ECANCELED) {
			copy(s.late[1:], s.late[:lateKept-1])
			s.late[0] = gen
		}
		t.retire(idx)
	}
	return h, done, false
}
