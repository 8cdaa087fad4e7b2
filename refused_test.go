package sendfile2_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/internal/check"
	"github.com/sendfile2/sendfile2/internal/probe"
	"github.com/sendfile2/sendfile2/internal/testutil"
)

// childRun is what a child process with io_uring refused runs: the check
// of every method (auto included) and the content tests of msgzc.
const childRun = "^(TestRefusedChild|TestSafety|TestContent)$/^(auto|msgzc|copy)$"

// runRefusedChild runs this test binary again with io_uring refused as
// testutil.RefuseEnv says, and fails t if the child's tests fail.
func runRefusedChild(t *testing.T, how string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run="+childRun, "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), testutil.RefuseEnv+"="+how)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child with io_uring refused (%s): %v\n%s", how, err, out)
	}
	for _, want := range []string{"--- PASS: TestRefusedChild", "--- PASS: TestSafety/auto", "--- PASS: TestSafety/msgzc", "--- PASS: TestContent/msgzc"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q:\n%s", want, out)
		}
	}
}

// TestIOURingRefused runs the safety check and the content tests in a child
// process whose seccomp filter refuses io_uring_setup, as Docker's and
// containerd's default profiles do: Auto must end on msgzc and stay safe, and
// the probe must name the cause.
func TestIOURingRefused(t *testing.T) {
	for _, errno := range []string{"EPERM", "ENOSYS"} {
		t.Run(errno, func(t *testing.T) { runRefusedChild(t, errno) })
	}
}

// TestIOURingDisabledSysctl does the same with kernel.io_uring_disabled=2,
// restored afterwards. It changes a setting of the whole machine, which
// would fail io_uring tests running beside it, so it runs only when asked
// (SENDFILE2_TEST_SYSCTL=1; CI runs it on its own) and as root.
func TestIOURingDisabledSysctl(t *testing.T) {
	if os.Getenv("SENDFILE2_TEST_SYSCTL") != "1" {
		t.Skip("changes kernel.io_uring_disabled for the whole machine: set SENDFILE2_TEST_SYSCTL=1")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to set kernel.io_uring_disabled")
	}
	const path = "/proc/sys/kernel/io_uring_disabled"
	old, err := os.ReadFile(path)
	testutil.RequireFeature(t, "kernel.io_uring_disabled", "6.6", err == nil, err)
	if err := os.WriteFile(path, []byte("2"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(path, old, 0o644); err != nil {
			t.Errorf("restoring %s: %v", path, err)
		}
	})
	runRefusedChild(t, "sysctl")
}

// TestRefusedChild runs only in the child of the tests above.
func TestRefusedChild(t *testing.T) {
	why := testutil.IOURingRefused()
	if why == "" {
		t.Skip("runs only in a process where io_uring is refused on purpose")
	}
	f := probe.Fresh()
	t.Logf("probe: io_uring %v: %s", f.IOURing, f.IOURingReason)
	if f.IOURing {
		t.Fatalf("probe says io_uring works; it is refused by %s", why)
	}
	wantReason := "seccomp"
	if os.Getenv(testutil.RefuseEnv) == "sysctl" {
		wantReason = "io_uring_disabled"
	}
	if !strings.Contains(f.IOURingReason, wantReason) {
		t.Errorf("probe reason %q does not name %s", f.IOURingReason, wantReason)
	}
	s := newSender(t, sendfile2.Config{Method: sendfile2.Auto})
	if s.Method() != sendfile2.MsgZC {
		t.Fatalf("auto resolved to %s with io_uring refused, want msgzc", s.Method())
	}
	// The check on the Auto Sender itself, with big enough sends that the
	// adaptivity does not copy them all from the start.
	out := check.Run(context.Background(), s.Send, check.Options{Dir: t.TempDir()})
	if !out.Safe() {
		t.Fatalf("check of auto (msgzc): %d of %d bytes corrupted, %v", out.CorruptedBytes, out.BytesChecked, out.Err)
	}
	if st := s.Stats(); st.Methods[sendfile2.MsgZC].Sends == 0 {
		t.Errorf("no msgzc sends: %+v", st)
	}
}

// TestDemotion: io_uring refused after the Sender was made (a seccomp filter
// installed later fails io_uring_enter with EPERM). Auto's first send on
// uring fails before sending anything; the Sender demotes itself to msgzc,
// once, says so in Stats, and the send goes through.
func TestDemotion(t *testing.T) {
	s := newSender(t, sendfile2.Config{Method: sendfile2.Auto})
	testutil.RequireFeature(t, "io_uring with SEND_ZC, where Auto starts", "6.0",
		s.Method() == sendfile2.URing, fmt.Errorf("auto resolved to %s", s.Method()))
	cmd := exec.Command(os.Args[0], "-test.run=^TestDemotionChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "SENDFILE2_TEST_DEMOTION=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestDemotionChild") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func TestDemotionChild(t *testing.T) {
	if os.Getenv("SENDFILE2_TEST_DEMOTION") != "1" {
		t.Skip("runs only as the child of TestDemotion")
	}
	s := newSender(t, sendfile2.Config{Method: sendfile2.Auto})
	testutil.RequireFeature(t, "io_uring with SEND_ZC, where Auto starts", "6.0",
		s.Method() == sendfile2.URing, fmt.Errorf("auto resolved to %s", s.Method()))
	if err := testutil.RefuseSyscall(unix.SYS_IO_URING_ENTER, unix.EPERM); err != nil {
		t.Fatal(err)
	}
	f, data := tempFile(t, 1<<20)
	for i := range 2 {
		a, b := tcpPair(t)
		got := receive(b)
		n, err := s.Send(context.Background(), a, f, 0, int64(len(data)))
		a.Close()
		if err != nil || n != int64(len(data)) {
			t.Fatalf("send %d: %d, %v", i, n, err)
		}
		if !bytes.Equal(<-got, data) {
			t.Fatalf("send %d: wrong bytes", i)
		}
	}
	st := s.Stats()
	if st.Demotions != 1 || st.Method != sendfile2.MsgZC || st.Methods[sendfile2.MsgZC].Sends == 0 {
		t.Fatalf("stats after io_uring_enter was refused: %+v", st)
	}
}
