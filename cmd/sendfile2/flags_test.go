package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/cmd/sendfile2/internal/bench"
)

// TestBadFlagValues: a bad flag value, of any command, exits with status 2
// and an error that names the flag, before the command does anything (check
// must not report corrupted data for a bad --size).
func TestBadFlagValues(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		flag string
		says string
	}{
		{[]string{"check", "--size", "-5"}, "--size", "negative"},
		{[]string{"check", "--size", "-1"}, "--size", "negative"},
		{[]string{"check", "--size", "1.5"}, "--size", "not a whole number"},
		{[]string{"check", "--size", "0"}, "--size", "at least 1"},
		{[]string{"check", "--size", "1GiB"}, "--size", "at most 64MiB"},
		{[]string{"check", "--size", "lots"}, "--size", "byte count"},
		{[]string{"check", "--rounds", "0"}, "--rounds", "at least 1"},
		{[]string{"check", "--rounds", "many"}, "--rounds", "want a whole number"},
		{[]string{"check", "--rounds", "1.5"}, "--rounds", "want a whole number"},
		{[]string{"check", "--timeout", "-1s"}, "--timeout", "1s or more"},
		{[]string{"check", "--timeout", "0"}, "--timeout", "1s or more"},
		{[]string{"check", "--timeout", "1ns"}, "--timeout", "1s or more"},
		{[]string{"check", "--timeout", "soon"}, "--timeout", ""},
		{[]string{"check", "--method", "bogus"}, "--method", `unknown method "bogus"`},
		{[]string{"check", "--method", "copy,copy"}, "--method", "twice"},
		{[]string{"check", "--method", "copy,"}, "--method", `unknown method ""`},
		{[]string{"check", "--method", "uring+dontcache"}, "--method", "unknown method"},
		{[]string{"serve", "--max-upload", "1.5", dir}, "--max-upload", "not a whole number"},
		{[]string{"serve", "--max-upload", "-1", dir}, "--max-upload", "negative"},
		{[]string{"serve", "--max-upload", "9EiB", dir}, "--max-upload", "more than"},
		{[]string{"serve", "--buffer-size", "1000", dir}, "--buffer-size", "at least 4KiB"},
		{[]string{"serve", "--buffer-size", "6KiB", dir}, "--buffer-size", "multiple of 4KiB"},
		{[]string{"serve", "--buffer-size", "2GiB", dir}, "--buffer-size", "at most 1GiB"},
		{[]string{"serve", "--buffers", "-1", dir}, "--buffers", "at least 0"},
		{[]string{"serve", "--max-conns", "0", dir}, "--max-conns", "at least 1"},
		{[]string{"serve", "--method", "bogus", dir}, "--method", `unknown method "bogus": want auto, uring, uring-mmap, msgzc, copy, sendfile or splice`},
		{[]string{"serve", "--log-format", "xml", dir}, "--log-format", `unknown log format "xml": want text or json`},
		{[]string{"serve", "--max-conns", "lots", dir}, "--max-conns", "want a whole number"},
		{[]string{"serve", "--shutdown-timeout", "-1s", dir}, "--shutdown-timeout", "0 or more"},
		{[]string{"serve", "--idle-timeout", "later", dir}, "--idle-timeout", ""},
		{[]string{"serve", "--addr", "127.0.0.1:99999", dir}, "--addr", "invalid port"},
		{[]string{"serve", "--addr", "nohost", dir}, "--addr", ""},
		{[]string{"serve", "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:99999", dir}, "--metrics-addr", "invalid port"},
		{[]string{"bench", "--total", "0"}, "--total", "at least 1"},
		{[]string{"bench", "--total", "-1"}, "--total", "negative"},
		{[]string{"bench", "--file-size", "1.5"}, "--file-size", "not a whole number"},
		{[]string{"bench", "--send-size", "x"}, "--send-size", "byte count"},
		{[]string{"bench", "--buffer-size", "5000"}, "--buffer-size", "multiple of 4KiB"},
		{[]string{"bench", "--file-size", "1MiB", "--send-size", "2MiB"}, "--send-size", "larger than --file-size"},
		{[]string{"bench", "--conns", "0"}, "--conns", "at least 1"},
		{[]string{"bench", "--conns", "5000"}, "--conns", "1 to 4096"},
		{[]string{"bench", "--rounds", "0"}, "--rounds", "at least 1"},
		{[]string{"bench", "--rounds", "-3"}, "--rounds", "at least 1"},
		{[]string{"bench", "--direction", "up"}, "--direction", "want send or receive"},
		{[]string{"bench", "--source", "tape"}, "--source", "want file or memory"},
		{[]string{"bench", "--receiver", "nobody"}, "--receiver", "want read, discard or block"},
		{[]string{"bench", "--methods", "copy,bogus"}, "--methods", `unknown method "bogus"`},
		{[]string{"bench", "--methods", "uring+dontcache"}, "--methods", "receive"},
		{[]string{"bench", "--direction", "receive", "--file-size", "1MiB"}, "--file-size", "send flag"},
		{[]string{"bench", "--sync"}, "--sync", "receive"},
		{[]string{"bench", "--dir", "/nonexistent"}, "--dir", "no such file"},
		{[]string{"bench", "--dir", "/dev/null"}, "--dir", "not a directory"},
		{[]string{"bench", "--report", "/nonexistent/r.html"}, "--report", "no such file"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errOut, code := runCmd(t, tc.args...)
			if code != 2 || out != "" {
				t.Fatalf("exit %d, stdout %q, want 2 and nothing", code, out)
			}
			if !strings.Contains(errOut, tc.flag) || !strings.Contains(errOut, tc.says) {
				t.Errorf("stderr %q, want it to name %s and say %q", errOut, tc.flag, tc.says)
			}
			for _, bad := range []string{"strconv", "FAIL", "corrupted"} {
				if strings.Contains(errOut, bad) {
					t.Errorf("stderr %q says %q", errOut, bad)
				}
			}
		})
	}
}

