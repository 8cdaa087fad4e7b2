//go:build linux

package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// raceLinks GETs /x from ts with 8 clients while a local user links a file
// from outside DIR in as DIR/x and unlinks it again, non-stop, until ctx
// ends or until stopAtLeak responses carried the file (0: never stop early).
// It returns the responses, and those that carried the outside file.
func raceLinks(ctx context.Context, t *testing.T, ts *testServer, outside, link string, marker []byte, stopAtLeak int64) (requests, leaks int64) {
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
				resp, err := c.Get(ts.url + "/x")
				if err != nil {
					t.Errorf("GET /x: %v", err)
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
		n, leaks := raceLinks(ctx, t, ts, outside, link, marker, 5)
		t.Logf("%d of %d responses carried the file from outside DIR", leaks, n)
		if leaks == 0 {
			t.Errorf("the baseline was never raced in %d requests: the test cannot show the fix", n)
		}
	})
	t.Run("fstat and /proc", func(t *testing.T) {
		ts := startServe(t, dir, func(o *serveOptions) { o.accessLog = false })
		ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
		defer cancel()
		n, leaks := raceLinks(ctx, t, ts, outside, link, marker, 0)
		t.Logf("%d of %d responses carried the file from outside DIR", leaks, n)
		if leaks > 0 {
			t.Errorf("%d of %d responses carried the file from outside DIR", leaks, n)
		}
		if n < 1000 {
			t.Errorf("only %d requests", n)
		}
	})
}
