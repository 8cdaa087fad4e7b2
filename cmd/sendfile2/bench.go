package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/cmd/sendfile2/internal/bench"
	"github.com/sendfile2/sendfile2/cmd/sendfile2/internal/bytesize"
)

// bench starts this same binary again as its receiver process; in that
// process, ServeIfReceiver takes over before main runs.
func init() { bench.ServeIfReceiver() }

// benchOptions are the flags of `sendfile2 bench`.
type benchOptions struct {
	cfg       bench.Config
	source    string
	receiver  string
	direction string
	peer      string // HOST:PORT of a sendfile2 peer on another machine
}

func benchCommand() *cobra.Command {
	o := &benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the throughput and CPU of each send (or receive) method over TCP",
		Long: `bench sends --total bytes per round with each method over TCP, on loopback
(or with --netns across a veth pair between two network namespaces that it
creates and removes), to a receiver in a separate process, for --rounds
rounds with the methods interleaved (A B C A B C ...). It reports per method
the throughput in GB/s (1e9 bytes; median, min and max over rounds), the
sender's CPU seconds per GiB (getrusage RUSAGE_SELF, median), the receiver's,
the fraction of zero-copy bytes the kernel reported copied, and both against
the sendfile baseline of the same run.

On loopback and veth the kernel copies every zero-copy send: the io_uring
methods show their overhead there, never their gain.

--source file (default) sends from a file of --file-size bytes in the page
cache; --source memory from an anonymous mapping of that size, through
Sender.SendWithHeader with an empty body. Only copy, uring and auto can send
memory as themselves; the others are reported unavailable, with the reason.
A memfd or tmpfs file is not memory: it is shmem in the page cache.

--direction receive flips the roles: the peer process sends --total bytes
per round over --conns connections with plain write(2) from memory, and this
process receives each connection with Sender.Receive into a new file in a
temporary directory under --dir (removed after each round). Methods: uring,
uring+dontcache (uring with Config.DontCache: its writes carry
RWF_DONTCACHE, Linux 6.14+), copy, splice and auto (the default list); the
others have no receive of their own and are reported unavailable. It reports
the receiver's CPU (this process), the sender's, and the page-cache growth
per round: Cached in /proc/meminfo after the round's last Receive returned
minus before its first began, in MiB, median over rounds. Dirty pages and
pages under writeback count as cached: without --sync, RWF_DONTCACHE pages
whose writeback has not completed still count; --sync makes each Receive end
with fdatasync (Config.Sync), inside the measured time. --file-size,
--send-size, --source and --receiver are send flags.

A method the kernel lacks is reported unavailable. The exit status is 1 when
a method failed during the run, 2 for bad flags or a failed setup.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := cmd.Flags()
	choiceVar(f, &o.direction, "direction", string(bench.Send), "direction", []string{string(bench.Send), string(bench.Receive)}, "send (this process sends, a peer process reads) or receive (a peer process writes, this process receives into files)")
	methodsVar(f, &o.cfg.Methods, "methods", benchMethods(), "methods, run in this order: repeat the flag or list them with commas (default: every method, then auto; with --direction receive uring,uring+dontcache,copy,splice,auto)")
	sizeVar(f, &o.cfg.Total, "total", bench.DefaultTotal, 1, 1<<62, "bytes per method per round, split among the connections (units: 64KiB, 1MiB, 1GiB, 1e6)")
	sizeVar(f, &o.cfg.FileSize, "file-size", bench.DefaultFileSize, 1, 1<<62, "size of the file (or of the buffer with --source memory), sent again and again")
	sizeVar(f, &o.cfg.SendSize, "send-size", 0, 1, 1<<62, "bytes per Send call at most (default: the file size)")
	sizeVar(f, &o.cfg.BufferSize, "buffer-size", 0, 4<<10, 1<<30, "size of each registered buffer, and so of each SEND_ZC of uring (Config.BufferSize; default: the Sender's)").align = 4 << 10
	countVar(f, &o.cfg.Conns, "conns", bench.DefaultConns, 1, "connections, each sending total/conns bytes at once")
	countVar(f, &o.cfg.Rounds, "rounds", bench.DefaultRounds, 1, "rounds; each runs every method once")
	choiceVar(f, &o.source, "source", string(bench.FromFile), "source", []string{string(bench.FromFile), string(bench.FromMemory)}, "where the bytes come from: file (a cached file) or memory (an anonymous buffer)")
	choiceVar(f, &o.receiver, "receiver", string(bench.Read), "receiver", []string{string(bench.Read), string(bench.Discard), string(bench.Block)}, "what the receiver does: read (into a 1 MiB buffer), discard (recv with MSG_TRUNC) or block (read into 1 MiB, waiting in read(2) on a blocking descriptor, as a C receiver does)")
	f.BoolVar(&o.cfg.Sync, "sync", false, "with --direction receive: each Receive ends with fdatasync (Config.Sync), so RWF_DONTCACHE pages are dropped before the round ends")
	f.StringVar(&o.cfg.Dir, "dir", "", "where the files go, in a temporary directory removed afterwards (default: $TMPDIR or /tmp)")
	f.BoolVar(&o.cfg.Netns, "netns", false, "send across a veth pair between two network namespaces (root, iproute2)")
	f.BoolVar(&o.cfg.JSON, "json", false, "print one JSON object")
	f.StringVar(&o.cfg.Report, "report", "", "also write an HTML page with charts to `FILE.html` (self-contained, reads offline)")
	f.StringVar(&o.peer, "peer", "", "send to the sendfile2 peer at `HOST:PORT` on another machine (one connection, methods interleaved; GB/s, CPU of both ends, zero-copy fraction; takes --methods, --total, --file-size, --buffer-size, --rounds, --dir, --json)")
	return cmd
}

// run runs the benchmark and prints its report.
func (o *benchOptions) run(cmd *cobra.Command) error {
	if o.peer != "" {
		return o.runPeer(cmd)
	}
	if err := o.config(cmd.Flags().Changed); err != nil {
		return err
	}
	var finish func()
	if !o.cfg.JSON && isTerminal(cmd.ErrOrStderr()) {
		finish = o.progress(cmd.ErrOrStderr())
	}
	rep, err := bench.Run(cmd.Context(), o.cfg)
	if finish != nil {
		finish()
	}
	if err != nil {
		return err
	}
	return o.write(cmd.OutOrStdout(), cmd.ErrOrStderr(), rep)
}

// config checks the flags and completes o.cfg from them; changed reports
// whether a flag was given.
func (o *benchOptions) config(changed func(name string) bool) error {
	cfg := &o.cfg
	d, err := bench.ParseDirection(o.direction)
	if err != nil {
		return err
	}
	cfg.Direction = d
	if d == bench.Send && slices.Contains(cfg.Methods, bench.URingDontCache) {
		return fmt.Errorf("--methods %s: a receive entry (--direction receive)", bench.URingDontCache)
	}
	cfg.Source, cfg.Receiver = bench.Source(o.source), bench.ReceiverMode(o.receiver)
	if d == bench.Receive {
		for _, name := range []string{"file-size", "send-size", "source", "receiver"} {
			if changed(name) {
				return fmt.Errorf("--%s is a send flag: with --direction receive the peer writes from memory", name)
			}
		}
		cfg.FileSize, cfg.SendSize, cfg.Source, cfg.Receiver = 0, 0, "", ""
	} else if cfg.Sync {
		return errors.New("--sync applies to --direction receive")
	}
	if cfg.Report != "" {
		// Before the run, which may take minutes, rather than after it.
		if err := requireDir("report", filepath.Dir(cfg.Report)); err != nil {
			return err
		}
	}
	if cfg.Dir != "" {
		if err := requireDir("dir", cfg.Dir); err != nil {
			return err
		}
	}
	if cfg.Conns < 1 || cfg.Conns > 4096 {
		return fmt.Errorf("--conns %d: want 1 to 4096", cfg.Conns)
	}
	if cfg.Total < int64(cfg.Conns) {
		return fmt.Errorf("--total %d: less than one byte per connection (--conns %d)", cfg.Total, cfg.Conns)
	}
	if d == bench.Send && cfg.SendSize > cfg.FileSize {
		return fmt.Errorf("--send-size %s is larger than --file-size %s", bytesize.Format(cfg.SendSize), bytesize.Format(cfg.FileSize))
	}
	return nil
}

// requireDir checks that dir, where the flag name puts files, is a
// directory.
func requireDir(name, dir string) error {
	st, err := os.Stat(dir)
	switch {
	case err != nil:
		return fmt.Errorf("--%s: %w", name, err)
	case !st.IsDir():
		return fmt.Errorf("--%s: %s is not a directory", name, dir)
	}
	return nil
}

// progress makes the run show a progress bar on w, and returns what
// removes it.
func (o *benchOptions) progress(w io.Writer) (finish func()) {
	var bar *progressbar.ProgressBar
	o.cfg.Planned = func(n int64) {
		bar = progressbar.NewOptions64(n,
			progressbar.OptionSetWriter(w),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	o.cfg.Started = func(round int, m sendfile2.Method) {
		bar.Describe(fmt.Sprintf("round %d/%d %-10s", round, o.cfg.Rounds, m))
	}
	o.cfg.Sent = func(n int64) { bar.Add64(n) }
	return func() {
		if bar != nil {
			bar.Finish()
			bar.Clear()
		}
	}
}

// write writes the report (--report, then JSON or the table on stdout) and
// the methods that failed on stderr, which make the exit status 1.
func (o *benchOptions) write(stdout, stderr io.Writer, rep *bench.Report) error {
	if o.cfg.Report != "" {
		if err := writeReport(o.cfg.Report, rep); err != nil {
			return err
		}
	}
	if o.cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := bench.WriteTable(stdout, rep); err != nil {
		return err
	}
	failed := false
	for _, r := range rep.Results {
		if r.Status == bench.StatusFailed {
			fmt.Fprintf(stderr, "%s failed: %s\n", r.Method, r.Error)
			failed = true
		}
	}
	if failed {
		return exitError{1}
	}
	return nil
}

func writeReport(path string, rep *bench.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	if err := bench.WriteHTML(f, rep); err != nil {
		f.Close()
		return fmt.Errorf("--report: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	return nil
}

// isTerminal reports whether w is a terminal: the progress bar shows only
// there.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
