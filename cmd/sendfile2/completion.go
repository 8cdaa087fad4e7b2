package main

import (
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// completer is a flag value that knows the values it takes: choiceFlag and
// methodsFlag.
type completer interface{ completions() []string }

// setCompletion makes the shell completion of `sendfile2 completion SHELL`
// (cobra's) complete flag values: each flag whose value knows its values
// offers them (methods, log formats, directions, sources, receivers), a
// list flag after its last comma too; numbers, sizes and durations complete
// nothing, and the rest (directories, files, addresses) paths.
func setCompletion(root *cobra.Command) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if _, ok := c.GetFlagCompletionFunc(f.Name); ok {
				return // a command registered its own
			}
			switch v := f.Value.(type) {
			case completer:
				c.RegisterFlagCompletionFunc(f.Name, completeValues(v, f.Value.Type() == "methods"))
			default:
				switch {
				case f.Name == "dir":
					c.MarkFlagDirname(f.Name)
				case f.Name == "report":
					c.MarkFlagFilename(f.Name, "html")
				case slices.Contains([]string{"bool", "int", "uint", "duration", "size"}, f.Value.Type()):
					c.RegisterFlagCompletionFunc(f.Name, cobra.NoFileCompletions)
				}
				// Other strings (addresses, files) keep the shell's default.
			}
		})
		if c.Name() == "serve" && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = completeDir // [DIR]
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// completeValues completes one of v's values, or with list, a
// comma-separated list of them: after "copy,ur" it offers "copy,uring" and
// "copy,uring-mmap", never a value the list has already.
func completeValues(v completer, list bool) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		prefix, done := "", []string(nil)
		if i := strings.LastIndex(toComplete, ","); list && i >= 0 {
			prefix = toComplete[:i+1]
			done = strings.Split(toComplete[:i], ",")
		}
		var out []cobra.Completion
		for _, value := range v.completions() {
			if !slices.Contains(done, value) && strings.HasPrefix(prefix+value, toComplete) {
				out = append(out, prefix+value)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeDir is the completion of a DIR argument.
func completeDir(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveFilterDirs
}
