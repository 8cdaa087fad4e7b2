package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStaleUploads: at start, serve --upload removes the temporary files
// that a killed serve left (regular files named as uploads name them, not
// modified for staleAge), in DIR and below it, and nothing else: not a newer one, not
// a symbolic link, directory or other name, and nothing through a symbolic
// link out of DIR. Without --upload it removes nothing.
func TestStaleUploads(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "www")
	out := filepath.Join(base, "outside")
	must(t, os.MkdirAll(filepath.Join(dir, "sub", "deeper"), 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, tempPrefix+"bbbbbbbbbbbbbbbb"), 0o755))
	must(t, os.MkdirAll(out, 0o755))
	old := time.Now().Add(-48 * time.Hour) // staleAge without --body-timeout: a day
	file := func(name string, mtime time.Time) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, []byte("partial"), 0o644))
		must(t, os.Chtimes(p, mtime, mtime))
		return p
	}
	stale := []string{
		file(tempPrefix+"0123456789abcdef", old),
		file("sub/deeper/"+tempPrefix+"fedcba9876543210", old),
	}
	kept := []string{
		file(tempPrefix+"aaaaaaaaaaaaaaaa", time.Now().Add(-time.Hour)), // modified within staleAge
		file(tempPrefix+"short", old),
		file(tempPrefix+"0123456789ABCDEF", old),
		file("keep.txt", old),
		filepath.Join(dir, tempPrefix+"bbbbbbbbbbbbbbbb"),
	}
	outFile := filepath.Join(out, tempPrefix+"dddddddddddddddd")
	must(t, os.WriteFile(outFile, []byte("outside"), 0o644))
	must(t, os.Chtimes(outFile, old, old))
	must(t, os.Symlink(out, filepath.Join(dir, "dirlink")))
	must(t, os.Symlink(outFile, filepath.Join(dir, tempPrefix+"cccccccccccccccc")))
	kept = append(kept, outFile, filepath.Join(dir, tempPrefix+"cccccccccccccccc"))

	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }
	ts := startServe(t, dir, nil) // without --upload
	must(t, ts.stop())
	for _, p := range append(stale, kept...) {
		if !exists(p) {
			t.Fatalf("without --upload, %s was removed", p)
		}
	}
	ts = startServe(t, dir, func(o *serveOptions) { o.upload = true })
	must(t, ts.stop())
	for _, p := range stale {
		if exists(p) {
			t.Errorf("stale upload %s is still there", p)
		}
	}
	for _, p := range kept {
		if !exists(p) {
			t.Errorf("%s was removed", p)
		}
	}
	if !strings.Contains(ts.log.String(), "removed stale uploads") || !strings.Contains(ts.log.String(), "files=2") {
		t.Errorf("the removal is not in the log:\n%s", ts.log.String())
	}
}

// TestStaleUploadsLive: a second serve --upload on the same DIR leaves the
// temporary files of the first one's uploads in progress: it removes only
// those not modified for staleAge (twice --body-timeout and a minute; a day
// without one).
func TestStaleUploadsLive(t *testing.T) {
	for _, v := range []struct {
		bodyTimeout time.Duration
		live, stale time.Duration // ages
	}{
		{defaultBodyTimeout, 10 * time.Second, time.Hour},
		{time.Second, 30 * time.Second, 5 * time.Minute},
		{0, 2 * time.Hour, 48 * time.Hour},
	} {
		t.Run(v.bodyTimeout.String(), func(t *testing.T) {
			dir := t.TempDir()
			file := func(name string, age time.Duration) string {
				p := filepath.Join(dir, name)
				must(t, os.WriteFile(p, []byte("partial"), 0o644))
				mtime := time.Now().Add(-age)
				must(t, os.Chtimes(p, mtime, mtime))
				return p
			}
			live := file(tempPrefix+"0123456789abcdef", v.live)
			stale := file(tempPrefix+"fedcba9876543210", v.stale)
			ts := startServe(t, dir, func(o *serveOptions) {
				o.upload = true
				o.bodyTimeout = v.bodyTimeout
			})
			must(t, ts.stop())
			if _, err := os.Lstat(live); err != nil {
				t.Errorf("an upload modified %v ago was removed (--body-timeout %v): %v", v.live, v.bodyTimeout, err)
			}
			if _, err := os.Lstat(stale); err == nil {
				t.Errorf("an upload not modified for %v is still there (--body-timeout %v)", v.stale, v.bodyTimeout)
			}
		})
	}
}
