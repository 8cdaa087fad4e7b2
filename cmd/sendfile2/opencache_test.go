//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestFileCacheRevalidates: a request for a name takes the file kept open
// for it only while nothing about the file has changed; after each change
// that could matter (a write, a rename over it, a mode change, a second
// link, its removal, a symbolic link to outside DIR in its place) the next
// request opens and checks the name again, and answers as without the
// cache. Each step says whether it must be a hit or a miss, and what the
// answer is.
func TestFileCacheRevalidates(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "www")
	must(t, os.Mkdir(dir, 0o755))
	outside := filepath.Join(base, "secret.txt")
	marker := secretMarker()
	must(t, os.WriteFile(outside, []byte(marker), 0o644))
	name := filepath.Join(dir, "f.txt")
	must(t, os.WriteFile(name, []byte("one"), 0o644))

	for _, lean := range []bool{true, false} {
		t.Run(map[bool]string{true: "lean", false: "net/http"}[lean], func(t *testing.T) {
			must(t, os.WriteFile(name, []byte("one"), 0o644))
			ts := startServe(t, dir, func(o *serveOptions) { o.lean = lean })
			c := newClient(t)
			lookups := func() (hits, misses float64) {
				m := scrape(t, c, ts.metricsURL)
				hits, _ = total(m, "sendfile2_http_open_file_lookups_total", `result="hit"`)
				misses, _ = total(m, "sendfile2_http_open_file_lookups_total", `result="miss"`)
				return hits, misses
			}
			step := func(what string, change func(), wantHit bool, wantStatus int, wantBody string) {
				t.Helper()
				if change != nil {
					change()
				}
				h0, m0 := lookups()
				resp, body := do(t, c, "GET", ts.url+"/f.txt")
				h1, m1 := lookups()
				if resp.StatusCode != wantStatus || wantBody != "" && string(body) != wantBody {
					t.Errorf("%s: %d %q, want %d %q", what, resp.StatusCode, body, wantStatus, wantBody)
				}
				if strings.Contains(string(body), marker) {
					t.Errorf("%s: the file outside DIR was served", what)
				}
				if hit := h1-h0 == 1 && m1 == m0; hit != wantHit {
					t.Errorf("%s: hits %v -> %v, misses %v -> %v; want a hit: %v", what, h0, h1, m0, m1, wantHit)
				}
			}
			step("first request", nil, false, 200, "one")
			step("again", nil, true, 200, "one")
			step("again", nil, true, 200, "one")
			step("written in place", func() { must(t, os.WriteFile(name, []byte("two"), 0o644)) }, false, 200, "two")
			step("again", nil, true, 200, "two")
			step("renamed over", func() {
				must(t, os.WriteFile(name+".new", []byte("three"), 0o644))
				must(t, os.Rename(name+".new", name))
			}, false, 200, "three")
			step("again", nil, true, 200, "three")
			step("mode changed", func() { must(t, os.Chmod(name, 0o600)) }, false, 200, "three")
			step("again", nil, true, 200, "three")
			step("a second link", func() { must(t, os.Link(name, filepath.Join(base, "other"))) }, false, 403, "")
			step("still linked", nil, false, 403, "")
			step("the second link removed", func() { must(t, os.Remove(filepath.Join(base, "other"))) }, false, 200, "three")
			step("again", nil, true, 200, "three")
			step("removed", func() { must(t, os.Remove(name)) }, false, 404, "")
			step("a link to outside DIR in its place", func() { must(t, os.Symlink(outside, name)) }, false, 404, "")
			step("a hard link to outside DIR in its place", func() {
				must(t, os.Remove(name))
				must(t, os.Link(outside, name))
			}, false, 403, "")
			must(t, os.Remove(name))
			must(t, ts.stop())
		})
	}
}

