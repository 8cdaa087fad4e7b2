package main

import (
	"slices"
	"strings"
	"testing"
)

// complete runs cobra's hidden __complete command, as the shell scripts of
// `sendfile2 completion` do, and returns the candidates and the directive
// line.
func complete(t *testing.T, args ...string) ([]string, string) {
	t.Helper()
	out, errOut, code := runCmd(t, append([]string{"__complete"}, args...)...)
	if code != 0 {
		t.Fatalf("__complete %q: exit %d: %s", args, code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	return lines[:len(lines)-1], lines[len(lines)-1]
}

// TestCompletion: flag values complete from the values the flags take.
func TestCompletion(t *testing.T) {
	methods := []string{"auto", "uring", "uring-mmap", "msgzc", "copy", "sendfile", "splice"}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"serve", "--method", ""}, methods},
		{[]string{"serve", "--method", "ur"}, []string{"uring", "uring-mmap"}},
		{[]string{"serve", "--log-format", ""}, []string{"text", "json"}},
		{[]string{"check", "--method", ""}, methods},
		{[]string{"check", "--method", "copy,s"}, []string{"copy,sendfile", "copy,splice"}},
		{[]string{"bench", "--methods", ""}, append(slices.Clone(methods), "uring+dontcache")},
		{[]string{"bench", "--methods", "uring,uring"}, []string{"uring,uring-mmap", "uring,uring+dontcache"}},
		{[]string{"bench", "--direction", ""}, []string{"send", "receive"}},
		{[]string{"bench", "--source", ""}, []string{"file", "memory"}},
		{[]string{"bench", "--receiver", ""}, []string{"read", "discard", "block"}},
		{[]string{"bench", "--rounds", ""}, nil},
	} {
		got, directive := complete(t, tc.args...)
		if !slices.Equal(got, tc.want) || directive != ":4" { // ShellCompDirectiveNoFileComp
			t.Errorf("%q: %q %s, want %q :4", tc.args, got, directive, tc.want)
		}
	}
	for _, args := range [][]string{{"serve", ""}, {"bench", "--dir", ""}} {
		if _, directive := complete(t, args...); directive != ":16" { // ShellCompDirectiveFilterDirs
			t.Errorf("%q: directive %s, want :16 (directories)", args, directive)
		}
	}
	if got, directive := complete(t, "bench", "--report", ""); !slices.Equal(got, []string{"html"}) || directive != ":8" {
		t.Errorf("bench --report: %q %s, want html :8 (files by extension)", got, directive)
	}
	got, _ := complete(t, "")
	for _, want := range []string{"serve", "check", "probe", "bench", "version", "completion"} {
		if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, want+"\t") }) {
			t.Errorf("commands: %q lacks %s", got, want)
		}
	}
}

// TestCompletionScripts: `sendfile2 completion SHELL` writes the script of
// each shell cobra knows.
func TestCompletionScripts(t *testing.T) {
	for shell, want := range map[string]string{"bash": "# bash completion V2 for sendfile2", "zsh": "#compdef sendfile2",
		"fish": "# fish completion for sendfile2", "powershell": "# powershell completion for sendfile2"} {
		out, errOut, code := runCmd(t, "completion", shell)
		if code != 0 || !strings.HasPrefix(out, want) {
			t.Errorf("completion %s: exit %d, %q, stderr %q", shell, code, out[:min(len(out), 80)], errOut)
		}
	}
}
