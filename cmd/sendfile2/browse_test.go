//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"
	"golang.org/x/sys/unix"
)

// hostileNames are the names of the files (and, ending in "/", the
// directories) of hostileTree: markup that would run if a listing did not
// escape it, quotes, URL delimiters, a newline, bytes that are not UTF-8, a
// name of 255 bytes.
var hostileNames = []string{
	"<img src=x onerror=window.pwned=1>",
	"<svg onload=window.pwned=2>",
	`"><img src=x onerror=window.pwned=3>`,
	"<script>window.pwned=4<",
	"javascript:window.pwned=5",
	`it's "quoted"`,
	"a&b&amp;c",
	"100%",
	"%41%2e%2e",
	"what?x=1",
	"#hash",
	"new\nline",
	"bad\xff\xfe.txt",
	"a b  c",
	"été ☃.txt",
	"a:b",
	"-dash",
	strings.Repeat("L", 251) + ".txt",
	"plain.txt",
	"dir <b>&amp;?#%/",
	"sub/",
}

// hostileTree makes the files of hostileNames under dir, each with content
// naming it, and what a listing leaves out: a FIFO, a symbolic link out of
// the root, a file with two hard links, an upload in progress. It returns
// the content of each file by name.
func hostileTree(t *testing.T) (dir string, content map[string]string) {
	t.Helper()
	base := t.TempDir()
	dir = filepath.Join(base, "www")
	must(t, os.Mkdir(dir, 0o755))
	content = map[string]string{}
	for i, n := range hostileNames {
		if d, ok := strings.CutSuffix(n, "/"); ok {
			must(t, os.Mkdir(filepath.Join(dir, d), 0o755))
			continue
		}
		content[n] = fmt.Sprintf("content of file %d", i)
		must(t, os.WriteFile(filepath.Join(dir, n), []byte(content[n]), 0o644))
	}
	must(t, os.WriteFile(filepath.Join(dir, "sub", "inner.txt"), []byte("inner"), 0o644))
	must(t, os.WriteFile(filepath.Join(base, "secret"), []byte(secretMarker()), 0o644))
	must(t, unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(t, os.Symlink("../secret", filepath.Join(dir, "escape")))
	must(t, os.Link(filepath.Join(base, "secret"), filepath.Join(dir, "hard")))
	must(t, os.WriteFile(filepath.Join(dir, tempPrefix+"1234"), []byte("half"), 0o644))
	must(t, os.Symlink("plain.txt", filepath.Join(dir, "inlink"))) // stays in the root: listed
	content["inlink"] = content["plain.txt"]
	return dir, content
}

// listed is what a listing shows of the names of hostileTree, in its order:
// directories first, then by name; bytes that are not UTF-8 shown as U+FFFD.
func listed() []string {
	var dirs, files []string
	for _, n := range append(slices.Clone(hostileNames), "inlink") {
		if strings.HasSuffix(n, "/") {
			dirs = append(dirs, n)
		} else {
			files = append(files, n)
		}
	}
	slices.Sort(dirs)
	slices.Sort(files)
	var out []string
	for _, n := range append(dirs, files...) {
		out = append(out, validUTF8(n))
	}
	return out
}

// TestServeBrowse: --browse lists a directory without index.html, in HTML
// and JSON, with every hostile name as text and every link leading to its
// file; what serve would not serve is not listed; off, it is 404.
func TestServeBrowse(t *testing.T) {
	requireCurl(t)
	dir, content := hostileTree(t)
	c := newClient(t)
	off := startServe(t, dir, nil)
	if resp, _ := do(t, c, "GET", off.url+"/"); resp.StatusCode != 404 {
		t.Errorf("without --browse: %d, want 404", resp.StatusCode)
	}
	ts := startServe(t, dir, func(o *serveOptions) { o.http.browse = true })
	base, _ := url.Parse(ts.url + "/")

	// follow checks that href, relative to the listing, leads to name.
	follow := func(t *testing.T, href, name string) {
		t.Helper()
		u, err := base.Parse(href)
		if err != nil {
			t.Errorf("%q: link %q: %v", name, href, err)
			return
		}
		resp, body := do(t, c, "GET", u.String())
		switch want, ok := content[name]; {
		case !ok && resp.StatusCode != 200: // a directory: its listing
			t.Errorf("%q: link %q: %d", name, href, resp.StatusCode)
		case ok && (resp.StatusCode != 200 || string(body) != want):
			t.Errorf("%q: link %q: %d, %q; want %q", name, href, resp.StatusCode, body, want)
		}
	}

	t.Run("HTML", func(t *testing.T) {
		resp, body := do(t, c, "GET", ts.url+"/")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("Content-Security-Policy %q", csp)
		}
		doc, err := html.Parse(bytes.NewReader(body))
		must(t, err)
		var texts, hrefs []string
		for n := range doc.Descendants() {
			if n.Type != html.ElementNode {
				continue
			}
			switch n.Data {
			case "script", "img", "svg", "iframe", "object":
				t.Errorf("the listing has a <%s> element", n.Data)
			case "a":
				var text strings.Builder
				for c := range n.Descendants() {
					if c.Type == html.TextNode {
						text.WriteString(c.Data)
					} else {
						t.Errorf("a link holds a <%s> element", c.Data)
					}
				}
				texts = append(texts, text.String())
				for _, a := range n.Attr {
					if a.Key == "href" {
						hrefs = append(hrefs, a.Val)
					}
				}
			}
			for _, a := range n.Attr {
				if strings.HasPrefix(a.Key, "on") {
					t.Errorf("<%s> has the attribute %s", n.Data, a.Key)
				}
			}
		}
		if want := listed(); !slices.Equal(texts, want) {
			t.Fatalf("the links read\n%q\nwant\n%q", texts, want)
		}
		names := append(slices.Clone(hostileNames), "inlink")
		for i, text := range texts {
			// The name whose display this is.
			j := slices.IndexFunc(names, func(n string) bool { return validUTF8(n) == text })
			follow(t, hrefs[i], strings.TrimSuffix(names[j], "/"))
		}
		for _, hidden := range []string{"fifo", "escape", "hard", tempPrefix} {
			if bytes.Contains(body, []byte(hidden)) {
				t.Errorf("the listing names %s", hidden)
			}
		}
		if out := curl(t, ts.url+"/"); !bytes.Contains(out, []byte("&lt;img src=x onerror=window.pwned=1&gt;")) {
			t.Errorf("curl: the escaped name is missing from\n%s", out)
		}
	})

	t.Run("JSON", func(t *testing.T) {
		for _, accept := range []string{"application/json", "application/json, text/html;q=0.9", "application/*", "application/json, */*"} {
			resp, body := do(t, c, "GET", ts.url+"/", "Accept", accept)
			var l struct {
				Path    string      `json:"path"`
				Entries []listEntry `json:"entries"`
			}
			if err := json.Unmarshal(body, &l); err != nil || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("Accept %q: Content-Type %q, %v:\n%s", accept, resp.Header.Get("Content-Type"), err, body)
			}
			var names []string
			for _, e := range l.Entries {
				n := e.Name
				if e.Dir {
					n += "/"
				}
				names = append(names, n)
			}
			if want := listed(); l.Path != "/" || !slices.Equal(names, want) {
				t.Fatalf("path %q, names\n%q\nwant\n%q", l.Path, names, want)
			}
			if accept != "application/json" {
				continue
			}
			for _, e := range l.Entries {
				// The name may have lost bytes; the link has them all.
				i := slices.IndexFunc(hostileNames, func(n string) bool { return validUTF8(n) == e.Name })
				name := e.Name
				if i >= 0 {
					name = strings.TrimSuffix(hostileNames[i], "/")
				}
				follow(t, e.Href, name)
				if want := int64(len(content[name])); !e.Dir && e.Size != want || e.MTime.IsZero() {
					t.Errorf("%q: size %d (want %d), mtime %v", name, e.Size, want, e.MTime)
				}
			}
		}
		for _, accept := range []string{"text/html, application/json;q=0.5", "*/*", "application/json;q=0", ""} {
			resp, _ := do(t, c, "GET", ts.url+"/", "Accept", accept)
			if resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
				t.Errorf("Accept %q: Content-Type %q, want HTML", accept, resp.Header.Get("Content-Type"))
			}
		}
		if out := curl(t, "-H", "Accept: application/json", ts.url+"/sub/"); !bytes.Contains(out, []byte(`"name":"inner.txt"`)) {
			t.Errorf("curl, JSON of sub/: %s", out)
		}
	})

	t.Run("HEAD", func(t *testing.T) {
		get, body := do(t, c, "GET", ts.url+"/")
		head, hbody := do(t, c, "HEAD", ts.url+"/")
		if head.StatusCode != 200 || len(hbody) != 0 || head.ContentLength != int64(len(body)) || get.ContentLength != int64(len(body)) {
			t.Errorf("HEAD: %d, Content-Length %d, %d body bytes; GET has %d", head.StatusCode, head.ContentLength, len(hbody), len(body))
		}
	})

	t.Run("redirect", func(t *testing.T) {
		for _, d := range []string{"sub", "dir <b>&amp;?#%"} {
			u := ts.url + "/" + url.PathEscape(d)
			resp, _ := do(t, c, "GET", u)
			loc, err := url.Parse(u)
			must(t, err)
			if loc, err = loc.Parse(resp.Header.Get("Location")); err != nil || resp.StatusCode != http.StatusMovedPermanently || loc.Path != "/"+d+"/" {
				t.Errorf("GET %s: %d to %q (%v), want 301 to /%s/", u, resp.StatusCode, resp.Header.Get("Location"), loc, d)
			}
		}
	})

	t.Run("index.html", func(t *testing.T) {
		must(t, os.WriteFile(filepath.Join(dir, "sub", "index.html"), []byte("<p>index</p>"), 0o644))
		defer os.Remove(filepath.Join(dir, "sub", "index.html"))
		if resp, body := do(t, c, "GET", ts.url+"/sub/"); resp.StatusCode != 200 || string(body) != "<p>index</p>" {
			t.Errorf("a directory with index.html: %d, %q", resp.StatusCode, body)
		}
	})
}

