package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/internal/check"
)

// checkEntry is one method's line of `check --json`.
type checkEntry struct {
	Method         sendfile2.Method           `json:"method"`
	Resolved       sendfile2.Method           `json:"resolved,omitempty"` // what auto used
	ExpectedSafe   bool                       `json:"expected_safe"`
	Available      bool                       `json:"available"`
	BytesChecked   int64                      `json:"bytes_checked"`
	CorruptedBytes int64                      `json:"corrupted_bytes"`
	Verdict        string                     `json:"verdict"` // safe, unsafe, unavailable or error
	Scenarios      map[check.Scenario]scCount `json:"scenarios,omitempty"`
	Error          string                     `json:"error,omitempty"`
	Sent           checkSent                  `json:"sent"`
}

type scCount struct {
	BytesChecked   int64 `json:"bytes_checked"`
	CorruptedBytes int64 `json:"corrupted_bytes"`
}

type checkReport struct {
	Kernel  string       `json:"kernel"`
	Peer    string       `json:"peer,omitempty"`
	Rounds  int          `json:"rounds"`
	Size    int          `json:"size"`
	Methods []checkEntry `json:"methods"`
	OK      bool         `json:"ok"`
}

func checkCommand() *cobra.Command {
	var (
		asJSON  bool
		methods []sendfile2.Method
		opts    check.Options
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Prove on this kernel which send methods are safe",
		Long: `check sends a file over TCP on loopback to a receiver that is held back,
changes the file right after the send returns (overwrites it; truncates it to
1000 bytes; overwrites it while most of the data still waits behind a small
receive window), then lets the receiver read and counts the bytes that differ
from what the file held when the send was called.

With --peer HOST:PORT the receiver is ` + "`sendfile2 peer`" + ` on another machine,
reached through a real network device, where the kernel sends from the pages
instead of copying them as it does on loopback.

Safe methods must show zero corrupted bytes. sendfile and splice are expected
to come out unsafe: that is the proof that the check can fail. The exit status
is 0 only when every method expected to be safe had zero corrupted bytes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ms := methods
			if len(ms) == 0 {
				ms = append(sendfile2.Methods(), sendfile2.Auto)
			}
			if opts.Rounds < 1 {
				return fmt.Errorf("--rounds %d: want at least 1", opts.Rounds)
			}
			if opts.Timeout < time.Second {
				// Shorter, a safe method would fail for want of time.
				return fmt.Errorf("--timeout %v: want 1s or more", opts.Timeout)
			}
			rep := checkReport{Kernel: kernelRelease(), Peer: opts.Peer, Rounds: opts.Rounds, Size: opts.Size, OK: true}
			for _, m := range ms {
				e := checkMethod(cmd.Context(), m, opts)
				if e.ExpectedSafe && (e.Verdict == "unsafe" || e.Verdict == "error") {
					rep.OK = false
				}
				rep.Methods = append(rep.Methods, e)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				printCheck(cmd, rep)
			}
			if !rep.OK {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	methodsVar(cmd.Flags(), &methods, "method", checkMethods(), "methods to check: repeat the flag or list them with commas (default: every method, then auto)")
	countVar(cmd.Flags(), &opts.Rounds, "rounds", check.DefaultRounds, 1, "rounds per scenario")
	sizeVar(cmd.Flags(), &opts.Size, "size", check.DefaultSize, 1, maxCheckSize, "file size per round (bytes, or with a unit: 1MiB); the whole file must fit in the socket buffers of a receiver that does not read")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", check.DefaultTimeout, "how long a send may take with the receiver held back")
	cmd.Flags().StringVar(&opts.Peer, "peer", "", "send to the sendfile2 peer at `HOST:PORT` on another machine instead of a receiver on loopback")
	return cmd
}

func checkMethod(ctx context.Context, m sendfile2.Method, opts check.Options) checkEntry {
	e := checkEntry{Method: m, ExpectedSafe: m.Safe()}
	s, err := sendfile2.NewSender(sendfile2.Config{Method: m})
	if err != nil {
		e.Verdict = "unavailable"
		e.Error = err.Error()
		if !errors.Is(err, sendfile2.ErrNotSupported) {
			e.Verdict = "error"
		}
		return e
	}
	defer s.Close()
	e.Available = true
	if m == sendfile2.Auto {
		e.Resolved = s.Method()
	}
	out := check.Run(ctx, s.Send, opts)
	e.Sent = sentOf(s.Stats())
	e.BytesChecked, e.CorruptedBytes = out.BytesChecked, out.CorruptedBytes
	e.Scenarios = map[check.Scenario]scCount{}
	for sc, o := range out.PerScenario {
		e.Scenarios[sc] = scCount{o.BytesChecked, o.CorruptedBytes}
	}
	switch {
	case out.CorruptedBytes > 0:
		e.Verdict = "unsafe"
	case out.Err != nil:
		e.Verdict = "error"
	default:
		e.Verdict = "safe"
	}
	if out.Err != nil {
		e.Error = out.Err.Error()
	}
	return e
}

func printCheck(cmd *cobra.Command, rep checkReport) {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "METHOD\tEXPECTED\tVERDICT\tCHECKED\tCORRUPTED\tZERO-COPY\t\n")
	for _, e := range rep.Methods {
		expected := "unsafe"
		if e.ExpectedSafe {
			expected = "safe"
		}
		name := string(e.Method)
		if e.Resolved != "" {
			name += " (" + string(e.Resolved) + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", name, expected, e.Verdict, e.BytesChecked, e.CorruptedBytes, e.Sent.zeroCopy(), e.Error)
	}
	w.Flush()
	if !rep.OK {
		fmt.Fprintln(cmd.ErrOrStderr(), "FAIL: a method expected to be safe corrupted data or could not be checked")
	}
	for _, e := range rep.Methods {
		if !e.ExpectedSafe && e.Verdict == "safe" {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s corrupted nothing: the check could not show the unsafe baseline failing here\n", e.Method)
		}
	}
}

// maxCheckSize is the largest --size: the file must fit in the socket
// buffers of a receiver that does not read, and 64 MiB already takes the
// largest that Linux gives by default (tcp_rmem's 32 MiB and tcp_wmem's 4 MiB).
const maxCheckSize = 64 << 20
