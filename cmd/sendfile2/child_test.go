package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests run the command in a process of its own, where they need what
// only a process can have (inherited descriptors, a seccomp filter), by
// starting this test binary again with commandEnv set: TestMain then runs
// the command line it was given instead of the tests, as main does.
const (
	commandEnv = "SENDFILE2_TEST_AS_COMMAND"
	// refuseEnv=io_uring makes the command's process refuse
	// io_uring_setup, io_uring_enter and io_uring_register with EPERM, as
	// Docker's default seccomp profile does.
	refuseEnv = "SENDFILE2_TEST_REFUSE"
)

// asCommand runs the command line of os.Args and exits, when this process
// was started as the command; else it returns false.
func asCommand() bool {
	if os.Getenv(commandEnv) != "1" {
		return false
	}
	if os.Getenv(refuseEnv) == "io_uring" {
		if err := refuseIOURing(); err != nil {
			fmt.Fprintln(os.Stderr, "refuse io_uring:", err)
			os.Exit(3)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
	return true
}

// commandProcess returns the command line args as a process of its own,
// with env added to its environment.
func commandProcess(t *testing.T, args []string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), commandEnv+"=1"), env...)
	return cmd
}

// serveProcess is `sendfile2 serve --log-format json` running in a process
// of its own.
type serveProcess struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error // what Wait returned
}

// startServeProcess starts cmd, a serve command with --log-format json, and
// waits for its "serving" line, which it returns. The process is stopped at
// the end of the test.
func startServeProcess(t *testing.T, cmd *exec.Cmd) (*serveProcess, map[string]any) {
	t.Helper()
	p := startProcess(t, cmd)
	return p, p.waitLog(t, "serving")
}

// startProcess starts cmd, which is stopped at the end of the test.
func startProcess(t *testing.T, cmd *exec.Cmd) *serveProcess {
	t.Helper()
	p := &serveProcess{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("serve's log:\n%s", p.stderr.String())
		}
	})
	return p
}

// waitLog waits for the first log line whose msg is msg, and returns it.
func (p *serveProcess) waitLog(t *testing.T, msg string) map[string]any {
	t.Helper()
	for range 3000 {
		for line := range strings.Lines(p.stderr.String()) {
			var e map[string]any
			if json.Unmarshal([]byte(line), &e) == nil && e["msg"] == msg {
				return e
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("serve exited (%v) before logging %q:\n%s", err, msg, p.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("no %q line in serve's log after 30s:\n%s", msg, p.stderr.String())
	return nil
}

// stop sends SIGTERM and waits for a clean exit.
func (p *serveProcess) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("serve after SIGTERM: %v\n%s", err, p.stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not exit within 60s of SIGTERM")
	}
}
