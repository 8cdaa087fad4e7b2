package errqueue_test

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/sendfile2/sendfile2/internal/errqueue"
)

type note = errqueue.Notification

func TestTracker(t *testing.T) {
	tests := []struct {
		name  string
		sent  int    // calls made before the notifications
		notes []note // in arrival order
		bad   []bool // which notifications are refused
		left  uint64 // Pending at the end
	}{
		{"none", 0, nil, nil, 0},
		{"one by one", 3, []note{{Lo: 0, Hi: 0}, {Lo: 1, Hi: 1}, {Lo: 2, Hi: 2}}, nil, 0},
		{"coalesced", 5, []note{{Lo: 10, Hi: 14}}, nil, 0},
		{"out of order", 6, []note{{Lo: 13, Hi: 15}, {Lo: 10, Hi: 12}}, nil, 0},
		{"gap filled last", 6, []note{{Lo: 10, Hi: 10}, {Lo: 14, Hi: 15}, {Lo: 11, Hi: 13}}, nil, 0},
		{"wraps", 4, []note{{Lo: 0xfffffffe, Hi: 1}}, nil, 0},
		{"wraps out of order", 4, []note{{Lo: 0, Hi: 1}, {Lo: 0xfffffffe, Hi: 0xffffffff}}, nil, 0},
		{"partial", 5, []note{{Lo: 3, Hi: 4}}, nil, 3},
		{"overcount", 2, []note{{Lo: 0, Hi: 2}}, []bool{true}, 2},
		{"whole counter", 2, []note{{Lo: 1, Hi: 0}}, []bool{true}, 2},
		{"twice", 4, []note{{Lo: 0, Hi: 1}, {Lo: 1, Hi: 1}}, []bool{false, true}, 2},
		{"same again", 4, []note{{Lo: 5, Hi: 6}, {Lo: 5, Hi: 6}, {Lo: 7, Hi: 8}}, []bool{false, true, false}, 0},
		{"overlap across wrap", 4, []note{{Lo: 0xffffffff, Hi: 0}, {Lo: 0, Hi: 1}}, []bool{false, true}, 2},
		{"do not join", 4, []note{{Lo: 0, Hi: 1}, {Lo: 5, Hi: 6}}, []bool{false, true}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr errqueue.Tracker
			for range tt.sent {
				tr.Sent()
			}
			for i, n := range tt.notes {
				c, err := tr.Notify(n)
				bad := i < len(tt.bad) && tt.bad[i]
				if bad != (err != nil) || err != nil && !errors.Is(err, errqueue.ErrUnexpected) {
					t.Fatalf("Notify(%+v) = %d, %v; want refused: %v", n, c, err, bad)
				}
				if err == nil && c != n.Calls() || err != nil && c != 0 {
					t.Fatalf("Notify(%+v) counted %d", n, c)
				}
			}
			if tr.Pending() != tt.left {
				t.Fatalf("Pending() = %d, want %d", tr.Pending(), tt.left)
			}
		})
	}
}

// TestTrackerKnown: once every call has been notified, the tracker knows
// where the send's calls start and refuses ranges outside those made since.
func TestTrackerKnown(t *testing.T) {
	var tr errqueue.Tracker
	tr.Sent()
	tr.Sent()
	mustNotify(t, &tr, note{Lo: 100, Hi: 101}) // the first value is 100
	for range 4 {
		tr.Sent() // 102 to 105
	}
	for _, n := range []note{{Lo: 101, Hi: 101}, {Lo: 106, Hi: 106}, {Lo: 104, Hi: 106}, {Lo: 0, Hi: 0}} {
		if _, err := tr.Notify(n); !errors.Is(err, errqueue.ErrUnexpected) {
			t.Errorf("Notify(%+v) = %v, want ErrUnexpected", n, err)
		}
	}
	mustNotify(t, &tr, note{Lo: 104, Hi: 105})
	mustNotify(t, &tr, note{Lo: 103, Hi: 103})
	if _, err := tr.Notify(note{Lo: 104, Hi: 104}); err == nil {
		t.Error("a call notified twice was counted")
	}
	mustNotify(t, &tr, note{Lo: 102, Hi: 102})
	if tr.Pending() != 0 {
		t.Fatalf("Pending() = %d", tr.Pending())
	}
	tr.Sent()
	mustNotify(t, &tr, note{Lo: 106, Hi: 106})
	tr.Reset()
	tr.Sent()
	mustNotify(t, &tr, note{Lo: 7, Hi: 7}) // after Reset, any value again
}

