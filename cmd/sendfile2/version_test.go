package main

import (
	"os/exec"
	"path/filepath"
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

// TestVersionVCS builds the command as a user does (go build in the
// checkout) and checks that version names the checkout's revision.
func TestVersionVCS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	head, err := exec.Command(git, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "sendfile2")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "revision  unknown") {
		// go build stamps nothing in a git worktree checkout, for one.
		t.Skipf("go build recorded no VCS information here:\n%s", out)
	}
	if want := "revision  " + strings.TrimSpace(string(head)); !strings.Contains(string(out), want) {
		t.Errorf("version:\n%s\nwant a line %q", out, want)
	}
}
