//go:build linux

package probe_test

import (
	"math"
	"strings"
	"syscall"
	"testing"
	"unicode"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/probe"
)

// checkSentence asserts what every reason looks like: it starts lowercase,
// has no final period, and holds each of want.
func checkSentence(t *testing.T, got string, want ...string) {
	t.Helper()
	if got == "" {
		t.Fatal("empty reason")
	}
	if r := []rune(got)[0]; unicode.IsUpper(r) || strings.HasSuffix(got, ".") {
		t.Errorf("reason %q: want a lowercase start and no final period", got)
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("reason %q does not contain %q", got, w)
		}
	}
}

func TestSetupReason(t *testing.T) {
	k := func(major, minor int) probe.KernelVersion { return probe.KernelVersion{Major: major, Minor: minor} }
	modern := probe.SetupFacts{Kernel: k(6, 18), Disabled: 0, Memlock: 8 << 20}
	with := func(change func(*probe.SetupFacts)) probe.SetupFacts {
		f := modern
		change(&f)
		return f
	}
	for _, c := range []struct {
		name  string
		errno syscall.Errno
		facts probe.SetupFacts
		want  []string
	}{
		{"enosys old kernel", unix.ENOSYS, with(func(f *probe.SetupFacts) { f.Kernel = k(4, 19) }),
			[]string{"kernel 4.19 is older than 5.1, which brought io_uring"}},
		{"enosys old kernel under seccomp", unix.ENOSYS, with(func(f *probe.SetupFacts) { f.Kernel = k(4, 19); f.Seccomp = true }),
			[]string{"older than 5.1"}},
		{"enosys no single mmap", unix.ENOSYS, with(func(f *probe.SetupFacts) { f.Kernel = k(5, 3) }),
			[]string{"kernel 5.3 is older than 5.4", "IORING_FEAT_SINGLE_MMAP"}},
		{"enosys seccomp", unix.ENOSYS, with(func(f *probe.SetupFacts) { f.Seccomp = true }),
			[]string{"seccomp filter (ENOSYS)", "Docker's and containerd's default profiles block io_uring"}},
		{"enosys no config", unix.ENOSYS, modern,
			[]string{"not implemented (ENOSYS)", "CONFIG_IO_URING"}},
		{"enosys unknown kernel", unix.ENOSYS, with(func(f *probe.SetupFacts) { f.Kernel = k(0, 0) }),
			[]string{"CONFIG_IO_URING"}},
		{"eperm seccomp", unix.EPERM, with(func(f *probe.SetupFacts) { f.Seccomp = true }),
			[]string{"io_uring_setup refused by a seccomp filter (EPERM)", "Docker's and containerd's default profiles block io_uring"}},
		{"eperm disabled 2", unix.EPERM, with(func(f *probe.SetupFacts) { f.Disabled = 2 }),
			[]string{"disabled by kernel.io_uring_disabled=2"}},
		{"eperm disabled 2 even when privileged", unix.EPERM, with(func(f *probe.SetupFacts) { f.Disabled = 2; f.Privileged = true }),
			[]string{"disabled by kernel.io_uring_disabled=2"}},
		{"eperm disabled 2 under seccomp", unix.EPERM, with(func(f *probe.SetupFacts) { f.Disabled = 2; f.Seccomp = true }),
			[]string{"kernel.io_uring_disabled=2"}},
		{"eperm disabled 1 unprivileged", unix.EPERM, with(func(f *probe.SetupFacts) { f.Disabled = 1 }),
			[]string{"kernel.io_uring_disabled=1 allows io_uring only for CAP_SYS_ADMIN or the group in kernel.io_uring_group"}},
		{"eperm disabled 1 privileged", unix.EPERM, with(func(f *probe.SetupFacts) { f.Disabled = 1; f.Privileged = true }),
			[]string{"refused (EPERM)", "security module"}},
		{"eperm disabled 1 privileged seccomp", unix.EPERM, with(func(f *probe.SetupFacts) { f.Disabled = 1; f.Privileged = true; f.Seccomp = true }),
			[]string{"seccomp filter (EPERM)"}},
		{"eperm sysctl absent", unix.EPERM, with(func(f *probe.SetupFacts) { f.Disabled = -1 }),
			[]string{"refused (EPERM)"}},
		{"enomem old kernel", unix.ENOMEM, with(func(f *probe.SetupFacts) { f.Kernel = k(5, 10); f.Memlock = 65536 }),
			[]string{"the memlock limit (RLIMIT_MEMLOCK = 65536 bytes) is too small for the ring; raise it with ulimit -l"}},
		{"enomem unknown kernel", unix.ENOMEM, with(func(f *probe.SetupFacts) { f.Kernel = k(0, 0); f.Memlock = 65536 }),
			[]string{"RLIMIT_MEMLOCK = 65536 bytes", "ulimit -l"}},
		{"enomem old kernel unlimited", unix.ENOMEM, with(func(f *probe.SetupFacts) { f.Kernel = k(5, 10); f.Memlock = math.MaxUint64 }),
			[]string{"ENOMEM", "unlimited"}},
		{"enomem memcg", unix.ENOMEM, modern,
			[]string{"ENOMEM", "memory cgroup", "RLIMIT_MEMLOCK (8388608 bytes"}},
		{"enomem memcg unlimited", unix.ENOMEM, with(func(f *probe.SetupFacts) { f.Memlock = math.MaxUint64 }),
			[]string{"ENOMEM", "memory cgroup"}},
		{"other errno", unix.EINVAL, modern,
			[]string{"io_uring_setup failed: invalid argument (EINVAL)"}},
		{"emfile", unix.EMFILE, modern,
			[]string{"too many open files (EMFILE)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkSentence(t, probe.SetupReason(c.errno, c.facts), c.want...)
		})
	}
}

