// Package browsertest opens the pages that sendfile2 writes or serves (the
// directory listings of serve, the report of bench) in a real headless
// Chromium, driven with github.com/chromedp/chromedp, for the tests. Only
// tests import it.
//
// The browser is Debian's chromium package (apt-get install -y chromium;
// .ci/run installs it). Without it a test skips, unless the environment
// variable CI is set: there a missing browser is a broken setup, and the
// test fails.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// timeout bounds each thing a Page does.
const timeout = 60 * time.Second

// Page is one tab of a headless Chromium of its own. It records what the
// page does that a test checks: uncaught exceptions, console errors and
// error entries of the browser log, and the URL of every request.
type Page struct {
	t   testing.TB
	ctx context.Context

	mu       sync.Mutex
	errors   []string
	requests []string
}

// Option changes how Open opens a page.
type Option func(*options)

type options struct{ offline bool }

// Offline cuts the page off the network: any request to it fails, and is
// still recorded.
func Offline() Option { return func(o *options) { o.offline = true } }

// chromium returns the browser's path, or skips or fails the test.
func chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const why = "no chromium to test the pages in a browser: apt-get install -y chromium (.ci/run installs it)"
	if os.Getenv("CI") != "" {
		t.Fatal(why + "; CI is set, so this is a failure, not a skip")
	}
	t.Skip(why)
	return ""
}

// Open starts a headless Chromium, opens url in it and waits for the page's
// load event. The browser ends with the test.
func Open(t testing.TB, url string, opts ...Option) *Page {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	alloc := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-gpu", true),
	)
	if os.Geteuid() == 0 {
		alloc = append(alloc, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), alloc...)
	p := &Page{t: t}
	// The tab lives as long as the context of its first action: that one
	// has no timeout; the others have theirs.
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithListener(p.record))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for the browser to exit
	})
	p.ctx = ctx
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("browser: %v", err)
	}
	if _, err := chromedp.Call(ctx, runtime.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("browser: %v", err)
	}
	if _, err := chromedp.Call(ctx, log.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("browser: %v", err)
	}
	if o.offline {
		if _, err := chromedp.Call(ctx, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{
			MatchedNetworkConditions: []*network.Conditions{{Offline: true, DownloadThroughput: -1, UploadThroughput: -1}},
		}); err != nil {
			t.Fatalf("browser: offline: %v", err)
		}
	}
	p.Navigate(url)
	return p
}

// record is the tab's listener: it runs on chromedp's reading goroutine.
func (p *Page) record(ev any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		p.errors = append(p.errors, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, msg))
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError {
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value))
			}
			p.errors = append(p.errors, "console.error: "+strings.Join(args, " "))
		}
	case *log.EventEntryAdded:
		if ev.Entry.Level == log.EntryLevelError {
			p.errors = append(p.errors, fmt.Sprintf("%s error: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	case *network.EventRequestWillBeSent:
		p.requests = append(p.requests, ev.Request.URL)
	}
}

// Errors returns the page's uncaught exceptions, console errors and the
// browser log's errors so far.
func (p *Page) Errors() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.errors)
}

// Requests returns the URLs the page has requested so far, its own first.
func (p *Page) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.requests)
}

// Eval evaluates the JavaScript expression js in the page and returns its
// value (a promise is awaited), decoded into T.
func Eval[T any](p *Page, js string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("browser: evaluate %s: %v", js, err)
	}
	return v
}

// Click clicks the element that the CSS selector sel finds first, as a user
// would with the mouse, and waits for the page it leads to to load.
func (p *Page) Click(sel string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		p.t.Fatalf("browser: click %s: %v", sel, err)
	}
}

// Navigate opens url in the page's tab and waits for its load event.
func (p *Page) Navigate(url string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		p.t.Fatalf("browser: open %s: %v", url, err)
	}
}
