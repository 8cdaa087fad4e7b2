package main

import (
	"fmt"
	"io/fs"
	"testing"
	"time"
)

// fakeInfo is a fs.FileInfo with a modification time and a size.
type fakeInfo struct {
	fs.FileInfo
	mtime time.Time
	size  int64
}

func (f fakeInfo) ModTime() time.Time { return f.mtime }
func (f fakeInfo) Size() int64        { return f.size }

// TestETag: the entity tag is the modification time in nanoseconds and the
// size, in hex, quoted, as it always was (clients keep them across
// restarts), also for times before 1970.
func TestETag(t *testing.T) {
	for _, fi := range []fakeInfo{
		{mtime: time.Unix(0, 0), size: 0},
		{mtime: time.Unix(1_700_000_000, 123456789), size: 16384},
		{mtime: time.Unix(-5, 0), size: 1},
		{mtime: time.Unix(1<<33, 1), size: 1<<62 + 7},
	} {
		want := fmt.Sprintf(`"%x-%x"`, fi.mtime.UnixNano(), fi.size)
		if got := etag(fi); got != want {
			t.Errorf("etag(%v, %d) = %s, want %s", fi.mtime, fi.size, got, want)
		}
	}
}
