package probe

import (
	"bytes"
	"fmt"
	"strconv"
)

// The parsers of kernel output are pure functions, kept apart from the code
// that reads the files so that fuzz tests can feed them anything.

// parseRelease returns the major and minor version at the start of a uname
// release such as "6.18.44-fc-v657". ok is false when s does not start with
// "<major>.<minor>".
func parseRelease(s string) (major, minor int, ok bool) {
	num := func(s string) (n int, rest string, ok bool) {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 || i > 6 {
			return 0, s, false
		}
		n, err := strconv.Atoi(s[:i])
		return n, s[i:], err == nil
	}
	major, rest, ok := num(s)
	if !ok || len(rest) == 0 || rest[0] != '.' {
		return 0, 0, false
	}
	minor, _, ok = num(rest[1:])
	if !ok {
		return 0, 0, false
	}
	return major, minor, true
}

// procStatus holds the fields of /proc/self/status that explain a refused
// io_uring_setup.
type procStatus struct {
	// Seccomp is the "Seccomp:" mode: 0 none, 1 strict, 2 filter; -1 when
	// the line is missing (kernels without CONFIG_SECCOMP).
	Seccomp int
	// CapEff is the effective capability set, valid when HasCapEff.
	CapEff    uint64
	HasCapEff bool
}

// parseStatus reads the Seccomp and CapEff lines of /proc/<pid>/status
// ("Seccomp:\t2", "CapEff:\t000001ffffffffff"). Lines it does not know or
// cannot parse are ignored.
func parseStatus(data []byte) procStatus {
	st := procStatus{Seccomp: -1}
	for line := range bytes.Lines(data) {
		key, value, found := bytes.Cut(line, []byte(":"))
		if !found {
			continue
		}
		value = bytes.TrimSpace(value)
		switch string(key) {
		case "Seccomp":
			if n, err := strconv.Atoi(string(value)); err == nil && n >= 0 {
				st.Seccomp = n
			}
		case "CapEff":
			if n, err := strconv.ParseUint(string(value), 16, 64); err == nil {
				st.CapEff, st.HasCapEff = n, true
			}
		}
	}
	return st
}

// parseSysctlInt parses the content of an integer sysctl file such as
// /proc/sys/kernel/io_uring_disabled ("0\n").
func parseSysctlInt(data []byte) (int, error) {
	s := string(bytes.TrimSpace(data))
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("sysctl value %q is not an integer", s)
	}
	return int(n), nil
}
