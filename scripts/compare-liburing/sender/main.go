//go:build linux

// Command sender is sendfile2's side of scripts/compare-liburing.sh: it sends
// to the same receiver as liburing's examples/send-zerocopy (its -R mode), in
// the same way, and prints its result in the same form.
//
//	sender -method uring -size 64KiB -port 18011 -t 3
//
// It connects to 127.0.0.1:PORT, then for -t seconds calls
// Sender.SendWithHeader with -size bytes of memory and an empty file, one call
// after another, as `sendfile2 bench --source memory` does (a Send returns
// only when the kernel holds no reference to the data). It prints MB/s=N
// (bytes sent / elapsed, MB = 1e6), and for zero-copy methods the fraction the
// kernel reported as copied. Sizes are byte counts or take a unit as
// github.com/dustin/go-humanize reads it (64KiB, 1MiB).
//
//	sender -method auto -file F -total 1GiB -port P
//
// sends -total bytes of the file F instead, with Sender.Send, the whole file
// per call (what `sendfile2 bench` does by default), then shuts down its side
// and waits for the receiver to close (scripts/kernel-facts/baseline.c's
// receiver, `baseline recv P`, closes after the last byte). It adds its CPU
// seconds per GiB sent (getrusage), cpu_s_per_gib=N.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/sendfile2/sendfile2"
)

func main() {
	method := flag.String("method", "uring", "send method")
	size := flag.String("size", "64KiB", "bytes per Send")
	bufSize := flag.String("buffer-size", "64KiB", "the Sender's registered buffer size")
	port := flag.Int("port", 18011, "receiver's port on 127.0.0.1")
	secs := flag.Int("t", 3, "seconds to send")
	file := flag.String("file", "", "send this file instead of memory, -total bytes of it")
	total := flag.String("total", "1GiB", "with -file, the bytes to send")
	flag.Parse()
	if *file != "" {
		if err := runFile(*method, *file, *total, *port); err != nil {
			fmt.Fprintln(os.Stderr, "sender:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*method, *size, *bufSize, *port, time.Duration(*secs)*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "sender:", err)
		os.Exit(1)
	}
}

func run(method, size, bufSize string, port int, d time.Duration) error {
	m, err := sendfile2.ParseMethod(method)
	if err != nil {
		return err
	}
	n, err := humanize.ParseBytes(size)
	if err != nil {
		return err
	}
	bs, err := humanize.ParseBytes(bufSize)
	if err != nil {
		return err
	}
	if n == 0 || bs == 0 || bs > 1<<30 || d <= 0 {
		return fmt.Errorf("-size, -buffer-size and -t must be positive")
	}
	s, err := sendfile2.NewSender(sendfile2.Config{Method: m, BufferSize: int(bs)})
	if err != nil {
		return err
	}
	defer s.Close()
	empty, err := os.CreateTemp("", "sendfile2-sender-")
	if err != nil {
		return err
	}
	os.Remove(empty.Name())
	defer empty.Close()
	c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	defer c.Close()
	mem := make([]byte, n)
	for i := range mem {
		mem[i] = byte(i)
	}
	ctx := context.Background()
	var sent int64
	start := time.Now()
	for time.Since(start) < d {
		k, err := s.SendWithHeader(ctx, c.(*net.TCPConn), mem, empty, 0, 0)
		sent += k
		if err != nil {
			return err
		}
	}
	elapsed := time.Since(start)
	var zc, copied int64
	for _, ms := range s.Stats().Methods {
		zc += ms.ZeroCopyBytes
		copied += ms.CopiedBytes
	}
	fmt.Printf("MB/s=%d", int64(float64(sent)/elapsed.Seconds()/1e6))
	if zc+copied > 0 {
		fmt.Printf(" copied=%.3f", float64(copied)/float64(zc+copied))
	}
	fmt.Println()
	return nil
}

func runFile(method, path, total string, port int) error {
	m, err := sendfile2.ParseMethod(method)
	if err != nil {
		return err
	}
	want, err := humanize.ParseBytes(total)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() == 0 || want == 0 {
		return fmt.Errorf("an empty file, or -total 0")
	}
	s, err := sendfile2.NewSender(sendfile2.Config{Method: m})
	if err != nil {
		return err
	}
	defer s.Close()
	c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	defer c.Close()
	tc := c.(*net.TCPConn)
	ctx := context.Background()
	cpu0 := cpuSeconds()
	start := time.Now()
	for left := int64(want); left > 0; {
		n := min(left, st.Size())
		k, err := s.Send(ctx, tc, f, 0, n)
		if err != nil {
			return err
		}
		left -= k
	}
	if err := tc.CloseWrite(); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, tc); err != nil { // until the receiver closes
		return err
	}
	elapsed := time.Since(start)
	gib := float64(want) / (1 << 30)
	fmt.Printf("MB/s=%d cpu_s_per_gib=%.3f\n", int64(float64(want)/elapsed.Seconds()/1e6), (cpuSeconds()-cpu0)/gib)
	return nil
}

// cpuSeconds is this process's user and system CPU time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
