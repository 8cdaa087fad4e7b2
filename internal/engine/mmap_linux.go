package engine

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// copyWindow bounds how much of a file Copy, its kept mappings and MsgZC
// map at once.
const copyWindow = 64 << 20

// mappings counts the memory mappings the engines hold (registered buffer
// pools, mappings of files being sent or kept), so that a leak shows.
var mappings atomic.Int64

// Mappings is the number of memory mappings the engines of every Sender
// hold now.
func Mappings() int64 { return mappings.Load() }

// mmap wraps mmap(2) and counts the mapping.
func mmap(fd int, off int64, n int, prot, flags int) ([]byte, error) {
	b, err := unix.Mmap(fd, off, n, prot, flags)
	if err == nil {
		mappings.Add(1)
	}
	return b, err
}

// munmap wraps munmap(2).
func munmap(b []byte) {
	if unix.Munmap(b) == nil {
		mappings.Add(-1)
	}
}

// mapFile maps [off, off+n) of the file fd read-only and shared.
func mapFile(fd int, off int64, n int) ([]byte, error) {
	return mmap(fd, off, n, unix.PROT_READ, unix.MAP_SHARED)
}
