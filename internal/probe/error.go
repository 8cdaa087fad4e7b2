package probe

import "errors"

// ErrNotSupported is matched by every answer "not here": another OS, a
// kernel without a feature, a feature refused by a sysctl or a seccomp
// filter. sendfile2.ErrNotSupported is this error.
var ErrNotSupported = errors.New("not supported")

// Error is the answer "not here" for one feature: it matches
// ErrNotSupported, names the feature and the kernel that brought it, says
// why it is missing here, and wraps the error that showed it.
type Error struct {
	Feature string // "io_uring", "IORING_OP_SEND_ZC", "MSG_ZEROCOPY"...
	Since   string // the kernel release that brought it, such as "6.0"
	Reason  string // why it is missing here, and the fix when there is one
	Err     error  // the error that showed it, if any
}

func (e *Error) Error() string {
	s := e.Feature + " (Linux " + e.Since + "+) not supported"
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is makes an Error match ErrNotSupported.
func (e *Error) Is(target error) bool { return target == ErrNotSupported }

func (e *Error) Unwrap() error { return e.Err }
