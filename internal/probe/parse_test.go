//go:build linux

package probe_test

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/sendfile2/sendfile2/internal/probe"
)

func TestParseRelease(t *testing.T) {
	for _, c := range []struct {
		in           string
		major, minor int
		ok           bool
	}{
		{"6.18.44-fc-v657", 6, 18, true},
		{"4.19.0-27-amd64", 4, 19, true},
		{"5.4", 5, 4, true},
		{"6.1-rc3", 6, 1, true},
		{"", 0, 0, false},
		{"6", 0, 0, false},
		{"6.", 0, 0, false},
		{"v6.1", 0, 0, false},
		{"99999999999999999999.1", 0, 0, false},
	} {
		major, minor, ok := probe.ParseRelease(c.in)
		if major != c.major || minor != c.minor || ok != c.ok {
			t.Errorf("ParseRelease(%q) = %d, %d, %v; want %d, %d, %v", c.in, major, minor, ok, c.major, c.minor, c.ok)
		}
	}
}

func FuzzParseRelease(f *testing.F) {
	for _, s := range []string{"6.18.44-fc-v657", "4.19", "", "6.", ".1", "1.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		major, minor, ok := probe.ParseRelease(s)
		if !ok && (major != 0 || minor != 0) {
			t.Errorf("ParseRelease(%q) = %d, %d, false: want zeros", s, major, minor)
		}
		if major < 0 || minor < 0 {
			t.Errorf("ParseRelease(%q) = %d, %d: negative", s, major, minor)
		}
	})
}

func TestParseStatus(t *testing.T) {
	const doc = "Name:\tprobe.test\nUmask:\t0022\nCapEff:\t000001ffffffffff\nNoNewPrivs:\t0\nSeccomp:\t2\nSeccomp_filters:\t1\n"
	for _, c := range []struct {
		name string
		in   string
		want probe.ProcStatus
	}{
		{"filter", doc, probe.ProcStatus{Seccomp: 2, CapEff: 0x1ffffffffff, HasCapEff: true}},
		{"none", "Seccomp:\t0\nCapEff:\t0000000000000000\n", probe.ProcStatus{Seccomp: 0, HasCapEff: true}},
		{"no seccomp line", "CapEff:\t0000000000200000", probe.ProcStatus{Seccomp: -1, CapEff: 1 << 21, HasCapEff: true}},
		{"empty", "", probe.ProcStatus{Seccomp: -1}},
		{"garbage values", "Seccomp:\tx\nCapEff:\tzz\n", probe.ProcStatus{Seccomp: -1}},
		{"crlf and spaces", "Seccomp:   1\r\n", probe.ProcStatus{Seccomp: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := probe.ParseStatus([]byte(c.in)); got != c.want {
				t.Errorf("ParseStatus = %+v, want %+v", got, c.want)
			}
		})
	}
	// The real file parses.
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if st := probe.ParseStatus(data); st.Seccomp < 0 || !st.HasCapEff {
		t.Errorf("ParseStatus(/proc/self/status) = %+v: Seccomp or CapEff missing", st)
	}
}

func FuzzParseStatus(f *testing.F) {
	if data, err := os.ReadFile("/proc/self/status"); err == nil {
		f.Add(data, 0, uint64(0))
	}
	f.Add([]byte("Seccomp:\t2\n"), 2, uint64(1<<21))
	f.Add([]byte("Seccomp:"), 0, uint64(0))
	f.Fuzz(func(t *testing.T, junk []byte, seccomp int, capEff uint64) {
		// Anything goes without a panic.
		probe.ParseStatus(junk)
		// Well-formed lines after anything that ends a line are read back.
		if seccomp < 0 {
			seccomp = -seccomp
		}
		if seccomp < 0 {
			return
		}
		doc := fmt.Sprintf("%s\nSeccomp:\t%d\nCapEff:\t%016x\n", junk, seccomp, capEff)
		got := probe.ParseStatus([]byte(doc))
		want := probe.ProcStatus{Seccomp: seccomp, CapEff: capEff, HasCapEff: true}
		if got != want {
			t.Errorf("ParseStatus(%q) = %+v, want %+v", doc, got, want)
		}
	})
}

func TestParseSysctlInt(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"0\n", 0, true},
		{"2\n", 2, true},
		{"-1\n", -1, true},
		{"  1  ", 1, true},
		{"", 0, false},
		{"one\n", 0, false},
		{"99999999999\n", 0, false},
	} {
		got, err := probe.ParseSysctlInt([]byte(c.in))
		if got != c.want || (err == nil) != c.ok {
			t.Errorf("ParseSysctlInt(%q) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

func FuzzParseSysctlInt(f *testing.F) {
	for _, s := range []string{"0\n", "2\n", "-1\n", "", "x", "2147483648\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := probe.ParseSysctlInt(data)
		if err != nil {
			return
		}
		// What parses prints back to a number that parses the same.
		if again, err := probe.ParseSysctlInt([]byte(strconv.Itoa(n) + "\n")); err != nil || again != n {
			t.Errorf("ParseSysctlInt(%q) = %d, which reparses as %d, %v", data, n, again, err)
		}
	})
}
