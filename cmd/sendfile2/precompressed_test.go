//go:build linux

package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"mime"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// precompressedTree writes page.html (text) and its encodings: a real
// gzip, and random bytes as its .br and .zst (serve never decodes them).
// It returns the bodies by coding, "" for page.html itself.
func precompressedTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	var page bytes.Buffer
	for i := 0; page.Len() < 300<<10; i++ {
		fmt.Fprintf(&page, "<p>line %d of a page that compresses well</p>\n", i)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(page.Bytes())
	must(t, zw.Close())
	files := map[string][]byte{"": page.Bytes(), "gzip": gz.Bytes(), "br": randomData(1<<20+3, 11), "zstd": randomData(700<<10, 12)}
	for coding, ext := range map[string]string{"": "", "gzip": ".gz", "br": ".br", "zstd": ".zst"} {
		must(t, os.WriteFile(filepath.Join(dir, "page.html"+ext), files[coding], 0o644))
	}
	return files
}

// TestServePrecompressed: negotiation with q-values, the headers of an
// encoded response, ranges over the encoded bytes, conditional requests
// with its ETag, HEAD, and curl decoding the gzip.
func TestServePrecompressed(t *testing.T) {
	requireCurl(t)
	dir := t.TempDir()
	files := precompressedTree(t, dir)
	ts := startServe(t, dir, func(o *serveOptions) { o.http.precompressed = defaultPrecompressed })
	c := newClient(t)
	url := ts.url + "/page.html"

	tags := map[string]string{}
	for _, tc := range []struct{ accept, want string }{
		{"", ""},
		{"gzip", "gzip"},
		{"gzip, br", "br"}, // equal qualities: the order of --precompressed
		{"gzip, zstd", "zstd"},
		{"br;q=0.5, gzip", "gzip"},
		{"zstd;q=0.9, br;q=0.9, gzip;q=0.1", "br"},
		{"br;q=0, gzip;q=0", ""},
		{"br;q=0.000, zstd;q=0", ""},
		{"*", "br"},
		{"*;q=0.5, br;q=0", "zstd"},
		{"identity", ""},
		{"gzip;q=0.5, identity", ""},
		{"gzip, identity;q=0.5", "gzip"},
		{"x-gzip", "gzip"},
		{"GZIP ; Q=1.0", "gzip"},
		{"gzip;q=1.5", ""},
		{"gzip;q=0.0001", ""},
		{"gzip;q=", ""},
		{"deflate, compress", ""},
		{"br;level=5;q=0.2, gzip;q=0.1", "br"},
	} {
		t.Run(tc.accept, func(t *testing.T) {
			var hdr []string
			if tc.accept != "" {
				hdr = []string{"Accept-Encoding", tc.accept}
			}
			resp, body := do(t, c, "GET", url, hdr...)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != tc.want {
				t.Fatalf("status %d, Content-Encoding %q; want 200 and %q", resp.StatusCode, resp.Header.Get("Content-Encoding"), tc.want)
			}
			if !bytes.Equal(body, files[tc.want]) || resp.ContentLength != int64(len(files[tc.want])) {
				t.Errorf("%d bytes (Content-Length %d), not those of the %q file", len(body), resp.ContentLength, tc.want)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q, want page.html's", ct)
			}
			if !slices.Contains(resp.Header.Values("Vary"), "Accept-Encoding") {
				t.Errorf("Vary %q", resp.Header.Values("Vary"))
			}
			tag := resp.Header.Get("ETag")
			if old, ok := tags[tc.want]; ok && old != tag {
				t.Errorf("ETag %s, was %s for the same file", tag, old)
			}
			tags[tc.want] = tag
		})
	}
	seen := map[string]bool{}
	for _, tag := range tags {
		if seen[tag] {
			t.Errorf("two encodings share the ETag %s: %v", tag, tags)
		}
		seen[tag] = true
	}

	gz, gzTag := files["gzip"], tags["gzip"]
	t.Run("range", func(t *testing.T) {
		resp, body := do(t, c, "GET", url, "Accept-Encoding", "gzip", "Range", "bytes=100-1099")
		want := fmt.Sprintf("bytes 100-1099/%d", len(gz))
		if resp.StatusCode != 206 || resp.Header.Get("Content-Range") != want || !bytes.Equal(body, gz[100:1100]) {
			t.Errorf("status %d, Content-Range %q (want %q), body equal: %v", resp.StatusCode, resp.Header.Get("Content-Range"), want, bytes.Equal(body, gz[100:1100]))
		}
		if resp.Header.Get("Content-Encoding") != "gzip" {
			t.Errorf("Content-Encoding %q", resp.Header.Get("Content-Encoding"))
		}
		// Several ranges of an encoded file: all of it.
		br := files["br"]
		resp, body = do(t, c, "GET", url, "Accept-Encoding", "br", "Range", "bytes=0-9,-20")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "br" || !bytes.Equal(body, br) {
			t.Errorf("several ranges of the .br: status %d, Content-Encoding %q, %d bytes; want 200 and the whole .br", resp.StatusCode, resp.Header.Get("Content-Encoding"), len(body))
		}
		// ... and of the file itself, still multipart.
		resp, _ = do(t, c, "GET", url, "Range", "bytes=0-9,-20")
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); resp.StatusCode != 206 || mt != "multipart/byteranges" {
			t.Errorf("several ranges of page.html: status %d, Content-Type %q", resp.StatusCode, mt)
		}
		if out := curl(t, "-H", "Accept-Encoding: gzip", "-r", "0-99", url); !bytes.Equal(out, gz[:100]) {
			t.Errorf("curl -r 0-99: %d bytes, not the gzip's first 100", len(out))
		}
	})
	t.Run("conditional", func(t *testing.T) {
		if resp, body := do(t, c, "GET", url, "Accept-Encoding", "gzip", "If-None-Match", gzTag); resp.StatusCode != 304 || len(body) != 0 {
			t.Errorf("If-None-Match with the gzip's ETag: %d, want 304", resp.StatusCode)
		}
		if resp, _ := do(t, c, "GET", url, "If-None-Match", gzTag); resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("If-None-Match with the gzip's ETag, no Accept-Encoding: %d, want 200 identity", resp.StatusCode)
		}
		if resp, _ := do(t, c, "GET", url, "Accept-Encoding", "gzip", "If-None-Match", tags[""]); resp.StatusCode != 200 {
			t.Errorf("If-None-Match with page.html's ETag, Accept-Encoding gzip: %d, want 200", resp.StatusCode)
		}
		if resp, body := do(t, c, "GET", url, "Accept-Encoding", "gzip", "If-Range", gzTag, "Range", "bytes=5-9"); resp.StatusCode != 206 || !bytes.Equal(body, gz[5:10]) {
			t.Errorf("If-Range with the gzip's ETag: %d, want 206", resp.StatusCode)
		}
		if resp, body := do(t, c, "GET", url, "Accept-Encoding", "gzip", "If-Range", tags[""], "Range", "bytes=5-9"); resp.StatusCode != 200 || !bytes.Equal(body, gz) {
			t.Errorf("If-Range with page.html's ETag: %d, want 200 and the whole gzip", resp.StatusCode)
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		resp, body := do(t, c, "HEAD", url, "Accept-Encoding", "br")
		if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != int64(len(files["br"])) || resp.Header.Get("Content-Encoding") != "br" {
			t.Errorf("status %d, Content-Length %d, Content-Encoding %q, %d body bytes", resp.StatusCode, resp.ContentLength, resp.Header.Get("Content-Encoding"), len(body))
		}
	})
	t.Run("curl", func(t *testing.T) {
		if out := curl(t, "--compressed", "-H", "Accept-Encoding: gzip", url); !bytes.Equal(out, files[""]) {
			t.Errorf("curl --compressed: %d bytes that differ from page.html", len(out))
		}
	})
	t.Run("direct", func(t *testing.T) {
		// The encoded file by its own name is a file as any other.
		resp, body := do(t, c, "GET", url+".gz", "Accept-Encoding", "gzip")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, gz) {
			t.Errorf("GET page.html.gz: %d, Content-Encoding %q", resp.StatusCode, resp.Header.Get("Content-Encoding"))
		}
	})
}

