package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCheckPeer: `check --peer` against `peer --listen`, the two machines
// played by one on loopback: the safe methods corrupt nothing at the far
// end, sendfile does, and the report says what the kernel copied.
func TestCheckPeer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	small, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	smallPort := small.Addr().(*net.TCPAddr).Port
	small.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var peerOut, peerErr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"peer", "--listen", addr, "--small-port", strconv.Itoa(smallPort)}, &peerOut, &peerErr)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("peer exited %d: %s", code, peerErr.String())
		}
		if !strings.Contains(peerOut.String(), "listening on "+addr) {
			t.Errorf("peer said %q", peerOut.String())
		}
	}()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the peer does not listen: %v", err)
		}
	}
	t.Run("bench", func(t *testing.T) {
		out, errOut, code := runCmd(t, "bench", "--json", "--peer", addr, "--rounds", "1",
			"--total", "4MiB", "--file-size", "1MiB", "--methods", "copy,uring-mmap")
		if code != 0 {
			t.Fatalf("exit %d, stderr %q\n%s", code, errOut, out)
		}
		var rep struct {
			Results []struct {
				Method string    `json:"method"`
				Status string    `json:"status"`
				GBps   []float64 `json:"gbps"`
			} `json:"results"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		if len(rep.Results) != 2 {
			t.Fatalf("%d results, want 2:\n%s", len(rep.Results), out)
		}
		for _, r := range rep.Results {
			if r.Status == "ok" && (len(r.GBps) != 1 || r.GBps[0] <= 0) {
				t.Errorf("%s: %v GB/s", r.Method, r.GBps)
			}
			if r.Status == "failed" {
				t.Errorf("%s failed", r.Method)
			}
		}
	})
	out, errOut, code := runCmd(t, "check", "--json", "--rounds", "1", "--peer", addr,
		"--method", "copy", "--method", "sendfile", "--method", "uring-mmap")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q\n%s", code, errOut, out)
	}
	var rep struct {
		Peer    string `json:"peer"`
		Methods []struct {
			Method         string `json:"method"`
			Verdict        string `json:"verdict"`
			CorruptedBytes int64  `json:"corrupted_bytes"`
			Sent           struct {
				ZeroCopyMethodBytes int64            `json:"zero_copy_method_bytes"`
				ByMethod            map[string]int64 `json:"by_method"`
			} `json:"sent"`
		} `json:"methods"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if rep.Peer != addr {
		t.Errorf("peer %q in the report, want %q", rep.Peer, addr)
	}
	want := map[string]string{"copy": "safe", "sendfile": "unsafe", "uring-mmap": "safe"}
	for _, e := range rep.Methods {
		if e.Verdict != want[e.Method] && e.Verdict != "unavailable" {
			t.Errorf("%s: verdict %s, want %s", e.Method, e.Verdict, want[e.Method])
		}
		if e.Method == "uring-mmap" && e.Verdict == "safe" && e.Sent.ZeroCopyMethodBytes == 0 {
			t.Errorf("uring-mmap: no zero-copy bytes in the report: %+v", e.Sent)
		}
	}
}