// TestSizeFlags: every byte count of every command takes the same forms.
func TestSizeFlags(t *testing.T) {
	root := rootCommand()
	n := 0
	for _, c := range root.Commands() {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if !strings.Contains(f.Name, "size") && !strings.Contains(f.Name, "upload") && f.Name != "total" {
				return
			}
			if f.Value.Type() == "bool" {
				return
			}
			n++
			if f.Value.Type() != "size" {
				t.Errorf("%s --%s is a %s flag, want a size", c.Name(), f.Name, f.Value.Type())
				return
			}
			for in, want := range map[string]string{"64KiB": "64KiB", "1MiB": "1MiB", "1048576": "1MiB", "1 MiB": "1MiB",
				"0.5MiB": "512KiB", "8mib": "8MiB", "16384": "16KiB"} {
				if err := f.Value.Set(in); err != nil || f.Value.String() != want {
					t.Errorf("%s --%s %s: %v, reads back %q, want %q", c.Name(), f.Name, in, err, f.Value, want)
				}
			}
		})
	}
	if n < 7 {
		t.Errorf("%d size flags found, want the 7 of serve, check and bench at least", n)
	}
}

// TestCheckSize: check --size takes units, as serve and bench do.
func TestCheckSize(t *testing.T) {
	out, errOut, code := runCmd(t, "check", "--json", "--size", "1MiB", "--rounds", "1", "--method", "copy")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep struct {
		Size    int `json:"size"`
		Methods []struct {
			BytesChecked int64  `json:"bytes_checked"`
			Verdict      string `json:"verdict"`
		} `json:"methods"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Size != 1<<20 || len(rep.Methods) != 1 || rep.Methods[0].Verdict != "safe" || rep.Methods[0].BytesChecked < 1<<20 {
		t.Errorf("report %+v", rep)
	}
}

// TestMethodLists: check --method and bench --methods take the same form:
// the flag repeated, comma-separated lists, or both; the same names, auto
// among them; and the same error for a name they do not know.
func TestMethodLists(t *testing.T) {
	want := []sendfile2.Method{sendfile2.Copy, sendfile2.Sendfile, sendfile2.Auto}
	for _, args := range [][]string{
		{"copy,sendfile,auto"},
		{"copy", "sendfile", "auto"},
		{"copy, sendfile", "auto"},
	} {
		for name, valid := range map[string][]sendfile2.Method{"method": checkMethods(), "methods": benchMethods()} {
			var got []sendfile2.Method
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			methodsVar(fs, &got, name, valid, "")
			var argv []string
			for _, a := range args {
				argv = append(argv, "--"+name, a)
			}
			if err := fs.Parse(argv); err != nil || !slices.Equal(got, want) {
				t.Errorf("%v: %v, %v; want %v", argv, got, err, want)
			}
		}
	}
	_, checkErr, _ := runCmd(t, "check", "--method", "copy", "--method", "bogus")
	_, benchErr, _ := runCmd(t, "bench", "--methods", "copy", "--methods", "bogus")
	const says = `unknown method "bogus": want auto, uring, uring-mmap, msgzc, copy, sendfile`
	if !strings.Contains(checkErr, says) || !strings.Contains(benchErr, says) {
		t.Errorf("check: %q\nbench: %q\nwant both to say %q", checkErr, benchErr, says)
	}
	for _, m := range checkMethods() {
		if !slices.Contains(benchMethods(), m) {
			t.Errorf("bench does not take %s", m)
		}
	}
	if !slices.Equal(benchMethods()[len(checkMethods()):], []sendfile2.Method{bench.URingDontCache}) {
		t.Errorf("bench takes %v besides check's methods, want only %s", benchMethods()[len(checkMethods()):], bench.URingDontCache)
	}
}

// FuzzMethodsFlag: a value the flag takes names each of its elements once,
// in order, each a method that bench knows, and set again joined with
// commas it gives the same list.
func FuzzMethodsFlag(f *testing.F) {
	for _, s := range []string{"", " ", "copy, sendfile,auto", "uring+dontcache,uring", "copy,copy", "copy,",
		",copy", "copy,,uring", "COPY", "uring+dontcache", "copy+dontcache", "msgzc , uring-mmap"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var ms []sendfile2.Method
		v := &methodsFlag{p: &ms, valid: benchMethods()}
		if err := v.Set(s); err != nil {
			return
		}
		names := strings.Split(s, ",")
		if len(names) != len(ms) {
			t.Fatalf("Set(%q) = %v: %d names", s, ms, len(names))
		}
		for i, m := range ms {
			if !slices.Contains(benchMethods(), m) || slices.Index(ms, m) != i || string(m) != strings.TrimSpace(names[i]) {
				t.Fatalf("Set(%q) = %v: element %d", s, ms, i)
			}
		}
		var again []sendfile2.Method
		if err := (&methodsFlag{p: &again, valid: benchMethods()}).Set(v.String()); err != nil || !slices.Equal(again, ms) {
			t.Fatalf("Set(%q) = %v, but Set(%q) = %v, %v", s, ms, v.String(), again, err)
		}
	})
}
