package engine

import (
	"testing"

	"github.com/sendfile2/sendfile2/internal/testutil"
	"github.com/sendfile2/sendfile2/internal/uring"
)

// TestBufPoolLendsLastGivenBack: the pool lends the buffer given back last,
// so that a send keeping a few buffers in flight cycles through the same few
// (still in the CPU's caches) rather than through the whole pool; and it
// counts what it holds for allows.
func TestBufPoolLendsLastGivenBack(t *testing.T) {
	loop, err := uring.NewLoop(uring.Config{})
	testutil.RequireFeature(t, "io_uring", "5.6", err == nil, err)
	defer loop.Close()
	const n = 16
	p, err := newBufPool(loop, n, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer p.release()
	defer loop.UnregisterBuffers()

	var got []uint16
	for range 3 {
		i, ok := p.tryGet()
		if !ok {
			t.Fatal("a full pool lent nothing")
		}
		got = append(got, i)
	}
	if p.out.Load() != 3 || p.nfree.Load() != n-3 {
		t.Fatalf("out %d, free %d after 3 lent of %d", p.out.Load(), p.nfree.Load(), n)
	}
	p.put(got[1])
	p.put(got[0])
	for _, want := range []uint16{got[0], got[1]} {
		if i, _ := p.tryGet(); i != want {
			t.Fatalf("lent buffer %d, want %d (the one given back last)", i, want)
		}
	}
	for p.nfree.Load() > 0 {
		if _, ok := p.tryGet(); !ok {
			t.Fatal("the pool counts a buffer it does not hold")
		}
	}
	if _, ok := p.tryGet(); ok {
		t.Fatal("an empty pool lent a buffer")
	}
	if p.out.Load() != n {
		t.Fatalf("out %d, want %d", p.out.Load(), n)
	}
	for i := range uint16(n) {
		p.put(i)
	}
}
