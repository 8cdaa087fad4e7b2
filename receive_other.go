//go:build !linux

package sendfile2

import (
	"context"
	"os"
	"syscall"
)

// Receive fails with ErrNotSupported outside Linux.
func (s *Sender) Receive(context.Context, syscall.Conn, *os.File, int64, int64) (int64, error) {
	return 0, errOS()
}

// Receive fails with ErrNotSupported outside Linux.
func Receive(context.Context, syscall.Conn, *os.File, int64, int64) (int64, error) { return 0, errOS() }
