package main

import (
	"encoding/json"
	"fmt"
	"math"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sendfile2/sendfile2/internal/probe"
)

func probeCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Report what this kernel and process offer, and why something is missing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := probe.Fresh()
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(f)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			yes := func(b bool, why string) string {
				if b {
					return "yes"
				}
				if why != "" {
					return "no: " + why
				}
				return "no"
			}
			fmt.Fprintf(w, "kernel\t%s\n", f.Kernel)
			fmt.Fprintf(w, "io_uring\t%s\n", yes(f.IOURing, f.IOURingReason))
			fmt.Fprintf(w, "IORING_OP_SEND_ZC (6.0)\t%s\n", yes(f.SendZC, ""))
			fmt.Fprintf(w, "IORING_OP_SENDMSG_ZC (6.1)\t%s\n", yes(f.SendmsgZC, ""))
			fmt.Fprintf(w, "IORING_SEND_ZC_REPORT_USAGE (6.2)\t%s\n", yes(f.ZCReportUsage, ""))
			fmt.Fprintf(w, "IORING_OP_READ_FIXED (5.1)\t%s\n", yes(f.ReadFixed, ""))
			fmt.Fprintf(w, "RWF_DONTCACHE (6.14)\t%s\n", yes(f.DontCache, f.DontCacheReason))
			fmt.Fprintf(w, "MSG_ZEROCOPY (4.14)\t%s\n", yes(f.MsgZerocopy, f.MsgZerocopyReason))
			memlock := "unlimited"
			if f.MemlockLimit != math.MaxUint64 {
				memlock = fmt.Sprintf("%d bytes", f.MemlockLimit)
			}
			fmt.Fprintf(w, "RLIMIT_MEMLOCK\t%s\n", memlock)
			fmt.Fprintf(w, "kernel.io_uring_disabled\t%d\n", f.IOURingDisabled)
			fmt.Fprintf(w, "seccomp filter\t%v\n", f.Seccomp)
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}
