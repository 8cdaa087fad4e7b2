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
				got, done := tb.complete(c)
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
			if got, _ := tb.complete(CQE{UserData: ud}); got != nil {
				t.Error("a CQE with stale user_data was delivered")
			}
		})
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
			h, done := tb.complete(CQE{UserData: ud, Res: res, Flags: flags})
			if h == nil {
				if done {
					t.Fatal("done without a handler")
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
