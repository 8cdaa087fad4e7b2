// Command sendfile2 serves files over HTTP with safe zero-copy sends (serve),
// proves which ways of sending a file are safe on this kernel (check), and
// reports what the kernel offers (probe).
//
// Usage:
//
//	sendfile2 serve [--addr HOST:PORT] [--metrics-addr HOST:PORT] [--method M] [flags] [DIR]
//	sendfile2 check [--json] [--method M]... [--rounds N] [--peer HOST:PORT]
//	sendfile2 peer --listen HOST:PORT
//	sendfile2 probe [--json]
//	sendfile2 bench [flags]
//	sendfile2 version
//	sendfile2 completion bash|zsh|fish|powershell
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitError carries a non-zero exit status that is not a failure to report:
// check found a safe method unsafe.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// rootCommand is the command sendfile2 and its subcommands.
func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "sendfile2",
		Short:         "A safe sendfile for Linux, on io_uring zero-copy sends",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCommand(), checkCommand(), probeCommand(), benchCommand(), peerCommand(), versionCommand())
	setVersion(root)
	setCompletion(root)
	return root
}

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := rootCommand()
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintln(stderr, "sendfile2:", errorText(err))
		return 2
	}
}

// errorText is err's message without the library's "sendfile2: " prefix,
// at its start or after a flag's "invalid argument ... flag: ", since run
// prints the command's name before every error.
func errorText(err error) string {
	msg := strings.TrimPrefix(err.Error(), "sendfile2: ")
	return strings.ReplaceAll(msg, ": sendfile2: ", ": ")
}
