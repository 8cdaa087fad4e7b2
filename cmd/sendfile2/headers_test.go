package main

import (
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestServeHeaders: the headers of --header are on every response: files,
// ranges, 304, HEAD, 404, 405, and uploads (201 on a hijacked conn, 413).
func TestServeHeaders(t *testing.T) {
	requireCurl(t)
	dir := t.TempDir()
	data := writeRandom(t, filepath.Join(dir, "f.bin"), 100<<10)
	ts := startServe(t, dir, func(o *serveOptions) {
		o.upload = true
		o.maxUpload = 1 << 20
		o.http.precompressed = defaultPrecompressed
		o.http.headers = []string{
			"Cache-Control: public, max-age=60",
			"Access-Control-Allow-Origin: *",
			"Vary:Origin",
			"X-Two: one",
			"x-two:  two  ",
		}
	})
	c := newClient(t)
	check := func(t *testing.T, what string, h http.Header) {
		t.Helper()
		if h.Get("Cache-Control") != "public, max-age=60" || h.Get("Access-Control-Allow-Origin") != "*" ||
			!slices.Equal(h.Values("X-Two"), []string{"one", "two"}) || !slices.Contains(h.Values("Vary"), "Origin") {
			t.Errorf("%s: headers %v lack --header's", what, h)
		}
	}
	resp, body := do(t, c, "GET", ts.url+"/f.bin")
	if resp.StatusCode != 200 || string(body) != string(data) {
		t.Fatalf("GET: status %d", resp.StatusCode)
	}
	check(t, "200", resp.Header)
	if !slices.Contains(resp.Header.Values("Vary"), "Accept-Encoding") {
		t.Errorf("Vary %q: serve's Accept-Encoding went missing", resp.Header.Values("Vary"))
	}
	resp2, _ := do(t, c, "GET", ts.url+"/f.bin", "If-None-Match", resp.Header.Get("ETag"))
	check(t, "304", resp2.Header)
	resp2, _ = do(t, c, "GET", ts.url+"/f.bin", "Range", "bytes=0-9")
	check(t, "206", resp2.Header)
	resp2, _ = do(t, c, "HEAD", ts.url+"/f.bin")
	check(t, "HEAD", resp2.Header)
	resp2, _ = do(t, c, "GET", ts.url+"/missing")
	check(t, "404", resp2.Header)
	resp2, _ = do(t, c, "DELETE", ts.url+"/f.bin")
	check(t, "405", resp2.Header)
	resp2 = goPut(t, c, ts.url+"/up.bin", randomData(300<<10, 1), false)
	if resp2.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d", resp2.StatusCode)
	}
	check(t, "201 (written on the hijacked conn)", resp2.Header)
	resp2 = goPut(t, c, ts.url+"/up.bin", randomData(300<<10, 1), true)
	check(t, "204 (chunked)", resp2.Header)
	resp2 = goPut(t, c, ts.url+"/up.bin", randomData(2<<20, 1), false)
	check(t, "413", resp2.Header)

	out := strings.ToLower(string(curl(t, "-sS", "-D", "-", "-o", "/dev/null", ts.url+"/f.bin")))
	for _, want := range []string{"cache-control: public, max-age=60\r\n", "access-control-allow-origin: *\r\n", "x-two: one\r\n", "x-two: two\r\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("curl: no %q in\n%s", want, out)
		}
	}
}

// TestServeHeaderBadArguments: a --header that is not 'Name: value', would
// inject another header, or sets what serve manages, stops the start.
func TestServeHeaderBadArguments(t *testing.T) {
	dir := t.TempDir()
	for _, h := range []string{
		"NoColon",
		": empty name",
		"Bad Name: x",
		"Bad\tName: x",
		"Name(x): y",
		"X-Inject: a\r\nSet-Cookie: b",
		"X-Inject: a\nb",
		"X-Nul: a\x00b",
		"Content-Length: 5",
		"content-type: text/html",
		"Transfer-Encoding: chunked",
		"Content-Encoding: gzip",
		"ETag: \"x\"",
		"Connection: close",
	} {
		args := []string{"serve", "--addr", "127.0.0.1:0", "--header", h, dir}
		runRefused(t, "--header", args...)
	}
}