func TestWantsJSON(t *testing.T) {
	for accept, want := range map[string]bool{
		"application/json":                  true,
		"application/json;charset=utf-8":    true,
		"APPLICATION/JSON":                  true,
		"application/*":                     true,
		"application/json, */*;q=0.1":       true,
		"text/html;q=0.9, application/json": true,
		"":                                  false,
		"*/*":                               false,
		"text/html":                         false,
		"application/json;q=0":              false,
		"text/html, application/json;q=0.9": false,
		"text/*, application/json;q=0.5":    false,
		"application/json;q=2":              false,
	} {
		if got := wantsJSON([]string{accept}); got != want {
			t.Errorf("wantsJSON(%q) = %v, want %v", accept, got, want)
		}
	}
}

// TestServeBrowseBound: a listing stops at maxListEntries entries and says
// so, in JSON and in HTML; a directory within the bound is listed whole.
func TestServeBrowseBound(t *testing.T) {
	defer func(n int) { maxListEntries = n }(maxListEntries)
	maxListEntries = 5
	dir := t.TempDir()
	must(t, os.Mkdir(filepath.Join(dir, "big"), 0o755))
	must(t, os.Mkdir(filepath.Join(dir, "small"), 0o755))
	for i := range 8 {
		must(t, os.WriteFile(filepath.Join(dir, "big", fmt.Sprintf("f%d", i)), nil, 0o644))
	}
	for i := range 5 {
		must(t, os.WriteFile(filepath.Join(dir, "small", fmt.Sprintf("f%d", i)), nil, 0o644))
	}
	ts := startServe(t, dir, func(o *serveOptions) { o.http.browse = true })
	c := newClient(t)
	for _, v := range []struct {
		dir       string
		n         int
		truncated bool
	}{{"big", 5, true}, {"small", 5, false}} {
		resp, body := do(t, c, "GET", ts.url+"/"+v.dir+"/", "Accept", "application/json")
		var l struct {
			Entries   []listEntry `json:"entries"`
			Truncated *bool       `json:"truncated"`
		}
		if err := json.Unmarshal(body, &l); resp.StatusCode != 200 || err != nil {
			t.Fatalf("%s: status %d, %v: %s", v.dir, resp.StatusCode, err, body)
		}
		if len(l.Entries) != v.n || l.Truncated == nil || *l.Truncated != v.truncated {
			t.Errorf("%s: %d entries, truncated %v; want %d, %v: %s", v.dir, len(l.Entries), l.Truncated, v.n, v.truncated, body)
		}
		_, body = do(t, c, "GET", ts.url+"/"+v.dir+"/")
		if got := strings.Contains(string(body), "listing was cut"); got != v.truncated {
			t.Errorf("%s: the HTML says the listing was cut: %v, want %v", v.dir, got, v.truncated)
		}
	}
}
