package main

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersion: `sendfile2 version` and `sendfile2 --version` print the same
// lines: the version, the module, the revision, Go's version and the
// running kernel.
func TestVersion(t *testing.T) {
	want := []string{"sendfile2 ", "module    github.com/sendfile2/sendfile2/cmd/sendfile2", "revision  ",
		"go        " + runtime.Version(), "kernel    " + kernelRelease()}
	var outs []string
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, errOut, code := runCmd(t, args...)
		if code != 0 || errOut != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != len(want) {
			t.Fatalf("%v: %d lines, want %d:\n%s", args, len(lines), len(want), out)
		}
		for i, w := range want {
			if !strings.HasPrefix(lines[i], w) {
				t.Errorf("%v: line %d is %q, want it to start with %q", args, i+1, lines[i], w)
			}
		}
		outs = append(outs, out)
	}
	if outs[0] != outs[1] {
		t.Errorf("version and --version differ:\n%s\n%s", outs[0], outs[1])
	}
	if _, _, code := runCmd(t, "version", "extra"); code != 2 {
		t.Errorf("version extra: exit %d, want 2", code)
	}
}

// TestVersionText: the revision, its time and the modified flag come from
// the build information, as go build records them from the checkout.
func TestVersionText(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.0",
		Main:      debug.Module{Path: "github.com/sendfile2/sendfile2/cmd/sendfile2", Version: "v0.4.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	got := versionText(bi, "6.18.1")
	want := "sendfile2 v0.4.0\n" +
		"module    github.com/sendfile2/sendfile2/cmd/sendfile2\n" +
		"revision  0123456789abcdef0123456789abcdef01234567 (modified), 2026-12-01T10:00:00Z\n" +
		"go        go1.26.0 " + runtime.GOOS + "/" + runtime.GOARCH + "\n" +
		"kernel    6.18.1\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	bi.Settings = bi.Settings[:3]
	if got := versionText(bi, "6.18.1"); !strings.Contains(got, "01234567, 2026-12-01T10:00:00Z\n") {
		t.Errorf("unmodified tree:\n%s", got)
	}
	if got := versionText(nil, ""); !strings.Contains(got, "sendfile2 (unknown)\n") || !strings.Contains(got, "revision  unknown") ||
		!strings.Contains(got, "kernel    unknown\n") {
		t.Errorf("without build information:\n%s", got)
	}
}
