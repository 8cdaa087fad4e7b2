package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/html"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/cmd/sendfile2/internal/bench"
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

func TestParseDirection(t *testing.T) {
	for _, d := range []bench.Direction{bench.Send, bench.Receive} {
		if got, err := bench.ParseDirection(string(d)); err != nil || got != d {
			t.Errorf("ParseDirection(%q) = %q, %v", d, got, err)
		}
	}
	for _, bad := range []string{"", "up", "Receive", "recv"} {
		if _, err := bench.ParseDirection(bad); err == nil {
			t.Errorf("ParseDirection(%q): no error", bad)
		}
	}
	if !slices.Equal(bench.DefaultMethods(bench.Send), bench.AllMethods()) ||
		!slices.Equal(bench.DefaultMethods(bench.Receive), bench.ReceiveMethods()) {
		t.Error("DefaultMethods")
	}
	for _, m := range bench.ReceiveMethods() {
		if _, ok := bench.ReceiveNote(m); !ok {
			t.Errorf("%s is a default receive method without a receive of its own", m)
		}
	}
}

func TestParseMeminfo(t *testing.T) {
	const meminfo = "MemTotal:       24684008 kB\nMemFree:        20061400 kB\nCached:          2414564 kB\nSwapCached:            0 kB\nHugePages_Total:       0\n"
	for _, tc := range []struct {
		field string
		want  int64
		ok    bool
	}{
		{"Cached", 2414564 << 10, true},
		{"SwapCached", 0, true},
		{"MemTotal", 24684008 << 10, true},
		{"Dirty", 0, false},           // absent
		{"HugePages_Total", 0, false}, // no unit: not a size in kB
		{"Cach", 0, false},
	} {
		got, err := bench.ParseMeminfo([]byte(meminfo), tc.field)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%s: %d, %v; want %d, ok %v", tc.field, got, err, tc.want, tc.ok)
		}
	}
	for _, bad := range []string{"Cached: -4 kB\n", "Cached: 12 MB\n", "Cached: x kB\n", "Cached:\n", "Cached: 99999999999999999999 kB\n", "Cached:9007199254740992 kB"} {
		if n, err := bench.ParseMeminfo([]byte(bad), "Cached"); err == nil {
			t.Errorf("%q: %d, no error", bad, n)
		}
	}
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Skip(err)
	}
	if n, err := bench.ParseMeminfo(data, "Cached"); err != nil || n < 0 {
		t.Errorf("this machine's /proc/meminfo: %d, %v", n, err)
	}
}

