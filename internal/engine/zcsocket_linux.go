package engine

import (
	"context"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// zcSockets serializes the MsgZC sends on one socket: the notifications of a
// socket go to whichever send reads its error queue, so two sends at once
// could not tell theirs apart. Keyed by the socket's inode number.
var zcSockets = struct {
	sync.Mutex
	m map[uint64]*zcSocket
}{m: map[uint64]*zcSocket{}}

type zcSocket struct {
	sem  chan struct{}
	refs int
}

func lockZCSocket(ctx context.Context, fd int) (func(), error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, os.NewSyscallError("fstat", err)
	}
	zcSockets.Lock()
	s := zcSockets.m[st.Ino]
	if s == nil {
		s = &zcSocket{sem: make(chan struct{}, 1)}
		zcSockets.m[st.Ino] = s
	}
	s.refs++
	zcSockets.Unlock()
	unref := func() {
		zcSockets.Lock()
		if s.refs--; s.refs == 0 {
			delete(zcSockets.m, st.Ino)
		}
		zcSockets.Unlock()
	}
	select {
	case s.sem <- struct{}{}:
		return func() { <-s.sem; unref() }, nil
	case <-ctx.Done():
		unref()
		return nil, context.Cause(ctx)
	}
}
