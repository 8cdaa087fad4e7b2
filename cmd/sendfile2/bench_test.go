package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// tinyBench is a bench command line small enough for a test.
var tinyBench = []string{"bench", "--total", "8MiB", "--file-size", "1MiB", "--rounds", "2", "--methods", "copy,sendfile"}

func TestBenchJSON(t *testing.T) {
	out, errOut, code := runCmd(t, append(tinyBench, "--json", "--send-size", "256KiB", "--receiver", "discard")...)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if errOut != "" {
		t.Errorf("stderr is not silent with --json and no terminal: %q", errOut)
	}
	var rep struct {
		Machine map[string]any   `json:"machine"`
		Config  map[string]any   `json:"config"`
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"kernel", "go", "date"} {
		if s, _ := rep.Machine[k].(string); s == "" {
			t.Errorf("machine.%s = %v", k, rep.Machine[k])
		}
	}
	if n, _ := rep.Machine["cpus"].(float64); n < 1 {
		t.Errorf("machine.cpus = %v", rep.Machine["cpus"])
	}
	// The config echoes every flag.
	want := map[string]any{
		"total": float64(8 << 20), "file_size": float64(1 << 20), "send_size": float64(256 << 10),
		"conns": float64(1), "rounds": float64(2), "source": "file", "receiver": "discard",
		"netns": false, "json": true, "report": "", "direction": "send", "sync": false,
	}
	for k, v := range want {
		if rep.Config[k] != v {
			t.Errorf("config.%s = %v, want %v", k, rep.Config[k], v)
		}
	}
	if ms, _ := rep.Config["methods"].([]any); len(ms) != 2 || ms[0] != "copy" || ms[1] != "sendfile" {
		t.Errorf("config.methods = %v", rep.Config["methods"])
	}
	if len(rep.Results) != 2 {
		t.Fatalf("%d results", len(rep.Results))
	}
	for _, r := range rep.Results {
		for _, k := range []string{"gbps_median", "gbps_min", "gbps_max", "cpu_s_per_gib"} {
			if v, ok := r[k].(float64); !ok || v <= 0 {
				t.Errorf("%v: %s = %v", r["method"], k, r[k])
			}
		}
		if v, present := r["copied_fraction"]; !present || v != nil {
			t.Errorf("%v: copied_fraction = %v, want null", r["method"], v)
		}
		if r["available"] != true {
			t.Errorf("%v: available = %v", r["method"], r["available"])
		}
		rounds, _ := r["rounds"].([]any)
		if len(rounds) != 2 {
			t.Errorf("%v: %d rounds", r["method"], len(rounds))
		}
		if v, _ := r["gbps_vs_sendfile"].(float64); v <= 0 {
			t.Errorf("%v: gbps_vs_sendfile = %v", r["method"], r["gbps_vs_sendfile"])
		}
	}
}

