package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/html"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/internal/bench"
	"github.com/sendfile2/sendfile2/internal/testutil"
)

func TestMain(m *testing.M) {
	bench.ServeIfReceiver() // this binary is also the receiver Run starts
	testutil.Main(m)
}

// tiny is a run small enough for a test.
func tiny(methods ...sendfile2.Method) bench.Config {
	return bench.Config{Settings: bench.Settings{
		Methods:  methods,
		Total:    8 << 20,
		FileSize: 1 << 20,
		Rounds:   2,
	}}
}

func run(t *testing.T, cfg bench.Config) *bench.Report {
	t.Helper()
	rep, err := bench.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func result(t *testing.T, rep *bench.Report, m sendfile2.Method) bench.Result {
	t.Helper()
	for _, r := range rep.Results {
		if r.Method == m {
			return r
		}
	}
	t.Fatalf("no result for %s", m)
	return bench.Result{}
}

// plausible checks that r ran every round and measured something.
func plausible(t *testing.T, r bench.Result, rounds int) {
	t.Helper()
	if r.Status != bench.StatusOK || !r.Available {
		t.Fatalf("%s: status %s: %s", r.Method, r.Status, r.Error)
	}
	if len(r.Rounds) != rounds {
		t.Fatalf("%s: %d rounds, want %d", r.Method, len(r.Rounds), rounds)
	}
	for _, p := range []*float64{r.GBpsMedian, r.GBpsMin, r.GBpsMax, r.CPUSPerGiB} {
		if p == nil || *p <= 0 {
			t.Errorf("%s: a measurement is missing or not positive: %+v", r.Method, r)
		}
	}
	if *r.GBpsMin > *r.GBpsMedian || *r.GBpsMedian > *r.GBpsMax {
		t.Errorf("%s: min %v, median %v, max %v out of order", r.Method, *r.GBpsMin, *r.GBpsMedian, *r.GBpsMax)
	}
	for _, rd := range r.Rounds {
		if rd.Bytes <= 0 || rd.Seconds <= 0 || rd.GBps <= 0 || rd.Sends <= 0 {
			t.Errorf("%s: implausible round %+v", r.Method, rd)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"1000", 1000},
		{"1e6", 1000000},
		{"64KiB", 64 << 10},
		{"1MiB", 1 << 20},
		{"1GiB", 1 << 30},
		{"1.5GiB", 3 << 29},
		{"64MiB", 64 << 20},
		{"64KB", 64000},
		{"64 KiB", 64 << 10},
		{"1mib", 1 << 20},
		{"4096B", 4096},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := bench.ParseSize(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "0", "-1", "1.5", "abc", "1XiB", "1e300", "NaN", "0.1KiB"} {
		t.Run("bad/"+bad, func(t *testing.T) {
			if n, err := bench.ParseSize(bad); err == nil {
				t.Fatalf("ParseSize(%q) = %d, want an error", bad, n)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	for _, n := range []int64{1, 1000, 4096, 64 << 10, 1 << 20, 3 << 29, 1 << 30, 1e6, 1<<40 + 1} {
		s := bench.FormatSize(n)
		if got, err := bench.ParseSize(s); err != nil || got != n {
			t.Errorf("ParseSize(FormatSize(%d) = %q) = %d, %v", n, s, got, err)
		}
	}
	if s := bench.FormatSize(1 << 30); s != "1GiB" {
		t.Errorf("FormatSize(1<<30) = %q", s)
	}
}

func TestParseMethods(t *testing.T) {
	ms, err := bench.ParseMethods("")
	if err != nil || !slices.Equal(ms, append(sendfile2.Methods(), sendfile2.Auto)) {
		t.Fatalf("default: %v, %v", ms, err)
	}
	ms, err = bench.ParseMethods("copy, sendfile,auto")
	if err != nil || !slices.Equal(ms, []sendfile2.Method{sendfile2.Copy, sendfile2.Sendfile, sendfile2.Auto}) {
		t.Fatalf("got %v, %v", ms, err)
	}
	for _, bad := range []string{"copy,bogus", "copy,copy", "copy,"} {
		if _, err := bench.ParseMethods(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestBadSettings(t *testing.T) {
	for name, s := range map[string]bench.Settings{
		"send size over file size": {FileSize: 1 << 20, SendSize: 2 << 20},
		"fewer bytes than conns":   {Total: 3, Conns: 4},
		"negative rounds":          {Rounds: -1},
		"source":                   {Source: "tape"},
		"receiver":                 {Receiver: "ignore"},
		"method":                   {Methods: []sendfile2.Method{"bogus"}},
		"method twice":             {Methods: []sendfile2.Method{"copy", "copy"}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := bench.Run(context.Background(), bench.Config{Settings: s}); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// TestTinyRun runs two methods briefly and checks that the numbers are there
// and plausible. It asserts no timing.
func TestTinyRun(t *testing.T) {
	rep := run(t, tiny(sendfile2.Copy, sendfile2.Sendfile))
	if len(rep.Results) != 2 || rep.Results[0].Method != sendfile2.Copy || rep.Results[1].Method != sendfile2.Sendfile {
		t.Fatalf("results %+v", rep.Results)
	}
	for _, r := range rep.Results {
		plausible(t, r, 2)
		if r.CopiedFraction != nil {
			t.Errorf("%s reports a copied fraction %v: it has no zero-copy report", r.Method, *r.CopiedFraction)
		}
		if r.GBpsVsSendfile == nil || r.CPUVsSendfile == nil {
			t.Errorf("%s: no ratio against sendfile", r.Method)
		}
		for _, rd := range r.Rounds {
			if rd.Sends != 8 { // 8 MiB in sends of the whole 1 MiB file
				t.Errorf("%s round %d: %d sends, want 8", r.Method, rd.Round, rd.Sends)
			}
			if rd.BytesByMethod[r.Method] != 8<<20 {
				t.Errorf("%s round %d: bytes by method %v", r.Method, rd.Round, rd.BytesByMethod)
			}
		}
	}
	if r := result(t, rep, sendfile2.Sendfile); *r.GBpsVsSendfile != 1 || r.Safe {
		t.Errorf("sendfile against itself: %v, safe %v", *r.GBpsVsSendfile, r.Safe)
	}
	m := rep.Machine
	if m.Kernel == "" || m.CPUs < 1 || !strings.HasPrefix(m.Go, "go") || m.Date == "" || m.FileSystem == "" {
		t.Errorf("machine %+v", m)
	}
	var table bytes.Buffer
	if err := bench.WriteTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"METHOD", "copy", "sendfile (unsafe)", "1.00x"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

// TestInterleaving records the order in which (round, method) pairs run:
// A B C A B C, never A A B B C C.
func TestInterleaving(t *testing.T) {
	type step struct {
		round int
		m     sendfile2.Method
	}
	var got []step
	var planned int64
	var sent atomic.Int64
	cfg := tiny(sendfile2.Copy, sendfile2.Sendfile, sendfile2.Splice)
	cfg.Total, cfg.Rounds = 2<<20, 3
	cfg.Started = func(round int, m sendfile2.Method) { got = append(got, step{round, m}) }
	cfg.Planned = func(n int64) { planned = n }
	cfg.Sent = func(n int64) { sent.Add(n) }
	run(t, cfg)
	var want []step
	for round := 1; round <= 3; round++ {
		for _, m := range cfg.Methods {
			want = append(want, step{round, m})
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if planned != 3*3*2<<20 || sent.Load() != planned {
		t.Errorf("planned %d bytes, Sent reported %d", planned, sent.Load())
	}
}

// TestJSONShape checks every field of the report as `--json` prints it,
// with a method that is unavailable for the source.
func TestJSONShape(t *testing.T) {
	cfg := tiny(sendfile2.Copy, sendfile2.Sendfile)
	cfg.Source = bench.FromMemory
	cfg.Receiver = bench.Discard
	cfg.SendSize = 64 << 10
	data, err := json.Marshal(run(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	checkJSONShape(t, data, []string{"copy", "sendfile"})
}

// checkJSONShape checks a report's JSON: every field present and of the
// right type; methods names the results in order.
func checkJSONShape(t *testing.T, data []byte, methods []string) {
	t.Helper()
	var top map[string]any
	if err := json.Unmarshal(data, &top); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, data)
	}
	isNum := func(v any) bool { _, ok := v.(float64); return ok }
	isNumOrNull := func(v any) bool { return v == nil || isNum(v) }
	isStr := func(v any) bool { _, ok := v.(string); return ok }
	isBool := func(v any) bool { _, ok := v.(bool); return ok }
	check := func(where string, obj map[string]any, fields map[string]func(any) bool) {
		t.Helper()
		for k, ok := range fields {
			v, present := obj[k]
			if !present {
				t.Errorf("%s: no %q", where, k)
			} else if !ok(v) {
				t.Errorf("%s: %q is %T %v", where, k, v, v)
			}
		}
	}
	machine, _ := top["machine"].(map[string]any)
	check("machine", machine, map[string]func(any) bool{"kernel": isStr, "cpus": isNum, "go": isStr, "date": isStr})
	config, _ := top["config"].(map[string]any)
	check("config", config, map[string]func(any) bool{
		"methods": func(v any) bool { _, ok := v.([]any); return ok },
		"total":   isNum, "file_size": isNum, "send_size": isNum, "conns": isNum, "rounds": isNum,
		"source": isStr, "receiver": isStr, "netns": isBool, "json": isBool, "report": isStr,
	})
	results, _ := top["results"].([]any)
	if len(results) != len(methods) {
		t.Fatalf("%d results, want %d", len(results), len(methods))
	}
	for i, x := range results {
		r, _ := x.(map[string]any)
		where := fmt.Sprintf("results[%d]", i)
		check(where, r, map[string]func(any) bool{
			"method": isStr, "available": isBool, "status": isStr, "safe": isBool, "source": isStr,
			"gbps_median": isNumOrNull, "gbps_min": isNumOrNull, "gbps_max": isNumOrNull,
			"cpu_s_per_gib": isNumOrNull, "copied_fraction": isNumOrNull,
			"gbps_vs_sendfile": isNumOrNull, "cpu_vs_sendfile": isNumOrNull,
			"rounds": func(v any) bool { _, ok := v.([]any); return ok },
		})
		if r["method"] != methods[i] {
			t.Errorf("%s is %v, want %s", where, r["method"], methods[i])
		}
		if r["available"] == true {
			for _, k := range []string{"gbps_median", "gbps_min", "gbps_max", "cpu_s_per_gib"} {
				if v, _ := r[k].(float64); v <= 0 {
					t.Errorf("%s (%v): %s = %v", where, r["method"], k, r[k])
				}
			}
			for j, y := range r["rounds"].([]any) {
				rd, _ := y.(map[string]any)
				check(fmt.Sprintf("%s.rounds[%d]", where, j), rd, map[string]func(any) bool{
					"round": isNum, "bytes": isNum, "sends": isNum, "seconds": isNum, "gbps": isNum,
					"cpu_user_s": isNum, "cpu_sys_s": isNum, "cpu_s_per_gib": isNum,
					"receiver_cpu_s": isNum, "copied_fraction": isNumOrNull,
				})
			}
		} else if e, _ := r["error"].(string); e == "" {
			t.Errorf("%s (%v) is unavailable without saying why", where, r["method"])
		}
	}
}

// TestMemorySource checks which methods send from memory, and that those
// that cannot say why instead of failing.
func TestMemorySource(t *testing.T) {
	cfg := tiny(sendfile2.Methods()...)
	cfg.Methods = append(cfg.Methods, sendfile2.Auto)
	cfg.Source = bench.FromMemory
	cfg.SendSize = 64 << 10
	cfg.Rounds = 1
	rep := run(t, cfg)
	for _, r := range rep.Results {
		_, canMemory := bench.MemoryNote(r.Method)
		switch {
		case !canMemory:
			if r.Available || r.Status != bench.StatusUnavailable || !strings.Contains(r.Error, "memory") {
				t.Errorf("%s: from memory it should be unavailable, with the reason: %+v", r.Method, r)
			}
		case r.Status == bench.StatusUnavailable && r.Method == sendfile2.URing:
			testutil.RequireFeature(t, "io_uring IORING_OP_SEND_ZC", "6.0", false, errors.New(r.Error))
		default:
			plausible(t, r, 1)
			if !strings.Contains(r.Source, "anonymous") {
				t.Errorf("%s: source %q", r.Method, r.Source)
			}
		}
	}
	if r := result(t, rep, sendfile2.URing); r.Available && r.CopiedFraction == nil {
		t.Error("uring from memory reported no zero-copy usage")
	}
}

// TestReceiverAndConns exercises the discarding receiver, several
// connections with a remainder, and sends smaller than the file.
func TestReceiverAndConns(t *testing.T) {
	cfg := tiny(sendfile2.Copy, sendfile2.Auto)
	cfg.Receiver = bench.Discard
	cfg.Conns = 3
	cfg.Total = 8<<20 + 5
	cfg.SendSize = 300 << 10
	rep := run(t, cfg)
	for _, r := range rep.Results {
		plausible(t, r, 2)
		for _, rd := range r.Rounds {
			if rd.Bytes != cfg.Total {
				t.Errorf("%s: round of %d bytes", r.Method, rd.Bytes)
			}
			var n int64
			for _, k := range rd.BytesByMethod {
				n += k
			}
			if n != cfg.Total {
				t.Errorf("%s: bytes by method %v add up to %d", r.Method, rd.BytesByMethod, n)
			}
		}
	}
	if r := result(t, rep, sendfile2.Auto); r.Resolved == "" || r.Resolved == sendfile2.Auto {
		t.Errorf("auto resolved to %q", r.Resolved)
	}
}

func sampleReport() *bench.Report {
	f := func(v float64) *float64 { return &v }
	return &bench.Report{
		Machine: bench.Machine{Kernel: "6.18.0", CPUs: 2, Go: "go1.26", Date: "2026-11-24T00:00:00Z", Transport: "tcp over loopback"},
		Config:  bench.Settings{Total: 1 << 30, FileSize: 64 << 20, SendSize: 64 << 20, Conns: 1, Rounds: 2, Source: bench.FromFile, Receiver: bench.Read},
		Results: []bench.Result{
			{Method: "uring", Safe: true, Available: true, Status: "ok", GBpsMedian: f(1.3), GBpsMin: f(1.2), GBpsMax: f(1.4), CPUSPerGiB: f(0.5), CopiedFraction: f(1),
				Rounds: []bench.Round{{Round: 1, GBps: 1.2}, {Round: 2, GBps: 1.4}}},
			{Method: "sendfile", Available: true, Status: "ok", GBpsMedian: f(2.1), GBpsMin: f(2), GBpsMax: f(2.2), CPUSPerGiB: f(0.49),
				Rounds: []bench.Round{{Round: 1, GBps: 2}, {Round: 2, GBps: 2.2}}},
			{Method: "msgzc", Safe: true, Status: "unavailable", Error: "not here <&>"},
		},
	}
}

// checkHTML checks a report page: well-formed HTML, the method names, an
// inline chart, and no URL that a browser would fetch.
func checkHTML(t *testing.T, page []byte, methods []string) {
	t.Helper()
	s := string(page)
	if !strings.HasPrefix(s, "<!DOCTYPE html>") {
		t.Error("no doctype")
	}
	// Well formed: every element closed, in order (void elements aside).
	void := map[string]bool{"meta": true, "br": true, "img": true, "link": true, "hr": true, "input": true}
	var stack []string
	svgs := 0
	z := html.NewTokenizer(bytes.NewReader(page))
	for done := false; !done; {
		switch z.Next() {
		case html.ErrorToken:
			if z.Err() != io.EOF {
				t.Fatalf("tokenizer: %v", z.Err())
			}
			done = true
		case html.StartTagToken:
			name, _ := z.TagName()
			if n := string(name); !void[n] {
				stack = append(stack, n)
				if n == "svg" {
					svgs++
				}
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			if len(stack) == 0 || stack[len(stack)-1] != string(name) {
				t.Fatalf("</%s> closes %v", name, stack)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) != 0 {
		t.Errorf("unclosed elements %v", stack)
	}
	if _, err := html.Parse(bytes.NewReader(page)); err != nil {
		t.Error(err)
	}
	if svgs == 0 {
		t.Error("no inline svg chart")
	}
	for _, m := range methods {
		if !strings.Contains(s, m) {
			t.Errorf("the page does not name %s", m)
		}
	}
	if u := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`).FindString(s); u != "" {
		t.Errorf("the page names a URL: %s", u)
	}
	for _, attr := range []string{"src=", "href=", "@import", "url("} {
		if strings.Contains(s, attr) {
			t.Errorf("the page has %s", attr)
		}
	}
}

func TestWriteHTML(t *testing.T) {
	var page bytes.Buffer
	if err := bench.WriteHTML(&page, sampleReport()); err != nil {
		t.Fatal(err)
	}
	checkHTML(t, page.Bytes(), []string{"uring", "sendfile", "msgzc"})
	if strings.Contains(page.String(), "<&>") {
		t.Error("the error text is not escaped")
	}
	// No method ran: still a page.
	rep := sampleReport()
	rep.Results = rep.Results[2:]
	page.Reset()
	if err := bench.WriteHTML(&page, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page.String(), "nothing to chart") {
		t.Error("an empty report says nothing")
	}
}

func TestWriteHTMLFromRun(t *testing.T) {
	cfg := tiny(sendfile2.Copy, sendfile2.Sendfile)
	cfg.Rounds = 1
	var page bytes.Buffer
	if err := bench.WriteHTML(&page, run(t, cfg)); err != nil {
		t.Fatal(err)
	}
	checkHTML(t, page.Bytes(), []string{"copy", "sendfile"})
}

// netnsNames lists the network namespaces that runs of this process created
// and have not removed.
func netnsNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, dir := range []string{"/run/netns", "/var/run/netns"} {
		es, _ := os.ReadDir(dir)
		for _, e := range es {
			if strings.HasPrefix(e.Name(), fmt.Sprintf("sf2bench-%d-", os.Getpid())) {
				names = append(names, e.Name())
			}
		}
	}
	return names
}

func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("--netns needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("--netns needs iproute2's ip")
	}
}

func TestNetns(t *testing.T) {
	requireNetns(t)
	cfg := tiny(sendfile2.Copy, sendfile2.Sendfile)
	cfg.Netns = true
	cfg.Conns = 2
	rep := run(t, cfg)
	if !strings.Contains(rep.Machine.Transport, "veth") {
		t.Errorf("transport %q", rep.Machine.Transport)
	}
	for _, r := range rep.Results {
		plausible(t, r, 2)
	}
	if n := netnsNames(t); len(n) > 0 {
		t.Errorf("namespaces left behind: %v", n)
	}
}

// TestCancel stops a run in its second round: Run returns the cause and
// leaves nothing behind (namespaces here; file descriptors, goroutines and
// the receiver process for the leak check in TestMain).
func TestCancel(t *testing.T) {
	for _, netns := range []bool{false, true} {
		t.Run(fmt.Sprintf("netns=%v", netns), func(t *testing.T) {
			if netns {
				requireNetns(t)
			}
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			stop := errors.New("interrupted")
			cfg := tiny(sendfile2.Copy)
			cfg.Netns = netns
			cfg.Rounds = 3
			cfg.Sent = func(int64) {}
			cfg.Started = func(round int, _ sendfile2.Method) {
				if round == 2 {
					cancel(stop)
				}
			}
			dir := t.TempDir()
			cfg.Dir = dir
			rep, err := bench.Run(ctx, cfg)
			if !errors.Is(err, stop) || rep != nil {
				t.Fatalf("got %v, %v; want the cause", rep, err)
			}
			if es, _ := os.ReadDir(dir); len(es) > 0 {
				t.Errorf("left in the temporary directory: %v", es)
			}
			if n := netnsNames(t); len(n) > 0 {
				t.Errorf("namespaces left behind: %v", n)
			}
		})
	}
}