func mustNotify(t *testing.T, tr *errqueue.Tracker, n note) {
	t.Helper()
	if c, err := tr.Notify(n); err != nil || c != n.Calls() {
		t.Fatalf("Notify(%+v) = %d, %v", n, c, err)
	}
}

func TestTrackerCanSend(t *testing.T) {
	var tr errqueue.Tracker
	if !tr.CanSend() {
		t.Fatal("a new Tracker cannot send")
	}
	for range 3 {
		tr.Sent()
	}
	mustNotify(t, &tr, note{Lo: 0, Hi: 2})
	if !tr.CanSend() || tr.Calls() != 3 {
		t.Fatalf("CanSend() = %v, Calls() = %d", tr.CanSend(), tr.Calls())
	}
}

// FuzzTracker: the calls of a send, made in rounds, notified as random
// coalesced ranges in random order, possibly among foreign ranges. The
// tracker never panics and never counts more than was sent; without foreign
// ranges it accepts every range, Pending is always the calls not yet covered,
// and nothing is pending once every range has come.
func FuzzTracker(f *testing.F) {
	f.Add(uint32(0), uint64(1), []byte{10, 3}, false)
	f.Add(uint32(0xfffffff0), uint64(7), []byte{200, 3, 9, 1, 50}, false)
	f.Add(uint32(0xfffffff0), uint64(7), []byte{200, 3, 9, 1, 50}, true)
	f.Add(uint32(12345), uint64(99), []byte{}, true)
	f.Fuzz(func(t *testing.T, base uint32, seed uint64, rounds []byte, foreign bool) {
		if len(rounds) > 64 {
			rounds = rounds[:64] // longer inputs only take longer
		}
		rng := rand.New(rand.NewPCG(seed, uint64(base)))
		var tr errqueue.Tracker
		next := base // counter value of the next call
		var pending []note
		var want uint64 // calls not yet notified
		deliver := func(k int) {
			rng.Shuffle(len(pending), func(i, j int) { pending[i], pending[j] = pending[j], pending[i] })
			for _, n := range pending[:k] {
				if foreign && rng.IntN(3) == 0 {
					lo := rng.Uint32()
					if rng.IntN(2) == 0 {
						lo = base + rng.Uint32N(uint32(tr.Calls())+2) // near the send's own values
					}
					tr.Notify(note{Lo: lo, Hi: lo + rng.Uint32N(8)})
				}
				c, err := tr.Notify(n)
				if !foreign && (err != nil || c != n.Calls()) {
					t.Fatalf("Notify(%+v) = %d, %v", n, c, err)
				}
				want -= n.Calls()
				if tr.Pending() > tr.Calls() {
					t.Fatalf("Pending() = %d > Calls() = %d", tr.Pending(), tr.Calls())
				}
				if !foreign && tr.Pending() != want {
					t.Fatalf("Pending() = %d, want %d", tr.Pending(), want)
				}
			}
			pending = pending[k:]
		}
		for _, r := range rounds {
			calls := uint32(r%64) + 1
			for range calls {
				tr.Sent()
			}
			want += uint64(calls)
			for lo, end := next, next+calls; lo != end; {
				n := min(rng.Uint32N(8)+1, end-lo)
				pending = append(pending, note{Lo: lo, Hi: lo + n - 1, Copied: rng.IntN(2) == 0})
				lo += n
			}
			next += calls
			deliver(rng.IntN(len(pending) + 1))
		}
		deliver(len(pending))
		if !foreign && tr.Pending() != 0 {
			t.Fatalf("Pending() = %d after every range", tr.Pending())
		}
	})
}
