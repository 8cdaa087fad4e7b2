//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// raceLinks GETs the link's name under DIR from ts with 8 clients while a
// local user links a file from outside DIR in as link and unlinks it again, non-stop, until ctx
// ends or until stopAtLeak responses carried the file (0: never stop early).
// It returns the responses, and those that carried the outside file.
func raceLinks(ctx context.Context, t *testing.T, ts *testServer, outside, link, urlPath string, marker []byte, stopAtLeak int64) (requests, leaks int64) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			os.Link(outside, link)
			os.Remove(link)
		}
	})
	c := newClient(t)
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 8
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				resp, err := c.Get(ts.url + urlPath)
				if err != nil {
					t.Errorf("GET %s: %v", urlPath, err)
					cancel()
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				atomic.AddInt64(&requests, 1)
				if bytes.Contains(body, marker) {
					if atomic.AddInt64(&leaks, 1) == stopAtLeak {
						cancel()
					}
				}
			}
		})
	}
	wg.Wait()
	return requests, leaks
}

// TestHardlinkRace: a local user who can write in DIR links a file from
// outside into DIR and unlinks it again, over and over, while clients GET
// it. The guard of fstat alone (the baseline) is raced: the link is removed
// between serve's open and its fstat, the count is 1 again, and the outside
// file is served. With the /proc check (hardlink.go) no response carries it.
// x is directly in DIR: the guard takes its short way (a descriptor of DIR
// kept open for the lock).
func TestHardlinkRace(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "www")
	must(t, os.Mkdir(dir, 0o755))
	marker := []byte(secretMarker())
	outside := filepath.Join(base, "secret.txt")
	must(t, os.WriteFile(outside, marker, 0o644))
	link := filepath.Join(dir, "x")

	t.Run("fstat only (baseline)", func(t *testing.T) {
		nlinkOnly = true
		defer func() { nlinkOnly = false }()
		ts := startServe(t, dir, func(o *serveOptions) { o.accessLog = false })
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		n, leaks := raceLinks(ctx, t, ts, outside, link, "/x", marker, 5)
		t.Logf("%d of %d responses carried the file from outside DIR", leaks, n)
		if leaks == 0 {
			t.Errorf("the baseline was never raced in %d requests: the test cannot show the fix", n)
		}
	})
	// The /proc checks without the lock of DIR: the unlink that drops the
	// count, seen by fstat, has not yet unhashed the name that readlink
	// reads. The window is a few microseconds (measured: 5 leaks in 58,000
	// requests, 16 s): logged, not required.
	t.Run("no lock of DIR (baseline, logged)", func(t *testing.T) {
		noDirLock = true
		defer func() { noDirLock = false }()
		ts := startServe(t, dir, func(o *serveOptions) { o.accessLog = false })
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		n, leaks := raceLinks(ctx, t, ts, outside, link, "/x", marker, 1)
		t.Logf("%d of %d responses carried the file from outside DIR", leaks, n)
	})
	t.Run("fstat and /proc", func(t *testing.T) {
		ts := startServe(t, dir, func(o *serveOptions) { o.accessLog = false })
		ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
		defer cancel()
		n, leaks := raceLinks(ctx, t, ts, outside, link, "/x", marker, 0)
		t.Logf("%d of %d responses carried the file from outside DIR", leaks, n)
		if leaks > 0 {
			t.Errorf("%d of %d responses carried the file from outside DIR", leaks, n)
		}
		if n < 1000 {
			t.Errorf("only %d requests", n)
		}
	})
	t.Run("fstat and /proc, below DIR", func(t *testing.T) {
		// The full check: the name is not directly in DIR.
		must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
		ts := startServe(t, dir, func(o *serveOptions) { o.accessLog = false })
		ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
		defer cancel()
		n, leaks := raceLinks(ctx, t, ts, outside, filepath.Join(dir, "sub", "x"), "/sub/x", marker, 0)
		t.Logf("%d of %d responses carried the file from outside DIR", leaks, n)
		if leaks > 0 {
			t.Errorf("%d of %d responses carried the file from outside DIR", leaks, n)
		}
		if n < 1000 {
			t.Errorf("only %d requests", n)
		}
	})
}

// TestHardlinkGuardTop: the guard's short way for names directly in DIR
// (a descriptor of DIR kept open) answers as the full check: files added
// after start, a file replaced by a rename or rewritten after it was served
// (served fresh), a symbolic link inside DIR (served, through the full
// check), a symbolic link swapped to point outside after it was served
// (refused), and a hard link to a file outside, made after start (refused),
// directly in DIR and below it.
func TestHardlinkGuardTop(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "www")
	must(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	outside := filepath.Join(base, "secret.txt")
	must(t, os.WriteFile(outside, []byte("secret"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("one"), 0o644))
	ts := startServe(t, dir, func(o *serveOptions) { o.accessLog = false })
	if _, err := os.Readlink("/proc/self/fd/0"); err != nil {
		t.Skipf("no /proc (%v): the guard checks the link count only", err)
	}
	c := newClient(t)
	get := func(p string, wantCode int, wantBody string) {
		t.Helper()
		resp, body := do(t, c, "GET", ts.url+p)
		if resp.StatusCode != wantCode || wantCode == 200 && string(body) != wantBody {
			t.Errorf("GET %s: %d %q, want %d %q", p, resp.StatusCode, body, wantCode, wantBody)
		}
	}
	get("/a.txt", 200, "one")
	// Replaced by a rename over it, and rewritten in place: served fresh.
	tmp := filepath.Join(dir, "a.tmp")
	must(t, os.WriteFile(tmp, []byte("two"), 0o644))
	must(t, os.Rename(tmp, filepath.Join(dir, "a.txt")))
	get("/a.txt", 200, "two")
	must(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("three"), 0o644))
	get("/a.txt", 200, "three")
	// Added after start, directly in DIR and below.
	for i := range 100 { // more entries than one getdents(2) of the guard reads
		must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("new%03d.txt", i)), []byte("new"), 0o644))
	}
	must(t, os.WriteFile(filepath.Join(dir, "sub", "b.txt"), []byte("bee"), 0o644))
	get("/new099.txt", 200, "new")
	get("/new000.txt", 200, "new")
	get("/sub/b.txt", 200, "bee")
	// A symbolic link that stays inside DIR: its name is not the file's.
	must(t, os.Symlink("a.txt", filepath.Join(dir, "alias")))
	get("/alias", 200, "three")
	// Swapped after it was served: now it leaves DIR.
	must(t, os.Remove(filepath.Join(dir, "alias")))
	must(t, os.Symlink(outside, filepath.Join(dir, "alias")))
	get("/alias", 404, "")
	must(t, os.Remove(filepath.Join(dir, "alias")))
	must(t, os.Symlink("../secret.txt", filepath.Join(dir, "alias")))
	get("/alias", 404, "")
	// A hard link to a file outside, made after start.
	if err := os.Link(outside, filepath.Join(dir, "hl")); err != nil {
		t.Skipf("link: %v", err)
	}
	must(t, os.Link(outside, filepath.Join(dir, "sub", "hl")))
	get("/hl", 403, "")
	get("/sub/hl", 403, "")
	// A file renamed within DIR: its name moved, it is still served by
	// the new one.
	must(t, os.Rename(filepath.Join(dir, "sub", "b.txt"), filepath.Join(dir, "b.txt")))
	get("/b.txt", 200, "bee")
	get("/sub/b.txt", 404, "")
}
