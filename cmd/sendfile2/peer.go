package main

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/internal/peer"
)

func peerCommand() *cobra.Command {
	var (
		addr      string
		smallPort int
		srv       peer.Server
	)
	cmd := &cobra.Command{
		Use:   "peer --listen HOST:PORT",
		Short: "Run the receiving side of check on this machine, for a sender on another",
		Long: `peer is the far end of ` + "`sendfile2 check --peer HOST:PORT`" + ` run on another
machine, as iperf3 -s is for iperf3: it listens on --listen and on
--small-port (the port after it by default; data connections that want a small
window come there), accepts a control connection per sender and a data
connection per round, holds its reads back
until the sender says, compares what it reads with the stream the sender
named and reports the bytes that differ, and its CPU time.

What it exposes to anyone who can reach the port: it reads and drops what they
send (never writing or opening a file, never connecting anywhere), holds data
connections unread for up to --idle with receive buffers of --max-rcvbuf, and
answers each request with 64 bytes of counts. At most --max-sessions senders
at once. There is no authentication: listen on a network you trust.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addr == "" {
				return fmt.Errorf("peer: --listen HOST:PORT is required")
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			srv.Logf = func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) }
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return fmt.Errorf("peer: --listen %q: %w", addr, err)
			}
			if smallPort < 0 {
				p, err := strconv.Atoi(port)
				if err != nil || p == 0 || p == 65535 {
					return fmt.Errorf("peer: --listen %q: give --small-port with port 0 or 65535", addr)
				}
				smallPort = p + 1
			}
			ls, err := srv.Listen(cmd.Context(), addr, smallPort)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "sendfile2 peer listening on %s and %s\n", ls.Main.Addr(), ls.Small.Addr())
			return srv.Serve(cmd.Context(), ls)
		},
	}
	cmd.Flags().StringVar(&addr, "listen", "", "address to listen on, `HOST:PORT`")
	cmd.Flags().IntVar(&smallPort, "small-port", -1, "port of the data connections with a small window; -1: the --listen port + 1")
	countVar(cmd.Flags(), &srv.MaxSessions, "max-sessions", peer.DefaultMaxSessions, 1, "senders served at once")
	sizeVar(cmd.Flags(), &srv.MaxRcvbuf, "max-rcvbuf", peer.DefaultMaxRcvbuf, 4096, 1<<30, "receive buffer of the connections on the --listen port (SO_RCVBUFFORCE as root, else capped by net.core.rmem_max)")
	cmd.Flags().DurationVar(&srv.Idle, "idle", peer.DefaultIdle, "how long a sender may hold a connection without a request")
	return cmd
}

// checkSent is what a check's Sender sent, as the kernel reported it: the
// bytes of the zero-copy methods (uring, uring-mmap, msgzc), those the
// kernel sent from the memory itself and those it copied, and the bytes
// of each method that ran (auto shows what it used).
type checkSent struct {
	ZeroCopyMethodBytes int64                      `json:"zero_copy_method_bytes"`
	ZeroCopyBytes       int64                      `json:"zero_copy_bytes"`
	CopiedBytes         int64                      `json:"copied_bytes"`
	ByMethod            map[sendfile2.Method]int64 `json:"by_method,omitempty"`
	Switches            int64                      `json:"auto_switches_to_copy,omitempty"`
}

func sentOf(st sendfile2.Stats) checkSent {
	c := checkSent{ByMethod: map[sendfile2.Method]int64{}, Switches: st.Adaptive.Switches}
	for m, ms := range st.Methods {
		if ms.Bytes == 0 {
			continue
		}
		c.ByMethod[m] = ms.Bytes
		switch m {
		case sendfile2.URing, sendfile2.URingMmap, sendfile2.MsgZC:
			c.ZeroCopyMethodBytes += ms.Bytes
			c.ZeroCopyBytes += ms.ZeroCopyBytes
			c.CopiedBytes += ms.CopiedBytes
		}
	}
	return c
}

// zeroCopy says which fraction of the zero-copy methods' bytes the kernel
// reported sent without a copy, "-" when none were reported.
func (c checkSent) zeroCopy() string {
	n := c.ZeroCopyBytes + c.CopiedBytes
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(c.ZeroCopyBytes)/float64(n))
}
