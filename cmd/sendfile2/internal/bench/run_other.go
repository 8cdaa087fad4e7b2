//go:build !linux

package bench

import (
	"context"
	"fmt"
	"runtime"

	"github.com/sendfile2/sendfile2"
)

// Run fails outside Linux: the methods it measures are Linux's.
func Run(context.Context, Config) (*Report, error) {
	return nil, fmt.Errorf("bench: %s: %w", runtime.GOOS, sendfile2.ErrNotSupported)
}

// ServeIfReceiver does nothing outside Linux.
func ServeIfReceiver() {}