// FuzzParseMeminfo: any text gives a size that is a whole number of KiB,
// not negative, or an error; never a panic.
func FuzzParseMeminfo(f *testing.F) {
	f.Add([]byte("MemTotal: 1 kB\nCached:          2414564 kB\n"))
	f.Add([]byte("Cached: 0 kB"))
	f.Add([]byte("Cached:\t12\tkB\n"))
	f.Add([]byte("Cached: 9007199254740993 kB\n"))
	f.Add([]byte("Cached:9007199254740992 kB")) // 1<<53 KiB: 1<<63 bytes
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := bench.ParseMeminfo(data, "Cached")
		if err == nil && (n < 0 || n%1024 != 0) {
			t.Fatalf("%q: %d", data, n)
		}
	})
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
		"direction":                {Direction: "up"},
		"dontcache entry on send":  {Methods: []sendfile2.Method{bench.URingDontCache}},
		"sync on send":             {Sync: true},
		"receive with a file size": {Direction: bench.Receive, FileSize: 1 << 20},
		"receive with a send size": {Direction: bench.Receive, SendSize: 1 << 20},
		"receive from a file":      {Direction: bench.Receive, Source: bench.FromFile},
		"receive with a receiver":  {Direction: bench.Receive, Receiver: bench.Read},
		"receive, no rounds":       {Direction: bench.Receive, Rounds: -1},
		"buffer size not pages":    {BufferSize: 5000},
		"buffer size negative":     {BufferSize: -4096},
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
		"direction": isStr, "sync": isBool, "dir": isStr,
	})
	receive := config["direction"] == string(bench.Receive)
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
			"receiver_cpu_s_per_gib": isNumOrNull, "cache_growth_mib": isNumOrNull,
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
			// A number with Receive, null with Send.
			isCache := func(v any) bool { return isNum(v) == receive && (receive || v == nil) }
			if !isCache(r["cache_growth_mib"]) {
				t.Errorf("%s (%v): cache_growth_mib = %v with direction %v", where, r["method"], r["cache_growth_mib"], config["direction"])
			}
			for j, y := range r["rounds"].([]any) {
				rd, _ := y.(map[string]any)
				check(fmt.Sprintf("%s.rounds[%d]", where, j), rd, map[string]func(any) bool{
					"round": isNum, "bytes": isNum, "sends": isNum, "seconds": isNum, "gbps": isNum,
					"cpu_user_s": isNum, "cpu_sys_s": isNum, "cpu_s_per_gib": isNum,
					"receiver_cpu_s": isNum, "receiver_cpu_user_s": isNum, "receiver_cpu_sys_s": isNum,
					"copied_fraction": isNumOrNull, "cache_growth_mib": isCache,
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

// TestBlockingReceiver runs the receiver that waits in read(2) over several
// connections: a round passes only when each connection's receiver counted
// every byte sent to it, and the table names the receiver.
func TestBlockingReceiver(t *testing.T) {
	cfg := tiny(sendfile2.Copy, sendfile2.Sendfile)
	cfg.Receiver = bench.Block
	cfg.Conns = 2
	cfg.Total = 8<<20 + 3
	rep := run(t, cfg)
	for _, r := range rep.Results {
		plausible(t, r, 2)
		for _, rd := range r.Rounds {
			if rd.Bytes != cfg.Total {
				t.Errorf("%s: round of %d bytes", r.Method, rd.Bytes)
			}
		}
	}
	var b strings.Builder
	if err := bench.WriteTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "blocking in read(2)") {
		t.Errorf("the table does not name the receiver:\n%s", b.String())
	}
}

// tinyReceive is a receive run small enough for a test, into files under dir.
func tinyReceive(dir string, methods ...sendfile2.Method) bench.Config {
	return bench.Config{Settings: bench.Settings{
		Direction: bench.Receive,
		Methods:   methods,
		Total:     8 << 20,
		Rounds:    2,
		Dir:       dir,
	}}
}

// filesUnder lists the regular files under dir, at any depth.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestReceiveRun receives with copy, uring and uring+dontcache, over two
// connections: the numbers are there and plausible, the page-cache growth
// is reported, each round's files are gone before the next round starts, and
// the directory is empty afterwards. It asserts no timing, and no amount of
// page cache: other processes change Cached too.
func TestReceiveRun(t *testing.T) {
	dir := t.TempDir()
	cfg := tinyReceive(dir, sendfile2.Copy, sendfile2.URing, bench.URingDontCache)
	cfg.Conns = 2
	var planned int64
	var received atomic.Int64
	var left []string
	cfg.Planned = func(n int64) { planned = n }
	cfg.Sent = func(n int64) { received.Add(n) }
	cfg.Started = func(int, sendfile2.Method) { left = append(left, filesUnder(t, dir)...) }
	rep := run(t, cfg)
	if len(left) > 0 {
		t.Errorf("files left from a previous round when the next started: %v", left)
	}
	if f := filesUnder(t, dir); len(f) > 0 {
		t.Errorf("files left after the run: %v", f)
	}
	if es, _ := os.ReadDir(dir); len(es) > 0 {
		t.Errorf("left in the directory: %v", es)
	}
	c := rep.Config
	if c.Direction != bench.Receive || c.Source != bench.FromMemory || c.FileSize != 0 || c.SendSize != 0 || c.Receiver != "" || c.Dir != dir {
		t.Errorf("config %+v", c)
	}
	if rep.Machine.FileSystem == "" {
		t.Errorf("machine %+v: no file system", rep.Machine)
	}
	if len(rep.Results) != 3 {
		t.Fatalf("results %+v", rep.Results)
	}
	ran := 0
	for _, r := range rep.Results {
		if r.Status == bench.StatusUnavailable && r.Method != sendfile2.Copy {
			testutil.RequireFeature(t, "io_uring", "6.0", false, errors.New(r.Error))
		}
		plausible(t, r, 2)
		ran++
		if !r.Safe {
			t.Errorf("%s: a receive reported unsafe", r.Method)
		}
		if r.CacheGrowthMiB == nil || r.ReceiverCPUSPerGiB == nil || *r.ReceiverCPUSPerGiB <= 0 {
			t.Errorf("%s: cache growth %v, receiver CPU %v", r.Method, r.CacheGrowthMiB, r.ReceiverCPUSPerGiB)
		}
		if r.CopiedFraction != nil || r.GBpsVsSendfile != nil {
			t.Errorf("%s: a copied fraction or a ratio against sendfile, which did not run", r.Method)
		}
		want := r.Method
		if want == bench.URingDontCache {
			want = sendfile2.URing
		}
		for _, rd := range r.Rounds {
			if rd.CacheGrowthMiB == nil || math.IsNaN(*rd.CacheGrowthMiB) {
				t.Errorf("%s round %d: cache growth %v", r.Method, rd.Round, rd.CacheGrowthMiB)
			}
			if rd.Sends != 2 { // one Receive per connection
				t.Errorf("%s round %d: %d receives, want 2", r.Method, rd.Round, rd.Sends)
			}
			if rd.BytesByMethod[want] != 8<<20 && r.Fallbacks == 0 {
				t.Errorf("%s round %d: bytes by method %v", r.Method, rd.Round, rd.BytesByMethod)
			}
			if rd.ReceiverCPU <= 0 || rd.ReceiverCPU != rd.ReceiverCPUUser+rd.ReceiverCPUSys {
				t.Errorf("%s round %d: receiver CPU %v = %v + %v", r.Method, rd.Round, rd.ReceiverCPU, rd.ReceiverCPUUser, rd.ReceiverCPUSys)
			}
		}
	}
	if planned != int64(ran)*2*8<<20 || received.Load() != planned {
		t.Errorf("planned %d bytes, Sent reported %d", planned, received.Load())
	}
	var table bytes.Buffer
	if err := bench.WriteTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CACHE MiB", "RECV CPU s/GiB", "uring+dontcache", "Receive:", "RWF_DONTCACHE"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if strings.Contains(table.String(), "unsafe") {
		t.Errorf("a receive table says unsafe:\n%s", table.String())
	}
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	checkJSONShape(t, data, []string{"copy", "uring", "uring+dontcache"})
	var page bytes.Buffer
	if err := bench.WriteHTML(&page, rep); err != nil {
		t.Fatal(err)
	}
	checkHTML(t, page.Bytes(), []string{"copy", "uring+dontcache"})
	if !strings.Contains(page.String(), "Page-cache growth") {
		t.Error("the page has no page-cache chart")
	}
}

// TestReceiveSync: with Sync every Receive ends with fdatasync; the run says
// so. Methods without a receive of their own are unavailable, with the
// reason.
func TestReceiveSync(t *testing.T) {
	dir := t.TempDir()
	cfg := tinyReceive(dir, sendfile2.Splice, sendfile2.Auto, sendfile2.Sendfile, sendfile2.URingMmap, sendfile2.MsgZC)
	cfg.Sync, cfg.Rounds = true, 1
	rep := run(t, cfg)
	if !rep.Config.Sync {
		t.Error("config: sync is not set")
	}
	for _, r := range rep.Results {
		if _, ok := bench.ReceiveNote(r.Method); !ok {
			if r.Available || r.Status != bench.StatusUnavailable || !strings.Contains(r.Error, "receive") {
				t.Errorf("%s: should be unavailable for receive, with the reason: %+v", r.Method, r)
			}
			continue
		}
		plausible(t, r, 1)
		if !strings.Contains(r.Source, "fdatasync") {
			t.Errorf("%s: source %q does not mention the fdatasync", r.Method, r.Source)
		}
	}
	if r := result(t, rep, sendfile2.Auto); r.Resolved == "" || r.Resolved == sendfile2.Auto {
		t.Errorf("auto resolved to %q", r.Resolved)
	}
	if es, _ := os.ReadDir(dir); len(es) > 0 {
		t.Errorf("left in the directory: %v", es)
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

// TestWriteHTMLReceive: a receive report charts the page cache, also when it
// shrank.
func TestWriteHTMLReceive(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	rep := sampleReport()
	rep.Config.Direction = bench.Receive
	rep.Results[0].CacheGrowthMiB = f(1024)
	rep.Results[1].Method, rep.Results[1].CacheGrowthMiB = bench.URingDontCache, f(-3)
	var page bytes.Buffer
	if err := bench.WriteHTML(&page, rep); err != nil {
		t.Fatal(err)
	}
	checkHTML(t, page.Bytes(), []string{"uring", "uring+dontcache", "Page-cache growth", "direction receive"})
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
	for _, tc := range []struct {
		netns     bool
		direction bench.Direction
	}{{false, bench.Send}, {true, bench.Send}, {false, bench.Receive}, {true, bench.Receive}} {
		netns := tc.netns
		t.Run(fmt.Sprintf("netns=%v/direction=%s", netns, tc.direction), func(t *testing.T) {
			if netns {
				requireNetns(t)
			}
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			stop := errors.New("interrupted")
			cfg := tiny(sendfile2.Copy)
			if tc.direction == bench.Receive {
				cfg = tinyReceive("", sendfile2.Copy)
			}
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
