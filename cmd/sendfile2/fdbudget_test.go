//go:build linux

package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sendfile2/sendfile2"
)

// stableDescriptors waits until the count of open descriptors has not
// changed for 300 ms (at most hangBound), and returns it.
func stableDescriptors() int {
	n, since := openDescriptors(), time.Now()
	for deadline := time.Now().Add(hangBound); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		if m := openDescriptors(); m != n {
			n, since = m, time.Now()
		} else if time.Since(since) > 300*time.Millisecond {
			break
		}
	}
	return n
}

// TestFDsPerConn measures the descriptors a connection of serve holds at
// worst, with every method: downloads stalled by a client that does not
// read (the send waits for room in the socket), and uploads stalled in the
// middle of their body (the receive waits for bytes). The counts must stay
// within what fitConns budgets: a connection's socket, its file (and, for
// uploads, the duplicate Receive reads and the temporary file's directory);
// a send waits in the Sender's shared Poller, on the ring, or (msgzc) on an
// epoll instance of its own.
func TestFDsPerConn(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "big.bin"), 16<<20)
	writeRandom(t, filepath.Join(dir, "big.bin.gz"), 16<<20) // what --precompressed serves for it
	const k = 16
	for _, m := range []sendfile2.Method{sendfile2.Auto, sendfile2.URing, sendfile2.URingMmap, sendfile2.MsgZC, sendfile2.Copy, sendfile2.Sendfile, sendfile2.Splice} {
		t.Run(string(m), func(t *testing.T) {
			ts := startServe(t, dir, func(o *serveOptions) {
				o.method = string(m)
				o.upload = true
				o.accessLog = false
				o.http.precompressed = "gzip"
				o.openFiles = 0 // each request opens its own file: the worst case
			})
			measure := func(what string, start func(c net.Conn, i int) error, budget int) float64 {
				before := stableDescriptors()
				var conns []net.Conn
				for i := range k {
					c, err := dialSmall(ts.addr)
					must(t, err)
					conns = append(conns, c)
					must(t, start(c, i))
				}
				during := stableDescriptors()
				for _, c := range conns {
					c.Close()
				}
				// Minus the clients' own sockets, which are in this process.
				per := float64(during-before-k) / k
				t.Logf("%s: %.2f descriptors per connection (%d conns, %d -> %d)", what, per, k, before, during)
				if per > float64(budget) {
					t.Errorf("%s: %.2f descriptors per connection, over the budget of %d", what, per, budget)
				}
				return per
			}
			plain := measure("stalled downloads", func(c net.Conn, _ int) error {
				_, err := io.WriteString(c, "GET /big.bin HTTP/1.1\r\nHost: test\r\n\r\n")
				return err
			}, fdsPerConn(string(m), false, 1))
			// The budget counts one file per download: one that sends the
			// encoded file holds it alone, not the file it stands for too.
			encoded := measure("stalled downloads of the encoded file", func(c net.Conn, _ int) error {
				_, err := io.WriteString(c, "GET /big.bin HTTP/1.1\r\nHost: test\r\nAccept-Encoding: gzip\r\n\r\n")
				return err
			}, fdsPerConn(string(m), false, 1))
			if encoded > plain+0.5 {
				t.Errorf("a download of the encoded file holds %.2f descriptors, one of the file %.2f", encoded, plain)
			}
			measure("stalled uploads", func(c net.Conn, i int) error {
				_, err := fmt.Fprintf(c, "PUT /up-%d HTTP/1.1\r\nHost: test\r\nContent-Length: 8388608\r\n\r\n%1024s", i, "x")
				return err
			}, fdsPerConn(string(m), true, 1))
			must(t, ts.stop())
			waitNoTempFiles(t, dir)
			os.Remove(filepath.Join(dir, "x"))
		})
	}
}

// nofileEnv sets RLIMIT_NOFILE, soft and hard, in a child process that
// runs the command (asCommand).
const nofileEnv = "SENDFILE2_TEST_NOFILE"

// limitDescriptors sets RLIMIT_NOFILE to nofileEnv's value, if it has one.
func limitDescriptors() {
	nofile := os.Getenv(nofileEnv)
	if nofile == "" {
		return
	}
	n, err := strconv.ParseUint(nofile, 10, 64)
	if err == nil {
		err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "RLIMIT_NOFILE:", err)
		os.Exit(3)
	}
}

// TestFDLimit: serve in a child process whose RLIMIT_NOFILE is 128 asks for
// --max-conns 10000; it lowers it to what fits and logs it. Twice that many
// downloads that never read, and more, then a well-behaved client: the
// stalled ones are cut at --send-timeout and the others get their turn,
// accept(2) never fails with EMFILE, and the good client gets its file.
func TestFDLimit(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "big.bin"), 16<<20)
	writeRandom(t, filepath.Join(dir, "big.bin.gz"), 16<<20) // what --precompressed serves for it
	want := writeRandom(t, filepath.Join(dir, "good.bin"), 4<<20)
	const nofile = 128
	p, serving := startServeProcess(t, commandProcess(t, []string{"serve", "--addr", "127.0.0.1:0", "--log-format", "json",
		"--max-conns", "10000", "--send-timeout", "500ms", "--method", "copy", dir}, nofileEnv+"="+strconv.Itoa(nofile)))
	defer p.stop(t)
	addr := serving["addr"].(string)
	stderr, cmd := p.stderr, p.cmd
	files := p.waitLog(t, "--open-files lowered to fit RLIMIT_NOFILE")
	if n, asked := files["open_files"].(float64), files["asked"].(float64); n > (nofile-12)/4 || n >= asked {
		t.Errorf("--open-files %v lowered to %v with RLIMIT_NOFILE %d", asked, n, nofile)
	}
	lowered := p.waitLog(t, "--max-conns lowered to fit RLIMIT_NOFILE")
	maxConns := int(lowered["max_conns"].(float64))
	t.Logf("--max-conns 10000 lowered to %d (RLIMIT_NOFILE %d, %v open at start, %v per conn)", maxConns, nofile, lowered["open"], lowered["per_conn"])
	// Enough stalled downloads that, all accepted, they would need more
	// descriptors than the limit has.
	n := max(2*maxConns, nofile/3+1)
	ss := make([]*staller, n)
	for i := range ss {
		c, err := dialSmall(addr)
		must(t, err)
		defer c.Close()
		must(t, stallKinds[0].start(c, i))
		ss[i] = &staller{kind: &stallKinds[0], conn: c, stalled: time.Now()}
	}
	peak := 0
	pid := strconv.Itoa(cmd.Process.Pid)
	cut := make(chan error, 1)
	go func() { cut <- waitCut(ss, time.Now().Add(hangBound)) }()
	start := time.Now()
	if err := goodGet(addr, "/good.bin", want); err != nil {
		t.Errorf("a well-behaved client: %v", err)
	}
	took := time.Since(start)
	for {
		if fds, err := os.ReadDir("/proc/" + pid + "/fd"); err == nil {
			peak = max(peak, len(fds))
		}
		select {
		case err := <-cut:
			if err != nil {
				t.Error(err)
			}
			t.Logf("%d stalled downloads cut, good client %v, at most %d descriptors open in serve (sampled)", n, took.Round(time.Millisecond), peak)
			if strings.Contains(stderr.String(), "too many open files") {
				t.Errorf("serve ran out of descriptors")
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}
