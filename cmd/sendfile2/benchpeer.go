package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/cmd/sendfile2/internal/bench"
	"github.com/sendfile2/sendfile2/internal/peer"
)

// peerResult is one method's line of `bench --peer`.
type peerResult struct {
	Method     sendfile2.Method `json:"method"`
	Resolved   sendfile2.Method `json:"resolved,omitempty"`
	Status     string           `json:"status"`
	Error      string           `json:"error,omitempty"`
	GBps       []float64        `json:"gbps"`             // per round
	SenderCPU  float64          `json:"sender_cpu_s_gib"` // CPU seconds per GiB, median
	PeerCPU    float64          `json:"peer_cpu_s_gib"`
	ZeroCopy   float64          `json:"zero_copy_fraction"` // of the zero-copy methods' bytes, -1 if none
	Sent       checkSent        `json:"sent"`
	senderCPUs []float64
	peerCPUs   []float64
}

type peerReport struct {
	Kernel   string       `json:"kernel"`
	Peer     string       `json:"peer"`
	Total    int64        `json:"total"`
	FileSize int64        `json:"file_size"`
	Rounds   int          `json:"rounds"`
	Results  []peerResult `json:"results"`
}

// runPeer is bench with --peer: the flags that apply to it, then benchPeer.
func (o *benchOptions) runPeer(cmd *cobra.Command) error {
	for _, name := range []string{"direction", "send-size", "conns", "source", "receiver", "sync", "netns", "report"} {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--%s does not apply to --peer", name)
		}
	}
	return benchPeer(cmd, o.peer, o.cfg)
}

// benchPeer is `bench --peer`: each round sends total bytes with each method
// (interleaved) over one connection to the peer at addr, which reads as fast
// as it can and counts.
func benchPeer(cmd *cobra.Command, addr string, cfg bench.Config) error {
	ctx := cmd.Context()
	methods := cfg.Methods
	if len(methods) == 0 {
		methods = bench.AllMethods()
	}
	dir, err := os.MkdirTemp(cfg.Dir, "sendfile2-bench-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	f, err := os.CreateTemp(dir, "file-*")
	if err != nil {
		return err
	}
	defer f.Close()
	data := make([]byte, cfg.FileSize)
	rand.NewChaCha8([32]byte{}).Read(data)
	if _, err := f.Write(data); err != nil {
		return err
	}
	ps, err := peer.Dial(ctx, addr)
	if err != nil {
		return err
	}
	defer ps.Close()
	rep := peerReport{Kernel: kernelRelease(), Peer: addr, Total: cfg.Total, FileSize: cfg.FileSize, Rounds: cfg.Rounds}
	res := make([]peerResult, len(methods))
	senders := make([]*sendfile2.Sender, len(methods))
	for i, m := range methods {
		res[i] = peerResult{Method: m, Status: bench.StatusOK}
		s, err := sendfile2.NewSender(sendfile2.Config{Method: m, BufferSize: cfg.BufferSize})
		if err != nil {
			res[i].Status, res[i].Error = bench.StatusUnavailable, err.Error()
			continue
		}
		defer s.Close()
		senders[i] = s
		if m == sendfile2.Auto {
			res[i].Resolved = s.Method()
		}
	}
	for range cfg.Rounds {
		for i, s := range senders {
			if s == nil || res[i].Status != bench.StatusOK {
				continue
			}
			if err := peerRound(ctx, ps, s, f, cfg, &res[i]); err != nil {
				res[i].Status, res[i].Error = bench.StatusFailed, err.Error()
			}
		}
	}
	failed := false
	for i, s := range senders {
		r := &res[i]
		if s != nil {
			r.Sent = sentOf(s.Stats())
		}
		r.SenderCPU, r.PeerCPU, r.ZeroCopy = median(r.senderCPUs), median(r.peerCPUs), -1
		if n := r.Sent.ZeroCopyBytes + r.Sent.CopiedBytes; n > 0 {
			r.ZeroCopy = float64(r.Sent.ZeroCopyBytes) / float64(n)
		}
		failed = failed || r.Status == bench.StatusFailed
	}
	rep.Results = res
	if cfg.JSON {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
		fmt.Fprintf(w, "METHOD\tGB/s (median)\tSENDER CPU s/GiB\tPEER CPU s/GiB\tZERO-COPY\t\n")
		for _, r := range res {
			name := string(r.Method)
			if r.Resolved != "" {
				name += " (" + string(r.Resolved) + ")"
			}
			if r.Status != bench.StatusOK {
				fmt.Fprintf(w, "%s\t%s\t\t\t\t%s\n", name, r.Status, r.Error)
				continue
			}
			fmt.Fprintf(w, "%s\t%.3f\t%.2f\t%.2f\t%s\t\n", name, median(r.GBps), r.SenderCPU, r.PeerCPU, r.Sent.zeroCopy())
		}
		w.Flush()
	}
	if failed {
		return exitError{1}
	}
	return nil
}

// peerRound sends cfg.Total bytes of f, again and again, with s over a new
// data connection to the peer and waits for the peer to have read them.
func peerRound(ctx context.Context, ps *peer.Session, s *sendfile2.Sender, f *os.File, cfg bench.Config, r *peerResult) error {
	c, before, err := ps.Open(ctx, peer.OpenOptions{}, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	drained := make(chan error, 1)
	var after peer.Report
	go func() {
		var err error
		after, err = ps.Drain(ctx, peer.DefaultIdle)
		drained <- err
	}()
	cpu0 := selfCPU()
	t0 := time.Now()
	var sendErr error
	for sent := int64(0); sent < cfg.Total && sendErr == nil; {
		n := min(cfg.FileSize, cfg.Total-sent)
		var k int64
		k, sendErr = s.Send(ctx, c, f, 0, n)
		sent += k
	}
	c.CloseWrite()
	if err := <-drained; err != nil {
		return err
	}
	elapsed := time.Since(t0)
	cpu := selfCPU() - cpu0
	if sendErr != nil {
		return sendErr
	}
	if after.Received != cfg.Total {
		return fmt.Errorf("the peer received %d of %d bytes", after.Received, cfg.Total)
	}
	gib := float64(cfg.Total) / (1 << 30)
	r.GBps = append(r.GBps, float64(cfg.Total)/elapsed.Seconds()/1e9)
	r.senderCPUs = append(r.senderCPUs, cpu.Seconds()/gib)
	r.peerCPUs = append(r.peerCPUs, (after.CPU-before.CPU).Seconds()/gib)
	return nil
}

// selfCPU is this process's user and system CPU time (getrusage(2)).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
