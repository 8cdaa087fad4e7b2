//go:build linux

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rangeSeeds are Range headers for FuzzServeRange to start from. They are
// short: the fuzzer minimizes every new input it keeps, which takes long on
// long ones (TestHostileRanges has the headers with hundreds of ranges).
func rangeSeeds() []string {
	return []string{"bytes=5-1", "bytes=-0", "bytes=-000", "bytes=0-0,-0", "bytes=999999999999-", "bytes=a-b",
		"bytes=0-99999999999999999999999", "bytes=-99999999999999999999999", "bytes=99999999999999999999999-,1-2",
		"items=0-5", "Bytes=0-5", "bytes=", "bytes=,,,", "bytes=0-5,10-20", "bytes=0-10,5-20", "bytes=0-,0-",
		"bytes=-1", "BYtes=-1", "bytes=0-5,-+0", "bytes=+0-5", "bytes=0-+5", "bytes=0-", "bytes= 0 - 5 , 7-", "bytes=+5-10", "bytes=0-0x10", "bytes=1-1,-1,0-",
		"bytes=" + strings.Repeat("0-0,", 10)}
}

// FuzzServeRange: for any Range header, on files of a few sizes, the
// handler answers 200 with the whole file, 206 with valid Content-Ranges and
// exactly their bytes, or 416 (checkRangeResponse); fixRange's answer
// names at most maxRanges ranges and is its own fixed point.
func FuzzServeRange(f *testing.F) {
	dir := f.TempDir()
	sizes := []int{0, 1, 2, 10, 1000, 70000}
	data := make([][]byte, len(sizes))
	for i, n := range sizes {
		data[i] = make([]byte, n)
		rand.NewChaCha8([32]byte{byte(i)}).Read(data[i])
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d.bin", n)), data[i], 0o644); err != nil {
			f.Fatal(err)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { root.Close() })
	h := &fileHandler{root: root}
	for i, s := range rangeSeeds() {
		f.Add(s, uint8(i))
		f.Add(s, uint8(0)) // the empty file
	}
	f.Fuzz(func(t *testing.T, rng string, which uint8) {
		i := int(which) % len(sizes)
		req := httptest.NewRequest("GET", fmt.Sprintf("/f%d.bin", sizes[i]), nil)
		req.Header.Set("Range", rng)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if _, err := checkRangeResponse(rec.Result(), rec.Body.Bytes(), data[i]); err != nil {
			t.Fatalf("Range %q on a %d-byte file: %v", rng, sizes[i], err)
		}
		fixed := fixRange(rng, int64(sizes[i]))
		if fixed == "" {
			return
		}
		if !strings.HasPrefix(fixed, "bytes=") || strings.Count(fixed, ",") >= maxRanges {
			t.Fatalf("fixRange(%q, %d) = %q", rng, sizes[i], fixed)
		}
		if again := fixRange(fixed, int64(sizes[i])); again != fixed {
			t.Fatalf("fixRange(%q, %d) = %q, and again %q", rng, sizes[i], fixed, again)
		}
	})
}

// FuzzServePath: no request-target makes the handler answer with a file
// outside DIR, through "..", encodings, or links (symbolic, or hard under
// the default policy); every 200 carries a file inside DIR.
func FuzzServePath(f *testing.F) {
	base := f.TempDir()
	marker := secretMarker()
	dir := linkTree(f, base, marker)
	for name, content := range map[string]string{
		filepath.Join(base, "www2", "secret.txt"): marker,
		filepath.Join(dir, "secret.txt"):          "the one inside",
		filepath.Join(dir, "sub", "index.html"):   "index",
	} {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	inside := map[string]bool{"inner": true, "x": true, "the one inside": true, "index": true}
	root, err := os.OpenRoot(dir)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { root.Close() })
	h := &fileHandler{root: root}
	// A sample of the targets TestHostileTraversal sends: a fuzz run whose
	// -fuzztime ends while it still runs its seeds fails.
	ts := traversalTargets(base)
	for i, s := range ts {
		if i%10 == 0 || i >= len(ts)-20 {
			f.Add(s)
		}
	}
	for _, s := range []string{"/abs", "/rel", "/chain", "/dirlink/secret2.txt", "/sub/up", "/slash" + base + "/secret.txt",
		"/hard", "/idx/", "/ok", "/subok/x.txt", "/sub/", "/sub", "/twin1.txt"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		if strings.ContainsAny(target, " \r\n") {
			return // not one request-target on the wire
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: test\r\n\r\n")))
		if err != nil {
			return // net/http answers 400
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var all bytes.Buffer
		rec.Result().Header.Write(&all)
		all.Write(rec.Body.Bytes())
		if bytes.Contains(all.Bytes(), []byte(marker)) {
			t.Fatalf("GET %q (path %q): status %d with the secret from outside DIR", target, req.URL.Path, rec.Code)
		}
		if rec.Code == http.StatusOK && !inside[rec.Body.String()] {
			t.Fatalf("GET %q (path %q): 200 with %.40q, no file inside DIR", target, req.URL.Path, rec.Body.String())
		}
	})
}
