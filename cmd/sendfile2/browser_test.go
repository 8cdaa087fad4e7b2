//go:build linux

package main

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/sendfile2/sendfile2/cmd/sendfile2/internal/browsertest"
)

// TestBrowseInBrowser opens a listing of hostile names in Chromium: no name
// runs as markup or script (window.pwned stays unset), each shows as its
// text, and clicking a link opens that file.
func TestBrowseInBrowser(t *testing.T) {
	dir, content := hostileTree(t)
	ts := startServe(t, dir, func(o *serveOptions) { o.http.browse = true })
	p := browsertest.Open(t, ts.url+"/")

	if pwned := browsertest.Eval[string](p, "typeof window.pwned"); pwned != "undefined" {
		t.Errorf("a name ran as script: window.pwned is %s", browsertest.Eval[string](p, "String(window.pwned)"))
	}
	if n := browsertest.Eval[int](p, "document.querySelectorAll('img, svg, script, iframe').length"); n != 0 {
		t.Errorf("%d elements made of names", n)
	}
	texts := browsertest.Eval[[]string](p, "Array.from(document.querySelectorAll('tbody a'), a => a.textContent)")
	if want := listed(); !slices.Equal(texts, want) {
		t.Fatalf("the links read\n%q\nwant\n%q", texts, want)
	}
	if errs := p.Errors(); len(errs) > 0 {
		t.Errorf("the page logged errors: %q", errs)
	}

	// Each file's link, clicked, opens that file.
	names := append(slices.Clone(hostileNames), "inlink")
	for i, text := range texts {
		name := names[slices.IndexFunc(names, func(n string) bool { return validUTF8(n) == text })]
		want, isFile := content[name]
		if !isFile {
			continue
		}
		func() {
			p.Navigate(ts.url + "/")
			p.Click(fmt.Sprintf("tbody tr:nth-child(%d) a", i+1))
			if got := browsertest.Eval[string](p, "document.body.innerText"); strings.TrimSpace(got) != want {
				t.Errorf("the link of %.40q opened a page that reads %q, want %q", name, got, want)
			}
			path := browsertest.Eval[string](p, "location.pathname")
			if got, err := url.PathUnescape(path); err != nil || got != "/"+name {
				t.Errorf("the link of %.40q opened %s (%q)", name, path, got)
			}
			if q := browsertest.Eval[string](p, "location.search + location.hash"); q != "" {
				t.Errorf("the name %.40q became a query or fragment: %q", name, q)
			}
		}()
	}
}
