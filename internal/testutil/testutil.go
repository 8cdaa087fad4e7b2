// Package testutil holds what every test package of sendfile2 shares: the one
// helper that skips a test for a missing kernel feature, and the leak check
// that TestMain runs.
package testutil

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/sendfile2/sendfile2/internal/probe"
	"golang.org/x/sys/unix"
)

// KernelVersion is the running kernel's major and minor version.
func KernelVersion() (major, minor int) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return 0, 0
	}
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor)
	return major, minor
}

// KernelAtLeast reports whether the running kernel is version major.minor or newer.
func KernelAtLeast(major, minor int) bool {
	ma, mi := KernelVersion()
	return ma > major || ma == major && mi >= minor
}

// RequireFeature is the only way a test may skip for a missing kernel
// feature. When available is false it skips t if the running kernel is older
// than since ("6.0"), the release that brought the feature, and fails t
// otherwise: on a kernel that should have the feature, its absence is a bug
// to see, not a skip to hide. why says what made the feature unavailable.
func RequireFeature(t testing.TB, feature, since string, available bool, why error) {
	t.Helper()
	if available {
		return
	}
	if why := IOURingRefused(); why != "" && isIOURingFeature(feature) {
		t.Skipf("%s: io_uring is refused on purpose in this test process, by %s", feature, why)
	}
	var major, minor int
	if _, err := fmt.Sscanf(since, "%d.%d", &major, &minor); err != nil {
		t.Fatalf("RequireFeature: bad version %q", since)
	}
	if KernelAtLeast(major, minor) {
		t.Fatalf("%s is unavailable on this kernel, which should have it (Linux %s+): %v", feature, since, why)
	}
	t.Skipf("%s needs Linux %s+: %v", feature, since, why)
}

// Main runs the tests of a package, then fails the run if a file descriptor
// or goroutine that existed only during the tests is left behind, or if one of
// the extra checks reports a leak (such as pooled buffers still out).
func Main(m *testing.M, extra ...func() error) {
	// Let the runtime open its own descriptors (netpoller) before the count.
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		l.Close()
	}
	before := openFDs()
	code := m.Run()
	if code == 0 {
		var leaks []string
		// The extra checks come first: they may release what the package
		// keeps for the whole process (a default Sender).
		for _, check := range extra {
			if err := check(); err != nil {
				leaks = append(leaks, err.Error())
			}
		}
		if err := goleak.Find(); err != nil {
			leaks = append(leaks, err.Error())
		}
		after := openFDs()
		for fd, target := range after {
			if _, ok := before[fd]; !ok {
				leaks = append(leaks, fmt.Sprintf("file descriptor %d left open: %s", fd, target))
			}
		}
		if len(leaks) > 0 {
			slices.Sort(leaks)
			fmt.Fprintf(os.Stderr, "leak check failed:\n  %s\n", strings.Join(leaks, "\n  "))
			code = 1
		}
	}
	os.Exit(code)
}

func openFDs() map[int]string {
	fds := map[int]string{}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fds
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		fds[fd] = target
	}
	// The descriptor ReadDir itself used is gone by now but may be listed.
	for fd, target := range fds {
		if strings.HasPrefix(target, "/proc/") && strings.HasSuffix(target, "/fd") {
			delete(fds, fd)
		}
	}
	return fds
}

// refused is why io_uring is refused on purpose in this process, if it is.
var refused string

// IOURingRefused says why io_uring is refused on purpose in this process, or
// "" when it is not.
func IOURingRefused() string { return refused }

func isIOURingFeature(feature string) bool {
	f := strings.ToLower(feature)
	return strings.Contains(f, "io_uring") || strings.Contains(f, "ioring")
}

// RequireSupported is RequireFeature for err, an error of sendfile2 that may
// match ErrNotSupported: it skips or fails t as RequireFeature does for the
// feature and kernel that err names, and does nothing when err is nil or
// says something else.
func RequireSupported(t testing.TB, err error) {
	t.Helper()
	var e *probe.Error
	if errors.As(err, &e) {
		RequireFeature(t, e.Feature, e.Since, false, err)
	}
}

// URingThreadEnv, in a test process's environment, runs the tests on the
// io_uring Loop's thread mode (uring.Config.Thread): "defer", "coop" or
// "plain" name the task-work mode the ring tries first (uring.TaskRun), any
// other value the best.
const URingThreadEnv = "SENDFILE2_TEST_URING_THREAD"

// URingThread reports whether URingThreadEnv is set, and to what.
func URingThread() (taskRun string, ok bool) { return os.LookupEnv(URingThreadEnv) }
