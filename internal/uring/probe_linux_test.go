package uring

import (
	"testing"
	"unsafe"
)

// FuzzDecodeProbe: whatever the kernel writes into the probe buffer,
// decodeProbe reads only the first OpsLen entries that fit, and an opcode is
// supported exactly when one of those entries names it with
// IO_URING_OP_SUPPORTED.
func FuzzDecodeProbe(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{60, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 22, 0, 1, 0, 0, 0, 0, 0, 47, 0, 1, 0, 0, 0, 0, 0})
	f.Add([]byte{255, 0, 255, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var p probeBuf
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&p)), unsafe.Sizeof(p)), raw)
		pr := decodeProbe(&p)
		if pr.lastOp != p.LastOp {
			t.Fatalf("lastOp %d, want %d", pr.lastOp, p.LastOp)
		}
		n := min(int(p.OpsLen), len(p.Ops))
		for op := range 256 {
			want := false
			for _, e := range p.Ops[:n] {
				if int(e.Op) == op && e.Flags&ioUringOpSupported != 0 {
					want = true
				}
			}
			if got := pr.Supports(uint8(op)); got != want {
				t.Fatalf("Supports(%d) = %v, want %v (OpsLen %d)", op, got, want, p.OpsLen)
			}
		}
	})
}
