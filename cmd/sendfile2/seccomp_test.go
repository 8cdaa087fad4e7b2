//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestDockerSeccomp: under a seccomp filter that fails io_uring_setup,
// io_uring_enter and io_uring_register with EPERM, as Docker's default
// profile does (they are not in its allow-list, whose default action is
// EPERM), `sendfile2 probe` says that io_uring is refused and why, and
// serve's auto takes msgzc and serves files.
func TestDockerSeccomp(t *testing.T) {
	refused := refuseEnv + "=io_uring"
	out, err := commandProcess(t, []string{"probe", "--json"}, refused).Output()
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	var f struct {
		IOURing       bool   `json:"io_uring"`
		IOURingReason string `json:"io_uring_reason"`
		MsgZerocopy   bool   `json:"msg_zerocopy"`
		Seccomp       bool   `json:"seccomp_filter"`
	}
	if err := json.Unmarshal(out, &f); err != nil {
		t.Fatalf("probe --json: %v\n%s", err, out)
	}
	if f.IOURing || !f.Seccomp || !f.MsgZerocopy {
		t.Errorf("probe: io_uring %v, seccomp filter %v, MSG_ZEROCOPY %v; want false, true, true", f.IOURing, f.Seccomp, f.MsgZerocopy)
	}
	for _, want := range []string{"seccomp", "EPERM"} {
		if !strings.Contains(f.IOURingReason, want) {
			t.Errorf("probe's reason %q does not name %s", f.IOURingReason, want)
		}
	}
	human, err := commandProcess(t, []string{"probe"}, refused).Output()
	if err != nil || !strings.Contains(string(human), "io_uring_setup refused by a seccomp filter (EPERM)") {
		t.Errorf("probe: %v\n%s", err, human)
	}

	dir := t.TempDir()
	out, err = commandProcess(t, []string{"serve", "--addr", "127.0.0.1:0", "--method", "uring", dir}, refused).CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), "io_uring_setup: operation not permitted") {
		t.Errorf("serve --method uring with io_uring refused: exit %d, want 2 and the refusal:\n%s", code, out)
	}
	data := writeRandom(t, filepath.Join(dir, "big.bin"), 4<<20)
	p, start := startServeProcess(t, commandProcess(t, []string{"serve", "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
		"--log-format", "json", dir}, refused))
	if start["method"] != "msgzc" {
		t.Errorf("auto resolved to %v with io_uring refused, want msgzc", start["method"])
	}
	c := newClient(t)
	resp, body := do(t, c, "GET", "http://"+start["addr"].(string)+"/big.bin")
	if resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("status %d, %d bytes, want 200 and the file's %d", resp.StatusCode, len(body), len(data))
	}
	m := scrape(t, c, "http://"+start["metrics"].(string)+"/metrics")
	if n, _ := total(m, "sendfile2_sender_info", `method="msgzc"`); n != 1 {
		t.Errorf("sendfile2_sender_info{method=msgzc} %v, want 1", n)
	}
	if n, _ := total(m, "sendfile2_sent_bytes_total"); n < float64(len(data)) {
		t.Errorf("sendfile2_sent_bytes_total %v, want the file's %d", n, len(data))
	}
	p.stop(t)
}
