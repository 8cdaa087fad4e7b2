//go:build linux

package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestFileCacheConcurrent: callers take, put and give back files of a few
// names at once while the names are rewritten, replaced by renames and
// removed, and the idle sweep and the least-recently-taken eviction drop
// files under them. A file is never closed while a caller holds it, every
// file opened is closed once the cache is closed and given everything
// back, and the cache never holds more than its max. Run it with -race.
func TestFileCacheConcurrent(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	must(t, err)
	defer root.Close()
	names := []string{"a", "b", "c", "d", "e", "f"}
	for _, n := range names {
		must(t, os.WriteFile(filepath.Join(dir, n), []byte(n), 0o644))
	}
	const max = 5
	c := newFileCache(max, 5*time.Millisecond)

	var mu sync.Mutex
	var opened []*os.File
	stop := make(chan struct{})
	tick := make(chan struct{}, 1) // every 16th request lets the user change a file
	var wg sync.WaitGroup
	var held, taken, closedWhileHeld int64
	for w := range 6 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := names[(w+i)%len(names)]
				fi, err := root.Stat(name)
				if err != nil {
					c.forget(name)
					continue
				}
				f := c.get(name, fi, false)
				if f == nil {
					file, err := root.Open(name)
					if err != nil {
						continue
					}
					ffi, err := file.Stat()
					if err != nil {
						t.Error(err)
						file.Close()
						continue
					}
					mu.Lock()
					opened = append(opened, file)
					mu.Unlock()
					f = c.put(name, file, ffi)
				} else {
					mu.Lock()
					taken++
					mu.Unlock()
				}
				var buf [8]byte
				if _, err := f.ReadAt(buf[:], 0); err != nil && !errors.Is(err, io.EOF) {
					mu.Lock()
					closedWhileHeld++
					mu.Unlock()
					t.Errorf("a held file: %v", err)
				}
				if n := c.len(); n > max {
					t.Errorf("%d files cached, max %d", n, max)
				}
				mu.Lock()
				held++
				mu.Unlock()
				f.Close()
				if i%16 == 0 {
					select {
					case tick <- struct{}{}:
					default:
					}
				}
			}
		})
	}
	wg.Go(func() { // a local user's changes
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick:
			}
			n := filepath.Join(dir, names[i%len(names)])
			switch i % 3 {
			case 0:
				os.WriteFile(n, []byte(strconv.Itoa(i)), 0o644)
			case 1:
				os.WriteFile(n+".new", []byte(strconv.Itoa(i)), 0o644)
				os.Rename(n+".new", n)
			case 2:
				os.Remove(n)
				os.WriteFile(n, []byte(strconv.Itoa(i)), 0o644)
			}
		}
	})
	<-time.After(2 * time.Second)
	close(stop)
	wg.Wait()
	c.close()
	left := 0
	for _, f := range opened {
		if err := f.Close(); err == nil {
			left++
		}
	}
	t.Logf("%d taken from the cache of %d served, %d opened; %d left open after close", taken, held, len(opened), left)
	if left > 0 {
		t.Errorf("%d of %d files opened were still open after the cache closed", left, len(opened))
	}
	if taken == 0 {
		t.Error("no file was taken from the cache: the test did not race it")
	}
}
