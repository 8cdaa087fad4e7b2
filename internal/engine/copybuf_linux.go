package engine

import "sync"

// copyBufSizes are the sizes of the buffers of Copy's pread(2) path and of
// Receive's copy, smallest first, so that a small send holds a small buffer:
// with a thousand connections each sending a 16 KiB body, that is 16 MiB of
// buffers rather than 256 MiB. copyBufs pools each size.
var (
	copyBufSizes = [...]int{16 << 10, 64 << 10, 256 << 10}
	copyBufs     [len(copyBufSizes)]sync.Pool
)

// getCopyBuf returns a buffer for n bytes: the smallest that holds them, or
// the largest. putCopyBuf gives it back.
func getCopyBuf(n int64) *[]byte {
	i := 0
	for i < len(copyBufSizes)-1 && n > int64(copyBufSizes[i]) {
		i++
	}
	if bp, ok := copyBufs[i].Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, copyBufSizes[i])
	return &b
}

func putCopyBuf(bp *[]byte) {
	for i, size := range copyBufSizes {
		if len(*bp) == size {
			copyBufs[i].Put(bp)
			return
		}
	}
}
