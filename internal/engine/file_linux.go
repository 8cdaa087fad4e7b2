package engine

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// shrunk turns an error from a read or send of the file into
// io.ErrUnexpectedEOF when the file no longer holds the range.
func shrunk(fd int, end int64, err error) error {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil && st.Size < end {
		return fmt.Errorf("file shrank to %d bytes during the send: %w", st.Size, io.ErrUnexpectedEOF)
	}
	return err
}

// CheckWritable checks that fd is a regular file open for writing at an
// offset: not read-only, not O_APPEND (where pwrite(2) and io_uring writes
// ignore the offset and append).
func CheckWritable(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("dst: %w", os.NewSyscallError("fstat", err))
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		return fmt.Errorf("dst is a directory: %w", unix.EISDIR)
	default:
		return fmt.Errorf("dst is not a regular file (mode %#o): %w", st.Mode&unix.S_IFMT, unix.ESPIPE)
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return fmt.Errorf("dst: %w", os.NewSyscallError("fcntl", err))
	}
	if fl&unix.O_PATH != 0 || fl&unix.O_ACCMODE == unix.O_RDONLY {
		return fmt.Errorf("dst is not open for writing: %w", unix.EBADF)
	}
	if fl&unix.O_APPEND != 0 {
		return fmt.Errorf("dst is open with O_APPEND, which ignores the offset: %w", unix.EINVAL)
	}
	return nil
}

// fdatasync wraps fdatasync(2).
func fdatasync(fd int) error {
	for {
		err := unix.Fdatasync(fd)
		if err != unix.EINTR {
			if err != nil {
				return os.NewSyscallError("fdatasync", err)
			}
			return nil
		}
	}
}

// pwriteAll writes p at off with pwrite(2).
func pwriteAll(fd int, p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pwrite(fd, p[done:], off+int64(done))
		switch {
		case err == unix.EINTR:
		case err != nil:
			return done, os.NewSyscallError("pwrite", err)
		case n == 0:
			return done, fmt.Errorf("pwrite: %w", io.ErrShortWrite)
		default:
			done += n
		}
	}
	return done, nil
}