// TestFileCacheBounds: the cache holds at most max files, closes the least
// recently taken first and those idle too long, keeps a file that a
// caller holds open until it is given back, and caches nothing once closed.
func TestFileCacheBounds(t *testing.T) {
	dir := t.TempDir()
	open := func(name string) (*os.File, os.FileInfo) {
		t.Helper()
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, []byte(name), 0o644))
		f, err := os.Open(p)
		must(t, err)
		fi, err := f.Stat()
		must(t, err)
		return f, fi
	}
	isOpen := func(f *os.File) bool {
		_, err := f.Stat()
		if err != nil && !errors.Is(err, os.ErrClosed) {
			t.Fatal(err)
		}
		return err == nil
	}
	c := newFileCache(2, time.Hour)
	fa, fia := open("a")
	a := c.put("a", fa, fia) // taken
	fb, fib := open("b")
	c.put("b", fb, fib).Close()
	if got := c.get("b", fib, false); got == nil {
		t.Fatal("b not cached")
	} else {
		got.Close()
	}
	fc, fic := open("c")
	c.put("c", fc, fic).Close() // a, least recently taken, leaves
	if c.len() != 2 || c.get("a", fia, false) != nil {
		t.Fatalf("after a third file: %d cached, a still there", c.len())
	}
	if !isOpen(fa) {
		t.Fatal("a was closed while taken")
	}
	a.Close()
	if isOpen(fa) {
		t.Error("a not closed when given back after it left the cache")
	}
	if !isOpen(fb) || !isOpen(fc) {
		t.Fatal("b or c closed while cached")
	}

	// A file whose ID no longer matches leaves at the look.
	fib2, err := os.Stat(filepath.Join(dir, "b"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "b"), []byte("bb"), 0o644))
	if fib2, err = os.Stat(filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	if c.get("b", fib2, false) != nil || isOpen(fb) {
		t.Error("b, written since it was cached, was taken or kept")
	}

	// Idle files close.
	c.mu.Lock()
	c.expire(time.Now().Add(time.Hour))
	c.mu.Unlock()
	if c.len() != 0 || isOpen(fc) {
		t.Errorf("after the idle time: %d cached, c open %v", c.len(), isOpen(fc))
	}

	// Closed: nothing more is cached, and what a caller holds closes when
	// given back.
	fd, fid := open("d")
	d := c.put("d", fd, fid)
	c.close()
	if c.len() != 0 || !isOpen(fd) {
		t.Fatalf("after close: %d cached, d open %v", c.len(), isOpen(fd))
	}
	d.Close()
	if isOpen(fd) {
		t.Error("d not closed when given back after close")
	}
	fe, fie := open("e")
	e := c.put("e", fe, fie)
	if c.len() != 0 || e.c != nil {
		t.Error("a file was cached after close")
	}
	e.Close()
	if isOpen(fe) {
		t.Error("an uncached file not closed")
	}
}

// TestFileCacheOff: --open-files 0 keeps nothing open between requests.
func TestFileCacheOff(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "f.txt"), []byte("x"), 0o644))
	ts := startServe(t, dir, func(o *serveOptions) { o.openFiles = 0 })
	c := newClient(t)
	for range 3 {
		if resp, body := do(t, c, "GET", ts.url+"/f.txt"); resp.StatusCode != 200 || string(body) != "x" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	m := scrape(t, c, ts.metricsURL)
	if n, ok := total(m, "sendfile2_http_open_file_lookups_total"); ok {
		t.Errorf("lookups exported without a cache: %v", n)
	}
}