func TestDontcacheReason(t *testing.T) {
	for _, c := range []struct {
		name  string
		errno syscall.Errno
		k     probe.KernelVersion
		want  []string
	}{
		{"old kernel", unix.EOPNOTSUPP, probe.KernelVersion{Major: 6, Minor: 8}, []string{"kernel 6.8 is older than 6.14"}},
		{"old kernel einval", unix.EINVAL, probe.KernelVersion{Major: 5, Minor: 15}, []string{"older than 6.14"}},
		{"filesystem", unix.EOPNOTSUPP, probe.KernelVersion{Major: 6, Minor: 18}, []string{"filesystem holding /scratch", "EOPNOTSUPP"}},
		{"unknown kernel", unix.EOPNOTSUPP, probe.KernelVersion{}, []string{"filesystem"}},
		{"enosys", unix.ENOSYS, probe.KernelVersion{Major: 6, Minor: 18}, []string{"ENOSYS"}},
		{"other", unix.EIO, probe.KernelVersion{Major: 6, Minor: 18}, []string{"input/output error (EIO)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkSentence(t, probe.DontcacheReason(c.errno, c.k, "/scratch"), c.want...)
		})
	}
}

func TestMsgZerocopyReason(t *testing.T) {
	for _, c := range []struct {
		name  string
		errno syscall.Errno
		k     probe.KernelVersion
		want  []string
	}{
		{"old kernel", unix.ENOPROTOOPT, probe.KernelVersion{Major: 4, Minor: 9}, []string{"kernel 4.9 is older than 4.14"}},
		{"unknown option", unix.ENOPROTOOPT, probe.KernelVersion{Major: 6, Minor: 18}, []string{"ENOPROTOOPT"}},
		{"refused", unix.EOPNOTSUPP, probe.KernelVersion{Major: 6, Minor: 18}, []string{"EOPNOTSUPP"}},
		{"other", unix.EPERM, probe.KernelVersion{Major: 6, Minor: 18}, []string{"setsockopt(SO_ZEROCOPY) failed", "EPERM"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkSentence(t, probe.MsgZerocopyReason(c.errno, c.k), c.want...)
		})
	}
}

func TestPrivileged(t *testing.T) {
	const capSysAdmin = 1 << 21
	for _, c := range []struct {
		name        string
		capEff      uint64
		group, egid int
		groups      []int
		want        bool
	}{
		{"cap_sys_admin", capSysAdmin, -1, 1000, nil, true},
		{"root's full set", 0x000001ffffffffff, -1, 0, nil, true},
		{"no cap no group", 0, -1, 1000, []int{1000, 27}, false},
		{"egid is the group", 0, 1001, 1001, nil, true},
		{"supplementary group", 0, 27, 1000, []int{1000, 27}, true},
		{"other group", 0, 27, 1000, []int{1000}, false},
		{"other caps only", 1<<12 | 1<<10, -1, 1000, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := probe.Privileged(c.capEff, c.group, c.egid, c.groups); got != c.want {
				t.Errorf("Privileged = %v, want %v", got, c.want)
			}
		})
	}
}
