package uring

import (
	"encoding/binary"
	"testing"
)

type countingHandler struct{ calls int }

func (h *countingHandler) HandleCQE(CQE, bool) { h.calls++ }

func TestUserDataRoundTrip(t *testing.T) {
	for _, c := range []struct{ slot, gen uint32 }{{0, 1}, {5, 7}, {1<<32 - 1, 1<<32 - 1}} {
		s, g := unpackUserData(packUserData(c.slot, c.gen))
		if s != c.slot || g != c.gen {
			t.Errorf("round trip of (%d, %d) = (%d, %d)", c.slot, c.gen, s, g)
		}
	}
}

func TestTableCompletion(t *testing.T) {
	tests := []struct {
		name  string
		cqes  []CQE // user_data filled in
		calls int
		done  []bool
	}{
		{"plain result", []CQE{{Res: 5}}, 1, []bool{true}},
		{"result then notification", []CQE{{Res: 5, Flags: CQEFMore}, {Flags: CQEFNotif}}, 2, []bool{false, true}},
		{"notification first", []CQE{{Flags: CQEFNotif}, {Res: 5, Flags: CQEFMore}}, 2, []bool{false, true}},
		{"failed send with notification", []CQE{{Res: -11, Flags: CQEFMore}, {Flags: CQEFNotif}}, 2, []bool{false, true}},
		{"second notification dropped", []CQE{{Flags: CQEFNotif}, {Flags: CQEFNotif}, {Res: 1, Flags: CQEFMore}}, 2, []bool{false, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTable(4)
			h := &countingHandler{}
			ud := tb.alloc(h)
			for i, c := range tt.cqes {
				c.UserData = ud
				got, done, _ := tb.complete(c)
				if got != nil {
					got.HandleCQE(c, done)
				}
				if done != tt.done[i] {
					t.Errorf("CQE %d: done = %v, want %v", i, done, tt.done[i])
				}
			}
			if h.calls != tt.calls {
				t.Errorf("handler called %d times, want %d", h.calls, tt.calls)
			}
			if tb.live() != 0 {
				t.Errorf("%d slots still live", tb.live())
			}
			// The slot's old user_data is stale now.
			if got, _, _ := tb.complete(CQE{UserData: ud}); got != nil {
				t.Error("a CQE with stale user_data was delivered")
			}
		})
	}
}

// TestTableLateNotification: a SEND_ZC that failed with its chain ends at
// its result (-ECANCELED, no F_MORE); the notification the kernel posts after
// it is recognised as late, once, and is delivered to nobody, also when the
// slot already serves a new request.
func TestTableLateNotification(t *testing.T) {
	tb := newTable(1)
	old := &countingHandler{}
	ud := tb.alloc(old)
	if h, done, _ := tb.complete(CQE{UserData: ud, Res: -125}); h != old || !done {
		t.Fatalf("cancelled link: handler %v, done %v; want its handler, done", h, done)
	}
	next := &countingHandler{}
	nud := tb.alloc(next) // the same slot, a new generation
	if h, done, late := tb.complete(CQE{UserData: ud, Flags: CQEFNotif, Res: -1 << 31}); h != nil || done || !late {
		t.Fatalf("late notification: handler %v, done %v, late %v; want nil, false, true", h, done, late)
	}
	if _, _, late := tb.complete(CQE{UserData: ud, Flags: CQEFNotif}); late {
		t.Error("a second notification for the same send counted as late")
	}
	if h, done, _ := tb.complete(CQE{UserData: nud, Res: 3}); h != next || !done {
		t.Fatalf("the slot's new request: handler %v, done %v", h, done)
	}
	// Two cancelled sends in a row in the same slot, their notifications
	// after both: each is late, once.
	first := tb.alloc(old)
	tb.complete(CQE{UserData: first, Res: -125})
	second := tb.alloc(old)
	tb.complete(CQE{UserData: second, Res: -125})
	for _, u := range []uint64{first, second} {
		if _, _, late := tb.complete(CQE{UserData: u, Flags: CQEFNotif}); !late {
			t.Errorf("notification of cancelled send %#x not counted as late", u)
		}
	}
	// A result without F_MORE that is not -ECANCELED expects nothing after it.
	ud = tb.alloc(old)
	tb.complete(CQE{UserData: ud, Res: -32})
	if _, _, late := tb.complete(CQE{UserData: ud, Flags: CQEFNotif}); late {
		t.Error("a notification after -EPIPE without F_MORE counted as late")
	}
}

// FuzzTable feeds arbitrary CQEs, as the kernel might post them or as memory
// corruption might, to the table that routes them. It must never panic,
// never deliver a CQE to a finished request, and account for every slot.
func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0})
	f.Add([]byte{1, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		const n = 8
		tb := newTable(n)
		hs := make([]*countingHandler, n)
		uds := make([]uint64, n)
		finished := make([]bool, n)
		for i := range hs {
			hs[i] = &countingHandler{}
			uds[i] = tb.alloc(hs[i])
		}
		for len(data) >= 12 {
			sel := binary.LittleEndian.Uint32(data)
			flags := binary.LittleEndian.Uint32(data[4:])
			res := int32(binary.LittleEndian.Uint32(data[8:]))
			data = data[12:]
			ud := uint64(sel)<<29 ^ uint64(sel) // arbitrary user_data
			if sel%2 == 0 {
				ud = uds[(sel/2)%n] // a live or finished request's
			}
			h, done, late := tb.complete(CQE{UserData: ud, Res: res, Flags: flags})
			if h == nil {
				if done {
					t.Fatal("done without a handler")
				}
				if late && flags&CQEFNotif == 0 {
					t.Fatal("a CQE that is not a notification counted as late")
				}
				continue
			}
			i := -1
			for j := range hs {
				if hs[j] == h {
					i = j
				}
			}
			if i < 0 || uds[i] != ud {
				t.Fatalf("CQE for %#x delivered to the wrong request", ud)
			}
			if finished[i] {
				t.Fatalf("CQE delivered to request %d after its last one", i)
			}
			finished[i] = done
		}
		live := 0
		for _, f := range finished {
			if !f {
				live++
			}
		}
		if tb.live() != live {
			t.Fatalf("table has %d live slots, want %d", tb.live(), live)
		}
	})
}

// live is the number of requests in flight.
func (t *table) live() int { return len(t.slots) - len(t.free) }
