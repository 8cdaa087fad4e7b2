//go:build !linux

package sendfile2

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"syscall"
)

// Sender sends file ranges to sockets. It needs Linux; elsewhere every
// operation fails with an error matching ErrNotSupported.
type Sender struct{}

func errOS() error { return fmt.Errorf("sendfile2: %s: %w", runtime.GOOS, ErrNotSupported) }

// NewSender fails with ErrNotSupported outside Linux.
func NewSender(Config) (*Sender, error) { return nil, errOS() }

// Method is empty outside Linux.
func (s *Sender) Method() Method { return "" }

// Stats is empty outside Linux.
func (s *Sender) Stats() Stats { return Stats{} }

// Send fails with ErrNotSupported outside Linux.
func (s *Sender) Send(context.Context, syscall.Conn, *os.File, int64, int64) (int64, error) {
	return 0, errOS()
}

// SendWithHeader fails with ErrNotSupported outside Linux.
func (s *Sender) SendWithHeader(context.Context, syscall.Conn, []byte, *os.File, int64, int64) (int64, error) {
	return 0, errOS()
}

// SendFrom fails with ErrNotSupported outside Linux.
func (s *Sender) SendFrom(context.Context, syscall.Conn, syscall.Conn, int64, int64) (int64, error) {
	return 0, errOS()
}

// Close does nothing outside Linux.
func (s *Sender) Close() error { return nil }

// Shutdown does nothing outside Linux.
func (s *Sender) Shutdown(context.Context) error { return nil }

// Send fails with ErrNotSupported outside Linux.
func Send(context.Context, syscall.Conn, *os.File, int64, int64) (int64, error) { return 0, errOS() }
