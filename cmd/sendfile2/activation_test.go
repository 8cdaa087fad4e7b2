package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listenerFile returns a new plain TCP listening socket on 127.0.0.1 as a
// file to pass to a child, and its address.
func listenerFile(t *testing.T) (*os.File, string) {
	t.Helper()
	ln, err := listen(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File() // a duplicate: the socket outlives ln
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, ln.Addr().String()
}

// activated returns serve args as a process that inherits files as fds 3,
// 4, ... with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID set as systemd sets
// them. LISTEN_PID must be the pid of the process that reads it, known only
// once it runs: a shell sets it to its own pid ($$) and execs the command,
// which keeps that pid.
func activated(t *testing.T, names string, files []*os.File, args ...string) *exec.Cmd {
	t.Helper()
	cmd := commandProcess(t, args)
	script := `LISTEN_PID=$$ LISTEN_FDS=` + strconv.Itoa(len(files)) + ` LISTEN_FDNAMES=` + names +
		`; export LISTEN_PID LISTEN_FDS LISTEN_FDNAMES; exec "$0" "$@"`
	cmd.Args = append([]string{"sh", "-c", script, cmd.Path}, args...)
	cmd.Path = "/bin/sh"
	cmd.ExtraFiles = files
	return cmd
}

// TestSocketActivation: serve started with two listening sockets from
// "systemd", named http and metrics, serves the files on the first and the
// metrics on the second, sends the bodies with the Sender (the activated
// socket is plain TCP), and stops cleanly on SIGTERM.
func TestSocketActivation(t *testing.T) {
	dir := t.TempDir()
	data := writeRandom(t, filepath.Join(dir, "big.bin"), 1<<20)
	f, addr := listenerFile(t)
	mf, maddr := listenerFile(t)
	p, start := startServeProcess(t, activated(t, "http:metrics", []*os.File{f, mf},
		"serve", "--log-format", "json", "--access-log", "--method", "copy", dir))
	if start["addr"] != addr || start["metrics"] != maddr || start["method"] != "copy" {
		t.Errorf("serving %v, want addr %s and metrics %s from the activated sockets", start, addr, maddr)
	}
	act := p.waitLog(t, "socket activation")
	if act["name"] != "http" || act["addr"] != addr {
		t.Errorf("activation line %v", act)
	}
	c := newClient(t)
	resp, body := do(t, c, "GET", "http://"+addr+"/big.bin")
	if resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("status %d, %d bytes, want 200 and the file's %d", resp.StatusCode, len(body), len(data))
	}
	m := scrape(t, c, "http://"+maddr+"/metrics")
	if n, _ := total(m, "sendfile2_sent_bytes_total", `method="copy"`); n < float64(len(data)) {
		t.Errorf("sendfile2_sent_bytes_total{method=copy} %v: the body did not go through the Sender", n)
	}
	p.stop(t)
	if strings.Contains(p.stderr.String(), `"level":"WARN"`) {
		t.Errorf("warnings:\n%s", p.stderr.String())
	}
}

// TestSocketActivationErrors: --addr beside an activated socket, and a
// descriptor that is not a listening socket, are refused.
func TestSocketActivationErrors(t *testing.T) {
	dir := t.TempDir()
	f, _ := listenerFile(t)
	out, err := activated(t, "http", []*os.File{f}, "serve", "--addr", "127.0.0.1:0", dir).CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), "--addr") {
		t.Errorf("--addr with an activated socket: exit %d: %s", code, out)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	out, err = activated(t, "http", []*os.File{r}, "serve", dir).CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), "Accept=no") {
		t.Errorf("a pipe as the activated socket: exit %d: %s", code, out)
	}
}

// exitCode is the exit status in err, from exec.Cmd's Run.
func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestSocketActivationOtherPID: sockets that LISTEN_PID says are another
// process's are left alone, and serve listens on --addr.
func TestSocketActivationOtherPID(t *testing.T) {
	f, addr := listenerFile(t)
	cmd := commandProcess(t, []string{"serve", "--log-format", "json", "--addr", "127.0.0.1:0", t.TempDir()},
		"LISTEN_PID=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=http")
	cmd.ExtraFiles = []*os.File{f}
	p, start := startServeProcess(t, cmd)
	if start["addr"] == addr || start["addr"] == nil {
		t.Errorf("serving on %v, want a new address, not the inherited %s", start["addr"], addr)
	}
	p.stop(t)
}

// TestSystemdSocketActivate: serve under systemd's own tool, which binds
// the socket, sets LISTEN_* and execs serve with the socket as fd 3.
func TestSystemdSocketActivate(t *testing.T) {
	tool, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip("systemd-socket-activate is not installed (Debian: the systemd package)")
	}
	dir := t.TempDir()
	data := writeRandom(t, filepath.Join(dir, "f.bin"), 256<<10)
	// The tool binds the address itself: take a port that was free.
	ln, err := listen(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tool, "--listen="+addr, "--fdname=http", "--setenv="+commandEnv+"=1",
		exe, "serve", "--log-format", "json", "--method", "copy", dir)
	p := startProcess(t, cmd)
	// Without --accept the tool execs serve on the first connection.
	for !strings.Contains(p.stderr.String(), "Listening on") {
		select {
		case err := <-p.done:
			t.Fatalf("systemd-socket-activate exited: %v\n%s", err, p.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	resp, body := do(t, newClient(t), "GET", "http://"+addr+"/f.bin")
	if resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("status %d, %d bytes", resp.StatusCode, len(body))
	}
	if start := p.waitLog(t, "serving"); start["addr"] != addr {
		t.Errorf("serving on %v, want the activated %s", start["addr"], addr)
	}
	p.stop(t)
}

// TestSocketActivationMPTCP: an activated MPTCP socket (SocketProtocol=mptcp)
// is served, with a warning that every body will be copied.
func TestSocketActivationMPTCP(t *testing.T) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if mptcp, err := isMPTCP(ln.(*net.TCPListener)); err != nil || !mptcp {
		t.Skipf("no MPTCP listener here (net.mptcp.enabled=0 or a kernel without it): %v", err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	data := writeRandom(t, filepath.Join(dir, "f.bin"), 256<<10)
	p, _ := startServeProcess(t, activated(t, "http", []*os.File{f}, "serve", "--log-format", "json", dir))
	if w := p.waitLog(t, "socket activation: an MPTCP socket (SocketProtocol=mptcp): its connections cannot send zero-copy, so every body will be copied (safely)"); w["level"] != "WARN" {
		t.Errorf("%v", w)
	}
	resp, body := do(t, newClient(t), "GET", "http://"+ln.Addr().String()+"/f.bin")
	if resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("status %d, %d bytes", resp.StatusCode, len(body))
	}
	p.stop(t)
}

// TestSocketActivationUnix: an activated Unix socket
// (ListenStream=/run/PATH) is served, with a warning that every body will
// be copied.
func TestSocketActivationUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "http.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	data := writeRandom(t, filepath.Join(dir, "f.bin"), 256<<10)
	p, _ := startServeProcess(t, activated(t, "http", []*os.File{f}, "serve", "--log-format", "json", dir))
	if w := p.waitLog(t, "socket activation: not a TCP socket: every body will be copied (safely); zero-copy needs ListenStream=PORT or ADDR:PORT"); w["level"] != "WARN" {
		t.Errorf("%v", w)
	}
	c := newClient(t)
	c.Transport.(*http.Transport).DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}
	resp, body := do(t, c, "GET", "http://sendfile2/f.bin")
	if resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("status %d, %d bytes", resp.StatusCode, len(body))
	}
	p.stop(t)
}
