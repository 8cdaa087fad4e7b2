package main

import (
	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/testutil"
)

// refuseIOURing installs seccomp filters that fail the three io_uring
// system calls with EPERM: Docker's default profile leaves them out of its
// allow-list, whose default action is EPERM.
func refuseIOURing() error {
	if err := testutil.RefuseIOURing(unix.EPERM); err != nil {
		return err
	}
	for _, nr := range []uintptr{unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER} {
		if err := testutil.RefuseSyscall(nr, unix.EPERM); err != nil {
			return err
		}
	}
	return nil
}
