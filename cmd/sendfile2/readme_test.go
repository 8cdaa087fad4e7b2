package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// readmeFlags reads the flag tables of the README's command section: for
// each "### sendfile2 ..." heading, the flags of the table under it and
// their defaults (the second column, without backticks; empty for none).
func readmeFlags(t *testing.T) map[string]map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string]map[string]string{}
	var cur map[string]string
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "#"):
			cur = nil
			if h, ok := strings.CutPrefix(line, "### "); ok {
				if h = strings.Trim(h, "` "); strings.HasPrefix(h, "sendfile2") {
					cur = map[string]string{}
					tables[h] = cur
				}
			}
		case cur != nil && strings.HasPrefix(line, "| `--"):
			cells := strings.Split(strings.Trim(line, "|"), "|")
			if len(cells) != 3 {
				t.Errorf("README, %s: row %q has %d cells, want 3 (flag, default, meaning)", line, line, len(cells))
				continue
			}
			name := strings.TrimPrefix(strings.Trim(strings.TrimSpace(cells[0]), "`"), "--")
			if _, dup := cur[name]; dup {
				t.Errorf("README: --%s listed twice", name)
			}
			cur[name] = strings.Trim(strings.TrimSpace(cells[1]), "`")
		}
	}
	return tables
}

// commandFlags lists, for every command of rootCommand that a user runs
// (cobra's help and completion aside), its own flags and their defaults as
// --help shows them.
func commandFlags() map[string]map[string]string {
	all := map[string]map[string]string{}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		c.InitDefaultVersionFlag()
		flags := map[string]string{}
		c.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
			if f.Name != "help" && !f.Hidden {
				flags[f.Name] = f.DefValue
			}
		})
		if len(flags) > 0 {
			all[c.CommandPath()] = flags
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(rootCommand())
	return all
}

// TestReadmeFlags: the README's flag tables and the commands' flags agree:
// every flag of every command has a row under the command's heading, with
// the default that --help shows, and every row is a flag of its command.
// A flag added to a command fails this test until the README lists it.
func TestReadmeFlags(t *testing.T) {
	readme, cmds := readmeFlags(t), commandFlags()
	for _, path := range sortedKeys(cmds) {
		table, ok := readme[path]
		if !ok {
			t.Errorf("README has no \"### %s\" section with a flag table", path)
			continue
		}
		for _, name := range sortedKeys(cmds[path]) {
			def, listed := table[name]
			switch {
			case !listed:
				t.Errorf("README, %s: no row for --%s (default %q)", path, name, cmds[path][name])
			case def != cmds[path][name]:
				t.Errorf("README, %s: --%s defaults to %q, --help says %q", path, name, def, cmds[path][name])
			}
		}
	}
	for _, path := range sortedKeys(readme) {
		for _, name := range sortedKeys(readme[path]) {
			if _, ok := cmds[path][name]; !ok {
				t.Errorf("README, %s: --%s is not a flag of that command", path, name)
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