// TestServePrecompressedRules: an encoded file is served only when it is
// one that serve would serve by its own name; else NAME is served, and
// nothing hangs on a FIFO. No NAME, no encoding of it.
func TestServePrecompressedRules(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "www")
	must(t, os.MkdirAll(filepath.Join(dir, "dir.txt.gz"), 0o755))
	marker := secretMarker()
	must(t, os.WriteFile(filepath.Join(base, "secret.gz"), []byte(marker), 0o644))
	for _, n := range []string{"link.txt", "abs.txt", "fifo.txt", "hard.txt", "dir.txt", "inner.txt"} {
		must(t, os.WriteFile(filepath.Join(dir, n), []byte("plain "+n), 0o644))
	}
	must(t, os.Symlink("../secret.gz", filepath.Join(dir, "link.txt.gz")))
	must(t, os.Symlink(filepath.Join(base, "secret.gz"), filepath.Join(dir, "abs.txt.gz")))
	must(t, unix.Mkfifo(filepath.Join(dir, "fifo.txt.gz"), 0o644))
	must(t, os.Link(filepath.Join(base, "secret.gz"), filepath.Join(dir, "hard.txt.gz")))
	must(t, os.WriteFile(filepath.Join(dir, "target.gz"), []byte("in the root"), 0o644))
	must(t, os.Symlink("target.gz", filepath.Join(dir, "inner.txt.gz")))
	must(t, os.WriteFile(filepath.Join(dir, "only.txt.gz"), []byte("no only.txt"), 0o644))

	ts := startServe(t, dir, func(o *serveOptions) { o.http.precompressed = "gzip" })
	c := newClient(t)
	c.Timeout = 20 * time.Second // a server stuck in open(2) of the FIFO fails here
	for name, want := range map[string]string{
		"link.txt":  "plain link.txt", // a relative symbolic link out of the root
		"abs.txt":   "plain abs.txt",  // an absolute one
		"fifo.txt":  "plain fifo.txt", // never opened
		"hard.txt":  "plain hard.txt", // a second hard link (--allow-hardlinks is off)
		"dir.txt":   "plain dir.txt",  // a directory
		"inner.txt": "in the root",    // a symbolic link that stays in the root: as NAME would be
	} {
		resp, body := do(t, c, "GET", ts.url+"/"+name, "Accept-Encoding", "gzip")
		if resp.StatusCode != 200 || string(body) != want {
			t.Errorf("%s: status %d, body %q; want 200 %q", name, resp.StatusCode, body, want)
		}
		if strings.Contains(string(body), marker) {
			t.Errorf("%s: served the file outside the root", name)
		}
		if enc := resp.Header.Get("Content-Encoding"); (enc != "") != (name == "inner.txt") {
			t.Errorf("%s: Content-Encoding %q", name, enc)
		}
	}
	if resp, _ := do(t, c, "GET", ts.url+"/only.txt", "Accept-Encoding", "gzip"); resp.StatusCode != 404 {
		t.Errorf("only.txt, which does not exist beside its .gz: %d, want 404", resp.StatusCode)
	}
}

