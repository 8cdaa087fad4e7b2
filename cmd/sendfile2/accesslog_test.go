package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestAccessLogText: the text access log has the user agent, the referer
// and the duration in a unit a person reads; the duration histogram counts
// each request by status class and method, any method a client invents
// under "other".
func TestAccessLogText(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a\n"), 0o644))
	ts := startServe(t, dir, nil)
	c := newClient(t)
	do(t, c, "GET", ts.url+"/a.txt", "User-Agent", "agent with spaces/2", "Referer", "http://example.com/")
	do(t, c, "HEAD", ts.url+"/missing")
	do(t, c, "BREW", ts.url+"/a.txt")
	line := waitRequest(t, ts, "method=GET path=/a.txt")
	re := regexp.MustCompile(`dur=[0-9.]+(ns|µs|ms|s) .*user_agent="agent with spaces/2" referer=http://example.com/`)
	if !re.MatchString(line) {
		t.Errorf("access log line %q does not match %s", line, re)
	}
	m := scrape(t, c, ts.metricsURL)
	for _, tc := range []struct{ code, method string }{{"2xx", "GET"}, {"4xx", "HEAD"}, {"4xx", "other"}} {
		if n, _ := total(m, "sendfile2_http_request_duration_seconds_count", `code="`+tc.code+`"`, `method="`+tc.method+`"`); n != 1 {
			t.Errorf("request_duration_seconds_count{code=%s,method=%s} %v, want 1", tc.code, tc.method, n)
		}
	}
	if n, _ := total(m, "sendfile2_http_request_duration_seconds_bucket", `method="GET"`, `le="600"`); n != 1 {
		t.Errorf("GET in the 600 s bucket: %v", n)
	}
}
