//go:build !linux

package check

import (
	"context"
	"errors"
	"fmt"
)

// Run needs Linux; here it returns an Outcome whose Err matches
// errors.ErrUnsupported.
func Run(ctx context.Context, send SendFunc, opts Options) Outcome {
	return Outcome{Err: fmt.Errorf("check: %w", errors.ErrUnsupported)}
}
