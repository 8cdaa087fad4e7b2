package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// versionText is what `sendfile2 version` and `sendfile2 --version` print:
// the module's version and the VCS revision it was built from (with its time,
// and whether the tree had changes), as the Go toolchain recorded them in
// the binary, then the Go version and the running kernel. bi is nil when the
// binary has no build information.
func versionText(bi *debug.BuildInfo, kernel string) string {
	var b strings.Builder
	version, path := "(unknown)", "github.com/sendfile2/sendfile2/cmd/sendfile2"
	settings := map[string]string{}
	goVersion := runtime.Version()
	if bi != nil {
		version, goVersion = bi.Main.Version, bi.GoVersion
		if bi.Main.Path != "" {
			path = bi.Main.Path
		}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
	}
	if version == "" {
		version = "(unknown)"
	}
	fmt.Fprintf(&b, "sendfile2 %s\n", version)
	fmt.Fprintf(&b, "module    %s\n", path)
	if rev := settings["vcs.revision"]; rev != "" {
		if settings["vcs.modified"] == "true" {
			rev += " (modified)"
		}
		if t := settings["vcs.time"]; t != "" {
			rev += ", " + t
		}
		fmt.Fprintf(&b, "revision  %s\n", rev)
	} else {
		fmt.Fprintf(&b, "revision  unknown (built without VCS information: -buildvcs=false, or outside a checkout)\n")
	}
	fmt.Fprintf(&b, "go        %s %s/%s\n", goVersion, runtime.GOOS, runtime.GOARCH)
	if kernel == "" {
		kernel = "unknown"
	}
	fmt.Fprintf(&b, "kernel    %s\n", kernel)
	return b.String()
}

// buildVersion is versionText for this binary.
func buildVersion() string {
	bi, _ := debug.ReadBuildInfo()
	return versionText(bi, kernelRelease())
}

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the VCS revision, the Go version and the running kernel",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), buildVersion())
			return err
		},
	}
}

// setVersion gives root a --version flag that prints what version prints.
func setVersion(root *cobra.Command) {
	bi, _ := debug.ReadBuildInfo()
	root.Version = "(unknown)"
	if bi != nil && bi.Main.Version != "" {
		root.Version = bi.Main.Version
	}
	// The template is parsed by text/template: keep braces out of it.
	root.SetVersionTemplate(strings.NewReplacer("{{", "{ {", "}}", "} }").Replace(buildVersion()))
}
