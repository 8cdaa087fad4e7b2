//go:build linux

package probe_test

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/sendfile2/sendfile2/internal/probe"
	"github.com/sendfile2/sendfile2/internal/testutil"
	"github.com/sendfile2/sendfile2/internal/uring"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// TestFeatures fails where the running kernel is new enough for a feature
// that the probe says is missing, and skips on older kernels.
func TestFeatures(t *testing.T) {
	f := probe.Fresh()
	t.Logf("%+v", f)
	if f.Kernel == "" {
		t.Error("Kernel is empty")
	}
	reason := func(s string) error {
		if s == "" {
			return errors.New("no reason given")
		}
		return errors.New(s)
	}
	ring := reason(f.IOURingReason)
	for _, c := range []struct {
		name, since string
		ok          bool
		why         error
	}{
		// sendfile2's ring needs IORING_FEAT_SINGLE_MMAP (5.4), so 5.4 is
		// the floor for everything probed through a ring.
		{"io_uring", "5.4", f.IOURing, ring},
		{"read_fixed", "5.4", f.ReadFixed, ring},
		{"send_zc", "6.0", f.SendZC, ring},
		{"sendmsg_zc", "6.1", f.SendmsgZC, ring},
		{"zc_report_usage", "6.2", f.ZCReportUsage, ring},
		{"msg_zerocopy", "4.14", f.MsgZerocopy, reason(f.MsgZerocopyReason)},
	} {
		t.Run(c.name, func(t *testing.T) {
			testutil.RequireFeature(t, c.name, c.since, c.ok, c.why)
		})
	}
}

// TestReasonsOnlyWhenMissing checks that a reason comes with every missing
// feature and never with a present one.
func TestReasonsOnlyWhenMissing(t *testing.T) {
	f := probe.Fresh()
	for _, c := range []struct {
		name   string
		ok     bool
		reason string
	}{
		{"io_uring", f.IOURing, f.IOURingReason},
		{"dontcache", f.DontCache, f.DontCacheReason},
		{"msg_zerocopy", f.MsgZerocopy, f.MsgZerocopyReason},
	} {
		if c.ok == (c.reason != "") {
			t.Errorf("%s = %v with reason %q", c.name, c.ok, c.reason)
		}
	}
	if !f.DontCache {
		t.Logf("dontcache unavailable: %s", f.DontCacheReason)
	}
}

func TestRunCaches(t *testing.T) {
	a, b := probe.Run(), probe.Run()
	if a != b {
		t.Errorf("Run changed between calls:\n%+v\n%+v", a, b)
	}
	if f := probe.Fresh(); f != a {
		t.Errorf("Fresh = %+v, Run = %+v", f, a)
	}
}

func TestJSONFieldNames(t *testing.T) {
	full := probe.Features{
		Kernel:            "6.18.0",
		IOURingReason:     "r",
		DontCacheReason:   "r",
		MsgZerocopyReason: "r",
	}
	want := []string{
		"kernel", "io_uring", "io_uring_reason", "send_zc", "sendmsg_zc",
		"zc_report_usage", "read_fixed", "dontcache", "dontcache_reason",
		"msg_zerocopy", "msg_zerocopy_reason", "memlock_limit_bytes",
		"io_uring_disabled", "seccomp_filter",
	}
	if got := jsonKeys(t, full); !reflect.DeepEqual(got, sorted(want)) {
		t.Errorf("JSON keys = %v, want %v", got, sorted(want))
	}
	// Without reasons, the reason fields are left out.
	noReasons := []string{
		"kernel", "io_uring", "send_zc", "sendmsg_zc", "zc_report_usage",
		"read_fixed", "dontcache", "msg_zerocopy", "memlock_limit_bytes",
		"io_uring_disabled", "seccomp_filter",
	}
	if got := jsonKeys(t, probe.Features{}); !reflect.DeepEqual(got, sorted(noReasons)) {
		t.Errorf("JSON keys without reasons = %v, want %v", got, sorted(noReasons))
	}
	// The real probe round-trips.
	f := probe.Run()
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var back probe.Features
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back != f {
		t.Errorf("JSON round trip: %+v, want %+v", back, f)
	}
}

func jsonKeys(t *testing.T, f probe.Features) []string {
	t.Helper()
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return slices.Sorted(maps.Keys(m))
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

// TestSendZCFlagProbe checks the premise of the REPORT_USAGE probe on this
// kernel: on a unix socket, which cannot send zero-copy, a flag the kernel
// knows is told apart from one it does not (-EOPNOTSUPP against -EINVAL),
// and both CQEs of the request are reaped.
func TestSendZCFlagProbe(t *testing.T) {
	f := probe.Run()
	testutil.RequireFeature(t, "send_zc", "6.0", f.SendZC, errors.New(f.IOURingReason))
	ring, err := uring.NewRing(8, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close()
	for _, c := range []struct {
		name  string
		flags uint16
		want  bool
		since string
	}{
		{"none", 0, true, "6.0"},
		{"report usage", uring.SendZCReportUsage, true, "6.2"},
		{"poll first", uring.RecvsendPollFirst, true, "6.0"},
		{"unknown flag", 1 << 15, false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := probe.SendZCFlagsAccepted(ring, c.flags)
			if err != nil {
				t.Fatal(err)
			}
			if c.want {
				testutil.RequireFeature(t, c.name, c.since, got, errors.New("send zc: flag refused with EINVAL"))
			} else if got {
				t.Errorf("flags %#x accepted, want refused", c.flags)
			}
			if left := ring.Reap(nil); len(left) != 0 {
				t.Errorf("CQEs left in the ring: %+v", left)
			}
		})
	}
}