// TestFileCacheLinkRace: the hard-link race of TestHardlinkRace against a
// name whose own file is served, and kept open, between the attacks. A
// local user who can write in DIR moves the file aside, links a file from
// outside DIR in its place, unlinks that link and moves the file back, non-
// stop, while clients GET it (some with a range, which net/http answers).
// The guard of fstat alone (the baseline) is raced as without the cache;
// with the guard no response carries the outside file, though many take
// the file kept open. Below DIR (the guard's full check), and for a
// precompressed sibling (NAME.gz, which the lean path probes and net/http
// serves).
func TestFileCacheLinkRace(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "www")
	must(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	marker := []byte(secretMarker())
	outside := filepath.Join(base, "secret.txt")
	must(t, os.WriteFile(outside, marker, 0o644))
	own := []byte("the file's own bytes")
	for _, tc := range []struct {
		name, target, urlPath, acceptEncoding string
	}{
		{"below DIR", "sub/x", "/sub/x", ""},
		{"precompressed", "y.gz", "/y", "gzip"},
	} {
		target := filepath.Join(dir, tc.target)
		must(t, os.WriteFile(target, own, 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "y"), own, 0o644))
		race := func(t *testing.T, d time.Duration, stopAtLeak bool) (requests, hits, leaks int64) {
			ts := startServe(t, dir, func(o *serveOptions) { o.accessLog = false; o.http.precompressed = "gzip" })
			ctx, cancel := context.WithTimeout(t.Context(), d)
			defer cancel()
			var wg sync.WaitGroup
			wg.Go(func() {
				for ctx.Err() == nil {
					os.Rename(target, target+".aside")
					os.Link(outside, target)
					os.Remove(target)
					os.Rename(target+".aside", target)
				}
			})
			c := newClient(t)
			c.Transport.(*http.Transport).MaxIdleConnsPerHost = 8
			for i := range 8 {
				wg.Go(func() {
					for ctx.Err() == nil {
						req, _ := http.NewRequestWithContext(ctx, "GET", ts.url+tc.urlPath, nil)
						if tc.acceptEncoding != "" {
							req.Header.Set("Accept-Encoding", tc.acceptEncoding)
						}
						if i%2 == 1 {
							req.Header.Set("Range", "bytes=0-")
						}
						resp, err := c.Do(req)
						if err != nil {
							if ctx.Err() == nil {
								t.Errorf("GET %s: %v", tc.urlPath, err)
								cancel()
							}
							return
						}
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						atomic.AddInt64(&requests, 1)
						if bytes.Contains(body, marker) && atomic.AddInt64(&leaks, 1) == 1 && stopAtLeak {
							cancel()
						}
					}
				})
			}
			wg.Wait()
			m := scrape(t, c, ts.metricsURL)
			h, _ := total(m, "sendfile2_http_open_file_lookups_total", `result="hit"`)
			return requests, int64(h), leaks
		}
		t.Run(tc.name+", fstat only (baseline)", func(t *testing.T) {
			nlinkOnly = true
			defer func() { nlinkOnly = false }()
			n, _, leaks := race(t, 20*time.Second, true)
			t.Logf("%d of %d responses carried the file from outside DIR", leaks, n)
			if leaks == 0 {
				t.Errorf("the baseline was never raced in %d requests: the test cannot show the guard", n)
			}
		})
		t.Run(tc.name, func(t *testing.T) {
			n, hits, leaks := race(t, 3*time.Second, false)
			t.Logf("%d of %d responses carried the file from outside DIR; %d lookups took a kept file", leaks, n, hits)
			if leaks > 0 {
				t.Errorf("%d of %d responses carried the file from outside DIR", leaks, n)
			}
			if hits == 0 {
				t.Errorf("no lookup took a kept file in %d requests: the cache was not raced", n)
			}
		})
		must(t, os.Remove(target))
	}
}

// statAs is fi with its stat_t changed by edit: what a stat(2) would show
// after a change that left the ctime as it was (a filesystem that keeps
// whole seconds, a kernel before fine-grained ctimes).
type statAs struct {
	os.FileInfo
	st syscall.Stat_t
}

func (s statAs) Sys() any { return &s.st }

// TestFileCacheComparesOwnerAndMode: a mode or owner change that left the
// ctime as the check read it is still seen, in the stat's own fields: the
// next request opens the file again, and the open decides.
func TestFileCacheComparesOwnerAndMode(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "f")
	must(t, os.WriteFile(name, []byte("f"), 0o644))
	f, err := os.Open(name)
	must(t, err)
	fi, err := f.Stat()
	must(t, err)
	c := newFileCache(4, time.Hour)
	defer c.close()
	c.put("f", f, fi).Close()
	for _, tc := range []struct {
		what string
		edit func(*syscall.Stat_t)
	}{
		{"unchanged", func(*syscall.Stat_t) {}},
		{"mode 0600", func(st *syscall.Stat_t) { st.Mode = st.Mode&^0o777 | 0o600 }},
		{"another owner", func(st *syscall.Stat_t) { st.Uid++ }},
		{"another group", func(st *syscall.Stat_t) { st.Gid++ }},
	} {
		now, err := os.Stat(name)
		must(t, err)
		as := statAs{FileInfo: now, st: *now.Sys().(*syscall.Stat_t)}
		tc.edit(&as.st)
		got := c.get("f", as, false)
		if hit := got != nil; hit != (tc.what == "unchanged") {
			t.Errorf("%s: hit %v", tc.what, hit)
		}
		if got != nil {
			got.Close()
		} else if tc.what != "unchanged" {
			// The miss dropped it: cache it again for the next case.
			f, err := os.Open(name)
			must(t, err)
			fi, err := f.Stat()
			must(t, err)
			c.put("f", f, fi).Close()
		}
	}
}
