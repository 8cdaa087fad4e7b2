//go:build linux

package probe_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/probe"
	"github.com/sendfile2/sendfile2/internal/testutil"
)

// childEnv names the errno that TestSeccompChild makes io_uring_setup fail
// with; the test runs only as a child of TestSeccompRefusal.
const childEnv = "SENDFILE2_PROBE_SECCOMP_ERRNO"

// childMarker starts the line on which the child prints its Features.
const childMarker = "features: "

// TestSeccompRefusal runs the probe in a child process whose seccomp filter
// refuses io_uring_setup, as Docker's default profile does, and checks what
// a user would read.
func TestSeccompRefusal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	for _, errno := range []syscall.Errno{unix.EPERM, unix.ENOSYS} {
		name := unix.ErrnoName(errno)
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestSeccompChild$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", childEnv, int(errno)))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			_, line, found := bytes.Cut(out, []byte(childMarker))
			if !found {
				t.Fatalf("child printed no features:\n%s", out)
			}
			line, _, _ = bytes.Cut(line, []byte("\n"))
			var f probe.Features
			if err := json.Unmarshal(line, &f); err != nil {
				t.Fatalf("child's features %q: %v", line, err)
			}
			t.Logf("io_uring_reason: %s", f.IOURingReason)
			if f.IOURing || f.SendZC || f.SendmsgZC || f.ZCReportUsage || f.ReadFixed {
				t.Errorf("io_uring features reported under a filter that refuses io_uring_setup: %+v", f)
			}
			if !f.Seccomp {
				t.Error("Seccomp = false under a seccomp filter")
			}
			want := "seccomp filter (" + name + ")"
			if !strings.Contains(f.IOURingReason, want) || !strings.Contains(f.IOURingReason, "Docker") {
				t.Errorf("IOURingReason = %q, want it to name the %s and the container profiles", f.IOURingReason, want)
			}
			// The paths without io_uring still work.
			if !f.MsgZerocopy {
				t.Errorf("MsgZerocopy = false under the filter: %s", f.MsgZerocopyReason)
			}
		})
	}
}

// TestSeccompChild installs a seccomp filter on every thread of the process
// that fails io_uring_setup with the errno in childEnv, then prints
// probe.Fresh as JSON.
func TestSeccompChild(t *testing.T) {
	v := os.Getenv(childEnv)
	if v == "" {
		t.Skip("runs only as the child of TestSeccompRefusal")
	}
	var errno uint32
	if _, err := fmt.Sscan(v, &errno); err != nil {
		t.Fatal(err)
	}
	if err := testutil.RefuseIOURing(syscall.Errno(errno)); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(probe.Fresh())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("\n%s%s\n", childMarker, data)
}
