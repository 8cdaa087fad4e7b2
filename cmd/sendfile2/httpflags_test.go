package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runRefused runs the command line args, which should be refused before
// serve starts: exit status 2 and an error that names flag. Should they be
// accepted, serve runs for a few seconds (on the addresses the args give)
// and the test fails, rather than waiting for ever.
func runRefused(t *testing.T, flag string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	if code := run(ctx, args, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), flag) {
		t.Errorf("%q: exit %d, stderr %q; want 2 naming %s", args, code, errOut.String(), flag)
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "127.1.2.3:80": true, "[::1]:80": true, "localhost:80": true, "LocalHost:1": true,
		":8080": false, "0.0.0.0:80": false, "[::]:80": false, "192.168.1.1:80": false, "example.com:80": false,
		"": false, "127.0.0.1": false, "[fe80::1%lo]:80": false,
	} {
		if got := loopback(addr); got != want {
			t.Errorf("loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestServeHTTPFlags runs `sendfile2 serve` with every flag of the HTTP
// features, as main does: the command line reaches each feature.
func TestServeHTTPFlags(t *testing.T) {
	dir, etc := t.TempDir(), t.TempDir()
	cert := selfSigned(t, etc)
	must(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("plain"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "a.txt.gz"), []byte("not really gzip"), 0o644))
	pw := filepath.Join(etc, "htpasswd")
	must(t, os.WriteFile(pw, []byte("alice:"+bcryptHash(t, "secret", "$2y$")+"\n"), 0o600))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &syncBuffer{}
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--log-format", "json",
			"--tls-cert", filepath.Join(etc, "cert.pem"), "--tls-key", filepath.Join(etc, "key.pem"),
			"--browse", "--precompressed", "gzip", "--header", "X-One: 1", "--header", "Cache-Control: no-cache",
			"--htpasswd", pw, "--auth-all", "--upload", dir}, io.Discard, stderr)
	}()
	var start map[string]any
	for i := 0; start == nil && i < 1000; i++ {
		for line := range strings.Lines(stderr.String()) {
			var e map[string]any
			if json.Unmarshal([]byte(line), &e) == nil && e["msg"] == "serving" {
				start = e
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if start == nil {
		cancel()
		t.Fatalf("serve did not start (exit %d):\n%s", <-code, stderr.String())
	}
	if start["tls"] != true || start["auth"] != "all requests" {
		t.Errorf("start line %v", start)
	}
	c := tlsClient(t, cert, true)
	url := "https://" + start["addr"].(string)
	get := func(path, user string, hdr ...string) (*http.Response, []byte) {
		req := authed(t, "GET", url+path, user, "secret", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		must(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		must(t, err)
		return resp, body
	}
	if resp, _ := get("/a.txt", ""); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("X-One") != "1" {
		t.Errorf("without credentials: %d, X-One %q; want 401 with --header's", resp.StatusCode, resp.Header.Get("X-One"))
	}
	resp, body := get("/a.txt", "alice", "Accept-Encoding", "gzip")
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || resp.Header.Get("Content-Encoding") != "gzip" || string(body) != "not really gzip" ||
		resp.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("GET a.txt, gzip: %d over %s, Content-Encoding %q, %q, Cache-Control %q", resp.StatusCode, resp.Proto, resp.Header.Get("Content-Encoding"), body, resp.Header.Get("Cache-Control"))
	}
	if resp, body := get("/", "alice"); resp.StatusCode != 200 || !strings.Contains(string(body), `href="./a.txt"`) {
		t.Errorf("the listing: %d\n%s", resp.StatusCode, body)
	}
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("exit %d:\n%s", c, stderr.String())
	}
}