// TestServePrecompressedOff: --precompressed "" serves NAME, without Vary.
func TestServePrecompressedOff(t *testing.T) {
	dir := t.TempDir()
	files := precompressedTree(t, dir)
	ts := startServe(t, dir, func(o *serveOptions) { o.http.precompressed = "" })
	resp, body := do(t, newClient(t), "GET", ts.url+"/page.html", "Accept-Encoding", "br, gzip, zstd")
	if resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Vary") != "" || !bytes.Equal(body, files[""]) {
		t.Errorf("Content-Encoding %q, Vary %q, page.html's bytes: %v", resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"), bytes.Equal(body, files[""]))
	}
}

// TestServePrecompressedType: NAME's type, sniffed from NAME when its
// extension names none, never from the encoded bytes.
func TestServePrecompressedType(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "README"), []byte("<!DOCTYPE html><title>x</title>"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "README.gz"), randomData(4096, 3), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "app.js"), []byte("let x = 1"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "app.js.br"), randomData(4096, 4), 0o644))
	ts := startServe(t, dir, func(o *serveOptions) { o.http.precompressed = defaultPrecompressed })
	c := newClient(t)
	for path, want := range map[string]string{"/README": "text/html; charset=utf-8", "/app.js": "text/javascript; charset=utf-8"} {
		resp, _ := do(t, c, "GET", ts.url+path, "Accept-Encoding", "gzip, br")
		if resp.Header.Get("Content-Encoding") == "" || resp.Header.Get("Content-Type") != want {
			t.Errorf("%s: Content-Encoding %q, Content-Type %q, want encoded %q", path, resp.Header.Get("Content-Encoding"), resp.Header.Get("Content-Type"), want)
		}
	}
}

// TestServePrecompressedSender: encoded bodies go through the Sender: its
// byte counters grow by them.
func TestServePrecompressedSender(t *testing.T) {
	dir := t.TempDir()
	files := precompressedTree(t, dir)
	ts := startServe(t, dir, func(o *serveOptions) { o.http.precompressed = defaultPrecompressed })
	c := newClient(t)
	sent := func() float64 {
		m := scrape(t, c, ts.metricsURL)
		var s float64
		for _, method := range []string{"uring", "uring-mmap", "msgzc", "copy"} {
			v, _ := total(m, "sendfile2_sent_bytes_total", `method="`+method+`"`)
			s += v
		}
		return s
	}
	before := sent()
	var bodies int
	for _, enc := range []string{"br", "zstd", "gzip"} {
		resp, body := do(t, c, "GET", ts.url+"/page.html", "Accept-Encoding", enc)
		if resp.Header.Get("Content-Encoding") != enc || !bytes.Equal(body, files[enc]) {
			t.Fatalf("%s: Content-Encoding %q", enc, resp.Header.Get("Content-Encoding"))
		}
		bodies += len(body)
	}
	// The Sender counts a send when it returns, after the client has the body.
	var grew float64
	for range 500 {
		if grew = sent() - before; grew >= float64(bodies) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if grew < float64(bodies) || grew > float64(bodies+3000) {
		t.Errorf("sendfile2_sent_bytes_total grew by %v for %d encoded body bytes: they did not go through the Sender", grew, bodies)
	}
}

func TestServePrecompressedBadArguments(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"deflate", "gzip,gzip", "br;q=1", "gzip,,br", "identity"} {
		runRefused(t, "--precompressed", "serve", "--addr", "127.0.0.1:0", "--precompressed", v, dir)
	}
}
