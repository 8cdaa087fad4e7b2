package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sendfile2/sendfile2/internal/testutil"
)

func TestMain(m *testing.M) {
	limitDescriptors() // in a child process of TestFDLimit
	if asCommand() {
		return
	}
	testutil.Main(m)
}

func runCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestCheckJSON(t *testing.T) {
	out, errOut, code := runCmd(t, "check", "--json", "--rounds", "1",
		"--method", "copy", "--method", "sendfile", "--method", "auto")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var rep struct {
		Methods []map[string]any `json:"methods"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if len(rep.Methods) != 3 {
		t.Fatalf("%d entries, want 3", len(rep.Methods))
	}
	for _, e := range rep.Methods {
		for _, k := range []string{"method", "expected_safe", "available", "bytes_checked", "corrupted_bytes", "verdict"} {
			if _, ok := e[k]; !ok {
				t.Errorf("entry %v lacks %q", e["method"], k)
			}
		}
	}
	want := map[string]string{"copy": "safe", "sendfile": "unsafe", "auto": "safe"}
	for _, e := range rep.Methods {
		m := e["method"].(string)
		if e["verdict"] != want[m] {
			t.Errorf("%s: verdict %v, want %s", m, e["verdict"], want[m])
		}
		if e["bytes_checked"].(float64) <= 0 {
			t.Errorf("%s: nothing checked", m)
		}
	}
	if r := rep.Methods[2]["resolved"]; r == nil || r == "" || r == "auto" {
		t.Errorf("auto resolved to %v", r)
	}
}

func TestCheckHuman(t *testing.T) {
	out, _, code := runCmd(t, "check", "--rounds", "1", "--method", "splice")
	if code != 0 || !strings.Contains(out, "splice") || !strings.Contains(out, "unsafe") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}

func TestCheckBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"check", "--method", "bogus"},
		{"check", "--rounds", "0"},
		{"check", "extra"},
		{"nosuchcommand"},
	} {
		if _, _, code := runCmd(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestProbeJSON(t *testing.T) {
	out, errOut, code := runCmd(t, "probe", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var f map[string]any
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"io_uring", "send_zc", "sendmsg_zc", "zc_report_usage", "read_fixed", "dontcache", "msg_zerocopy"} {
		if _, ok := f[k].(bool); !ok {
			t.Errorf("%q missing or not a boolean", k)
		}
	}
	if k, _ := f["kernel"].(string); k == "" {
		t.Error("no kernel")
	}
}

// The command names itself once before an error, whether the error comes
// from the library (which prefixes its own) or from a flag.
func TestErrorPrefixOnce(t *testing.T) {
	for _, args := range [][]string{
		{"check", "--method", "bogus"},
		{"serve", "--method", "bogus"},
		{"bench", "--methods", "bogus"},
		{"serve", "--max-upload", "xx"},
		{"check", "--rounds", "x"},
	} {
		_, errOut, code := runCmd(t, args...)
		if code != 2 || !strings.HasPrefix(errOut, "sendfile2: ") || strings.Count(errOut, "sendfile2:") != 1 {
			t.Errorf("%v: exit %d, stderr %q: want exit 2 and one \"sendfile2:\"", args, code, errOut)
		}
	}
}