func TestBenchHuman(t *testing.T) {
	out, errOut, code := runCmd(t, tinyBench...)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, s := range []string{"METHOD", "GB/s MEDIAN", "CPU s/GiB", "copy", "sendfile (unsafe)", "1.00x", "Source:"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	if errOut != "" {
		t.Errorf("no progress bar when stderr is not a terminal, got %q", errOut)
	}
}

// TestBenchMemoryUnavailable: a method that cannot send from memory is
// reported unavailable, with the reason, and the run succeeds.
func TestBenchMemoryUnavailable(t *testing.T) {
	out, errOut, code := runCmd(t, "bench", "--total", "1MiB", "--file-size", "64KiB", "--rounds", "1",
		"--methods", "copy,uring-mmap", "--source", "memory", "--json")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var rep struct{ Results []map[string]any }
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2 {
		t.Fatalf("%d results", len(rep.Results))
	}
	mm := rep.Results[1]
	if mm["available"] != false || mm["gbps_median"] != nil || !strings.Contains(mm["error"].(string), "memory") {
		t.Errorf("uring-mmap from memory: %v", mm)
	}
	if rep.Results[0]["available"] != true {
		t.Errorf("copy from memory: %v", rep.Results[0])
	}
}

func TestBenchReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench.html")
	_, errOut, code := runCmd(t, append(tinyBench, "--report", path)...)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(page)
	if !strings.HasPrefix(s, "<!DOCTYPE html>") || !strings.Contains(s, "</html>") {
		t.Errorf("not an HTML page:\n%.300s", s)
	}
	for _, want := range []string{"copy", "sendfile", "<svg"} {
		if !strings.Contains(s, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if u := regexp.MustCompile(`https?://`).FindString(s); u != "" {
		t.Errorf("the page names a URL (%s): it must read offline", u)
	}
}

func TestBenchBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--total", "lots"},
		{"bench", "--total", "0"},
		{"bench", "--file-size", "1.5"},
		{"bench", "--methods", "copy,bogus"},
		{"bench", "--source", "tape"},
		{"bench", "--receiver", "nobody"},
		{"bench", "--rounds", "0"},
		{"bench", "--conns", "0"},
		{"bench", "--file-size", "1MiB", "--send-size", "2MiB"},
		{"bench", "extra"},
		{"bench", "--direction", "up"},
		{"bench", "--direction", ""},
		{"bench", "--sync"},
		{"bench", "--methods", "uring+dontcache"},
		{"bench", "--direction", "receive", "--file-size", "1MiB"},
		{"bench", "--direction", "receive", "--send-size", "1MiB"},
		{"bench", "--direction", "receive", "--source", "memory"},
		{"bench", "--direction", "receive", "--receiver", "read"},
		{"bench", "--direction", "receive", "--methods", "copy,bogus"},
	} {
		if _, _, code := runCmd(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestBenchReceive runs a tiny receive: plausible numbers, the page-cache
// growth in the JSON, and nothing left in --dir afterwards.
func TestBenchReceive(t *testing.T) {
	dir := t.TempDir()
	out, errOut, code := runCmd(t, "bench", "--direction", "receive", "--total", "8MiB", "--methods", "copy,uring",
		"--rounds", "2", "--dir", dir, "--json")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if es, _ := os.ReadDir(dir); len(es) > 0 {
		t.Errorf("left in --dir: %v", es)
	}
	var rep struct {
		Config  map[string]any   `json:"config"`
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	want := map[string]any{
		"direction": "receive", "total": float64(8 << 20), "rounds": float64(2), "conns": float64(1),
		"sync": false, "dir": dir, "file_size": float64(0), "source": "memory",
	}
	for k, v := range want {
		if rep.Config[k] != v {
			t.Errorf("config.%s = %v, want %v", k, rep.Config[k], v)
		}
	}
	if len(rep.Results) != 2 || rep.Results[0]["method"] != "copy" || rep.Results[1]["method"] != "uring" {
		t.Fatalf("results %v", rep.Results)
	}
	for _, r := range rep.Results {
		if r["available"] != true || r["status"] != "ok" {
			t.Errorf("%v: %v: %v", r["method"], r["status"], r["error"])
			continue
		}
		for _, k := range []string{"gbps_median", "gbps_min", "gbps_max", "receiver_cpu_s_per_gib", "cpu_s_per_gib"} {
			if v, ok := r[k].(float64); !ok || v <= 0 {
				t.Errorf("%v: %s = %v", r["method"], k, r[k])
			}
		}
		if _, ok := r["cache_growth_mib"].(float64); !ok {
			t.Errorf("%v: cache_growth_mib = %v", r["method"], r["cache_growth_mib"])
		}
		rounds, _ := r["rounds"].([]any)
		if len(rounds) != 2 {
			t.Fatalf("%v: %d rounds", r["method"], len(rounds))
		}
		for _, x := range rounds {
			rd, _ := x.(map[string]any)
			if _, ok := rd["cache_growth_mib"].(float64); !ok || rd["bytes"] != float64(8<<20) {
				t.Errorf("%v: round %v", r["method"], rd)
			}
		}
	}
}

// TestBenchReceiveHuman: the table has the page-cache column, and --sync is
// said.
func TestBenchReceiveHuman(t *testing.T) {
	dir := t.TempDir()
	out, errOut, code := runCmd(t, "bench", "--direction", "receive", "--total", "4MiB", "--methods", "uring+dontcache,copy",
		"--rounds", "1", "--sync", "--dir", dir)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, s := range []string{"CACHE MiB", "RECV CPU s/GiB", "uring+dontcache", "copy", "fdatasync", "Receive:"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	if es, _ := os.ReadDir(dir); len(es) > 0 {
		t.Errorf("left in --dir: %v", es)
	}
}
