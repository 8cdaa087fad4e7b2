package bench_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sendfile2/sendfile2/cmd/sendfile2/internal/bench"
	"github.com/sendfile2/sendfile2/cmd/sendfile2/internal/browsertest"
)

// TestReportInBrowser opens the page of `bench --report` in Chromium, cut
// off the network: it renders its charts (each drawn, with a size) and its
// table, with no error and no request but for the page itself.
func TestReportInBrowser(t *testing.T) {
	var page bytes.Buffer
	if err := bench.WriteHTML(&page, sampleReport()); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "report.html")
	if err := os.WriteFile(file, page.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	url := "file://" + file
	p := browsertest.Open(t, url, browsertest.Offline())

	// throughput, CPU, and the rounds (sampleReport has two).
	sizes := browsertest.Eval[[][2]float64](p, `Array.from(document.querySelectorAll('figure > svg'), s => { const r = s.getBoundingClientRect(); return [r.width, r.height] })`)
	if len(sizes) != 3 {
		t.Errorf("%d charts, want 3", len(sizes))
	}
	for i, s := range sizes {
		if s[0] < 200 || s[1] < 100 {
			t.Errorf("chart %d is drawn %vx%v pixels", i+1, s[0], s[1])
		}
	}
	if n := browsertest.Eval[int](p, `Array.from(document.querySelectorAll('figure > svg')).filter(s => s.querySelectorAll('path, rect, text').length > 3).length`); n != len(sizes) {
		t.Errorf("%d of %d charts have marks and text", n, len(sizes))
	}
	table := browsertest.Eval[string](p, `document.querySelector('pre').innerText`)
	for _, want := range []string{"uring", "sendfile", "msgzc", "not here <&>"} {
		if !strings.Contains(table, want) {
			t.Errorf("the table does not read %q:\n%s", want, table)
		}
	}
	if errs := p.Errors(); len(errs) > 0 {
		t.Errorf("the page logged errors: %q", errs)
	}
	for _, r := range p.Requests() {
		if r != url {
			t.Errorf("the page requested %s: it would not read the same offline", r)
		}
	}
}
