package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/cmd/sendfile2/internal/bytesize"
)

// WriteTable writes rep for a person: what ran where, then one line per
// method, then what the source meant for each method.
func WriteTable(w io.Writer, rep *Report) error {
	c, mc := rep.Config, rep.Machine
	fmt.Fprintf(w, "%s, Linux %s, %d CPUs, %s, %s\n", mc.Date, mc.Kernel, mc.CPUs, mc.Go, mc.Transport)
	if c.Direction == Receive {
		return writeReceiveTable(w, rep)
	}
	src := "a file of " + bytesize.Format(c.FileSize)
	if c.Source == FromMemory {
		src = "an anonymous buffer of " + bytesize.Format(c.FileSize)
	}
	conns := plural(c.Conns, "connection")
	recv := "reads into 1 MiB"
	switch c.Receiver {
	case Discard:
		recv = "discards (MSG_TRUNC)"
	case Block:
		recv = "reads into 1 MiB, blocking in read(2)"
	}
	fmt.Fprintf(w, "%s per method and round from %s, in sends of up to %s, over %s; the receiver %s; %s, methods interleaved\n\n",
		bytesize.Format(c.Total), src, bytesize.Format(c.SendSize), conns, recv, plural(c.Rounds, "round"))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "METHOD\tGB/s MEDIAN\tMIN\tMAX\tCPU s/GiB\tRECV CPU s/GiB\tCOPIED\tGB/s VS SENDFILE\tCPU VS SENDFILE\tNOTE")
	for _, r := range rep.Results {
		name := string(r.Method)
		if !r.Safe {
			name += " (unsafe)"
		}
		var notes []string
		if r.Resolved != "" && r.Resolved != r.Method {
			notes = append(notes, "resolved to "+string(r.Resolved)+splitNote(r, "sent"))
		}
		if r.Error != "" {
			notes = append(notes, r.Error)
		}
		note := strings.Join(notes, "; ")
		if r.Status == StatusUnavailable {
			fmt.Fprintf(tw, "%s\tunavailable\t\t\t\t\t\t\t\t%s\n", name, note)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name,
			num(r.GBpsMedian, "%.2f"), num(r.GBpsMin, "%.2f"), num(r.GBpsMax, "%.2f"),
			num(r.CPUSPerGiB, "%.3f"), num(r.ReceiverCPUSPerGiB, "%.3f"), num(r.CopiedFraction, "%.3f"),
			num(r.GBpsVsSendfile, "%.2fx"), num(r.CPUVsSendfile, "%.2fx"), note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nGB = 1e9 bytes. COPIED: the fraction of zero-copy bytes the kernel reported copied (- when the method reports none);\non loopback and veth the kernel copies every zero-copy send (docs/KERNEL-FACTS.md, section 3).")
	// What the bytes came from: one line when it is the same for all.
	same := true
	for _, r := range rep.Results {
		same = same && r.Source == rep.Results[0].Source
	}
	if same && len(rep.Results) > 0 {
		fmt.Fprintf(w, "\nSource: %s\n", rep.Results[0].Source)
		return nil
	}
	fmt.Fprintln(w, "\nSource:")
	for _, r := range rep.Results {
		if r.Source != r.Error { // else the note said it already
			fmt.Fprintf(w, "  %s: %s\n", r.Method, r.Source)
		}
	}
	return nil
}

// writeReceiveTable is WriteTable's part for direction receive.
func writeReceiveTable(w io.Writer, rep *Report) error {
	c, fs := rep.Config, rep.Machine.FileSystem
	if fs == "" {
		fs = "an unknown file system"
	}
	sync := "Config.Sync off: no fdatasync"
	if c.Sync {
		sync = "Config.Sync on: each Receive ends with fdatasync"
	}
	fmt.Fprintf(w, "%s per method and round over %s, written by a peer process with write(2) from memory; this process receives\n"+
		"each connection with Sender.Receive into a new file on %s (%s), removed after the round; %s, methods interleaved\n\n",
		bytesize.Format(c.Total), plural(c.Conns, "connection"), fs, sync, plural(c.Rounds, "round"))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "METHOD\tGB/s MEDIAN\tMIN\tMAX\tRECV CPU s/GiB\tSENDER CPU s/GiB\tCACHE MiB\tNOTE")
	for _, r := range rep.Results {
		var notes []string
		if r.Resolved != "" && r.Resolved != r.Method {
			notes = append(notes, "resolved to "+string(r.Resolved)+splitNote(r, "received"))
		} else if n := len(r.BytesByMethod); n > 1 || n == 1 && r.BytesByMethod[baseMethod(r.Method)] == 0 {
			notes = append(notes, "received with "+byMethod(r))
		}
		if r.Fallbacks > 0 {
			if r.Method == URingDontCache {
				notes = append(notes, fmt.Sprintf("RWF_DONTCACHE refused: wrote through the page cache (%d fallbacks)", r.Fallbacks))
			} else {
				notes = append(notes, fmt.Sprintf("%d fallbacks", r.Fallbacks))
			}
		}
		if r.Error != "" {
			notes = append(notes, r.Error)
		}
		note := strings.Join(notes, "; ")
		if r.Status == StatusUnavailable {
			fmt.Fprintf(tw, "%s\tunavailable\t\t\t\t\t\t%s\n", r.Method, note)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Method,
			num(r.GBpsMedian, "%.2f"), num(r.GBpsMin, "%.2f"), num(r.GBpsMax, "%.2f"),
			num(r.ReceiverCPUSPerGiB, "%.3f"), num(r.CPUSPerGiB, "%.3f"), num(r.CacheGrowthMiB, "%.0f"), note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprint(w, "\nGB = 1e9 bytes, MiB = 2^20 bytes. RECV CPU: this process (getrusage RUSAGE_SELF, io_uring workers included);\n"+
		"SENDER CPU: the peer. CACHE MiB: growth of Cached in /proc/meminfo from before the round's first Receive to after\n"+
		"its last returned (median over rounds); dirty pages and pages under writeback count as cached, and so does\n"+
		"whatever else the machine cached or dropped meanwhile.\n")
	fmt.Fprintln(w, "\nReceive:")
	for _, r := range rep.Results {
		if note, ok := ReceiveNote(r.Method); ok { // else the note said it already
			fmt.Fprintf(w, "  %s: %s\n", r.Method, note)
		}
	}
	return nil
}

// baseMethod is the sendfile2 method of a bench entry: URing for
// URingDontCache, m otherwise.
func baseMethod(m sendfile2.Method) sendfile2.Method {
	if m == URingDontCache {
		return sendfile2.URing
	}
	return m
}

// splitNote says how auto split its bytes among methods ("sent" or
// "received" by them), when it used more than one.
func splitNote(r Result, verb string) string {
	if len(r.BytesByMethod) < 2 {
		return ""
	}
	return ", " + verb + " by " + byMethod(r)
}

// byMethod lists the methods of r.BytesByMethod, with their share of the
// bytes when there are several: "copy", "copy 82%, uring 18%".
func byMethod(r Result) string {
	if len(r.BytesByMethod) == 1 {
		for m := range r.BytesByMethod {
			return string(m)
		}
	}
	var total int64
	var ms []sendfile2.Method
	for m, n := range r.BytesByMethod {
		total += n
		ms = append(ms, m)
	}
	slices.Sort(ms)
	var parts []string
	for _, m := range ms {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", m, 100*float64(r.BytesByMethod[m])/float64(total)))
	}
	return strings.Join(parts, ", ")
}

func num(p *float64, format string) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf(format, *p)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
