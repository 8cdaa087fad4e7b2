package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// bcryptHash returns a bcrypt hash of password at the lowest cost, with the
// prefix ("$2y$" as htpasswd -B writes, "$2a$", "$2b$").
func bcryptHash(t *testing.T, password, prefix string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	must(t, err)
	return prefix + strings.TrimPrefix(string(h), "$2a$")
}

// authed returns a request with Basic credentials unless user is "".
func authed(t *testing.T, method, url, user, pass string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(string(body)))
	must(t, err)
	if body == nil {
		req.Body, req.ContentLength = nil, 0
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	return req
}

func status(t *testing.T, c *http.Client, req *http.Request) *http.Response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	resp.Body.Close()
	return resp
}

// TestServeAuth: with --htpasswd, PUT needs the credentials of a user of
// the file (401 otherwise, the file untouched), GET does not; with
// --auth-all, GET does too. SIGHUP reloads the file; a bad one is refused
// and the users in use stay.
func TestServeAuth(t *testing.T) {
	requireCurl(t)
	dir, etc := t.TempDir(), t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644))
	pw := filepath.Join(etc, "htpasswd")
	must(t, os.WriteFile(pw, []byte("# users\nalice:"+bcryptHash(t, "wonderland", "$2y$")+"\n\nbob:"+bcryptHash(t, "builder", "$2b$")+"\r\n"), 0o600))
	src := filepath.Join(etc, "body")
	body := randomData(256<<10, 7)
	must(t, os.WriteFile(src, body, 0o644))

	ts := startServe(t, dir, func(o *serveOptions) {
		o.upload = true
		o.http.htpasswd = pw
	})
	c := newClient(t)
	refused := func(t *testing.T, resp *http.Response) {
		t.Helper()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Basic realm="sendfile2"` {
			t.Errorf("status %d, WWW-Authenticate %q; want 401 and Basic realm=\"sendfile2\"", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	for _, cred := range [][2]string{{"", ""}, {"alice", "wrong"}, {"mallory", "wonderland"}, {"alice", ""}, {"alice:wonderland", ""}} {
		refused(t, status(t, c, authed(t, "PUT", ts.url+"/new.bin", cred[0], cred[1], body)))
	}
	if code := curlPut(t, src, ts.url+"/new.bin"); code != http.StatusUnauthorized {
		t.Errorf("curl -T without credentials: %d, want 401", code)
	}
	if code := curlPut(t, src, ts.url+"/new.bin", "-u", "alice:nope"); code != http.StatusUnauthorized {
		t.Errorf("curl -T with a wrong password: %d, want 401", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "new.bin")); err == nil || len(tempFiles(t, dir)) > 0 {
		t.Fatalf("a refused PUT wrote: %v, %v", err, tempFiles(t, dir))
	}
	if code := curlPut(t, src, ts.url+"/new.bin", "-u", "alice:wonderland"); code != http.StatusCreated {
		t.Errorf("curl -T as alice: %d, want 201", code)
	}
	if resp := status(t, c, authed(t, "PUT", ts.url+"/new.bin", "bob", "builder", body)); resp.StatusCode != http.StatusNoContent {
		t.Errorf("PUT as bob: %d, want 204", resp.StatusCode)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "new.bin")); string(got) != string(body) {
		t.Errorf("the stored file: %d bytes that differ from the body", len(got))
	}
	if resp := status(t, c, authed(t, "GET", ts.url+"/a.txt", "", "", nil)); resp.StatusCode != 200 {
		t.Errorf("GET without credentials: %d, want 200 (only PUT is guarded)", resp.StatusCode)
	}
	if resp := status(t, c, authed(t, "GET", ts.url+"/a.txt", "mallory", "unchecked", nil)); resp.StatusCode != 200 {
		t.Errorf("GET with credentials never checked: %d, want 200", resp.StatusCode)
	}
	// The access log names the user a PUT was authenticated as, and no
	// other: GET's credentials were not checked.
	waitLog(t, ts, "status=204")
	for line := range strings.Lines(ts.log.String()) {
		put201 := strings.Contains(line, "method=PUT") && strings.Contains(line, "status=201")
		if put201 != strings.Contains(line, "user=alice") || strings.Contains(line, "user=bob") != (strings.Contains(line, "method=PUT") && strings.Contains(line, "status=204")) || strings.Contains(line, "mallory") {
			t.Errorf("access log line: %s", line)
		}
	}

	t.Run("SIGHUP", func(t *testing.T) {
		must(t, os.WriteFile(pw, []byte("alice:"+bcryptHash(t, "looking-glass", "$2y$")+"\n"), 0o600))
		must(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
		waitLog(t, ts, "users reloaded")
		refused(t, status(t, c, authed(t, "PUT", ts.url+"/new.bin", "alice", "wonderland", body)))
		refused(t, status(t, c, authed(t, "PUT", ts.url+"/new.bin", "bob", "builder", body)))
		if resp := status(t, c, authed(t, "PUT", ts.url+"/new.bin", "alice", "looking-glass", body)); resp.StatusCode != http.StatusNoContent {
			t.Errorf("PUT with the new password: %d, want 204", resp.StatusCode)
		}
		// A bad file keeps the users in use.
		must(t, os.WriteFile(pw, []byte("alice:$apr1$abc$def\n"), 0o600))
		must(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
		waitLog(t, ts, "keeping the users in use")
		if resp := status(t, c, authed(t, "PUT", ts.url+"/new.bin", "alice", "looking-glass", body)); resp.StatusCode != http.StatusNoContent {
			t.Errorf("PUT after a bad file's SIGHUP: %d, want 204", resp.StatusCode)
		}
	})
}

func TestServeAuthAll(t *testing.T) {
	requireCurl(t)
	dir, etc := t.TempDir(), t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644))
	pw := filepath.Join(etc, "htpasswd")
	must(t, os.WriteFile(pw, []byte("alice:"+bcryptHash(t, "wonderland", "$2a$")+"\n"), 0o600))
	ts := startServe(t, dir, func(o *serveOptions) {
		o.http.htpasswd = pw
		o.http.authAll = true
		o.http.headers = []string{"Cache-Control: no-store"}
	})
	c := newClient(t)
	for _, method := range []string{"GET", "HEAD"} {
		resp := status(t, c, authed(t, method, ts.url+"/a.txt", "", "", nil))
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s without credentials: %d, %v; want 401 with WWW-Authenticate and --header's", method, resp.StatusCode, resp.Header)
		}
		if resp := status(t, c, authed(t, method, ts.url+"/a.txt", "alice", "wonderland", nil)); resp.StatusCode != 200 {
			t.Errorf("%s as alice: %d, want 200", method, resp.StatusCode)
		}
	}
	if out := curl(t, "--no-fail", "-o", "/dev/null", "-w", "%{http_code}", ts.url+"/a.txt"); string(out) != "401" {
		t.Errorf("curl without credentials: %s, want 401", out)
	}
	if out := curl(t, "-u", "alice:wonderland", ts.url+"/a.txt"); string(out) != "a" {
		t.Errorf("curl -u alice: %q, want \"a\"", out)
	}
}

// TestHtpasswdDummyCost: a request that names no user is compared with a
// hash at the cost of a user picked by its name (the same name, the same
// cost), so that unknown names take the times known users take, in the
// same proportions, whatever the mix of costs in the file.
func TestHtpasswdDummyCost(t *testing.T) {
	h6, err := bcrypt.GenerateFromPassword([]byte("x"), 6)
	must(t, err)
	file := filepath.Join(t.TempDir(), "htpasswd")
	must(t, os.WriteFile(file, []byte("a:"+bcryptHash(t, "x", "$2y$")+"\nb:"+string(h6)+"\n"), 0o600))
	a, err := newAuthenticator(file, false)
	must(t, err)
	p := a.users.Load()
	seen := map[int]int{}
	for i := range 200 {
		name := fmt.Sprintf("nobody%d", i)
		d := p.dummyFor(name)
		c, err := bcrypt.Cost(d)
		if err != nil {
			t.Fatal(err)
		}
		seen[c]++
		if !bytes.Equal(p.dummyFor(name), d) {
			t.Errorf("%s: a different dummy hash each time", name)
		}
		if bcrypt.CompareHashAndPassword(d, []byte("")) == nil {
			t.Error("a dummy hash matches the empty password")
		}
	}
	if len(seen) != 2 || seen[bcrypt.MinCost] < 50 || seen[6] < 50 {
		t.Errorf("the dummy costs of 200 unknown names: %v, want about as many of cost %d as of 6", seen, bcrypt.MinCost)
	}
}

// TestHtpasswdConcurrentCompares: no more bcrypt comparisons run at once
// than the authenticator has slots (GOMAXPROCS).
func TestHtpasswdConcurrentCompares(t *testing.T) {
	file := filepath.Join(t.TempDir(), "htpasswd")
	must(t, os.WriteFile(file, []byte("alice:"+bcryptHash(t, "secret", "$2y$")+"\n"), 0o600))
	a, err := newAuthenticator(file, true)
	must(t, err)
	if cap(a.slots) != runtime.GOMAXPROCS(0) {
		t.Errorf("%d slots, want GOMAXPROCS, %d", cap(a.slots), runtime.GOMAXPROCS(0))
	}
	a.slots = make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 8 {
				a.check(authed(t, "GET", "http://x/", "alice", fmt.Sprintf("wrong%d-%d", i, j), nil))
			}
		})
	}
	wg.Wait()
	if peak := a.peak.Load(); peak > 2 {
		t.Errorf("%d comparisons at once, want at most 2", peak)
	}
}

func TestServeAuthBadArguments(t *testing.T) {
	dir, etc := t.TempDir(), t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(etc, name)
		must(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	good := file("good", "alice:"+bcryptHash(t, "x", "$2y$")+"\n")
	for _, args := range [][]string{
		{"--htpasswd", filepath.Join(etc, "missing")},
		{"--htpasswd", file("empty", "# nobody\n")},
		{"--htpasswd", file("md5", "alice:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n")},
		{"--htpasswd", file("plain", "alice:secret\n")},
		{"--htpasswd", file("nocolon", "alice\n")},
		{"--htpasswd", file("twice", "alice:"+bcryptHash(t, "x", "$2y$")+"\nalice:"+bcryptHash(t, "y", "$2y$")+"\n")},
		{"--htpasswd", file("badcost", "alice:$2y$99$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyzABCDE\n")},
		{"--htpasswd", file("toocostly", "alice:$2y$18$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyzABCDE\n")},
		{"--auth-all"},
	} {
		args = append(append([]string{"serve", "--addr", "127.0.0.1:0"}, args...), dir)
		runRefused(t, "--htpasswd", args...)
	}
	// --upload open to the network without --htpasswd, checked before
	// serve listens (and checked here without the command, which would
	// listen on every address should the check fail).
	for _, addr := range []string{"0.0.0.0:8080", ":8080", "[::]:8080", "192.0.2.1:8080", "example.com:8080", ""} {
		o := defaultServeOptions(dir)
		o.addr, o.upload = addr, true
		if err := o.validate(); err == nil || !strings.Contains(err.Error(), "--upload-open") {
			t.Errorf("--upload on %q without --htpasswd: %v, want a refusal naming --upload-open", addr, err)
		}
		// With --htpasswd or --upload-open, it is accepted.
		for _, edit := range []func(*serveOptions){
			func(o *serveOptions) { o.http.htpasswd = good },
			func(o *serveOptions) { o.http.uploadOpen = true },
		} {
			o := o
			edit(&o)
			if err := o.validate(); err != nil {
				t.Errorf("--upload on %q with %+v: %v", addr, o.http, err)
			}
		}
	}
}

// exposedListener is a listener on 127.0.0.1 that says it listens on every
// address, as a socket from systemd may.
type exposedListener struct{ net.Listener }

func (exposedListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero, Port: 8080} }

// TestServeUploadListener: serve checks the socket it is given too (one
// from systemd, whatever --addr says): --upload on one that others may reach
// needs --htpasswd or --upload-open; loopback and Unix sockets do not.
func TestServeUploadListener(t *testing.T) {
	dir := t.TempDir()
	o := defaultServeOptions(dir)
	o.upload = true
	ln, err := listen(t.Context(), "127.0.0.1:0")
	must(t, err)
	err = serve(t.Context(), o, exposedListener{ln}, nil, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "--upload-open") {
		t.Errorf("serve --upload on a socket on 0.0.0.0: %v, want a refusal naming --upload-open", err)
	}
	unix, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	must(t, err)
	defer unix.Close()
	lo, err := listen(t.Context(), "127.0.0.1:0")
	must(t, err)
	defer lo.Close()
	for _, tc := range []struct {
		ln   net.Listener
		edit func(*serveOptions)
		ok   bool
	}{
		{exposedListener{lo}, func(*serveOptions) {}, false},
		{exposedListener{lo}, func(o *serveOptions) { o.http.uploadOpen = true }, true},
		{exposedListener{lo}, func(o *serveOptions) { o.http.htpasswd = "file" }, true},
		{exposedListener{lo}, func(o *serveOptions) { o.upload = false }, true},
		{lo, func(*serveOptions) {}, true},
		{unix, func(*serveOptions) {}, true},
	} {
		o := o
		tc.edit(&o)
		if err := o.checkUploadListener(tc.ln); (err == nil) != tc.ok {
			t.Errorf("%v, %+v: %v", tc.ln.Addr(), o.http, err)
		}
	}
}

// TestHtpasswdPassed: credentials that passed cost no second bcrypt
// comparison; wrong ones, or those of an unknown user, cost one each time;
// a reloaded file forgets what passed.
func TestHtpasswdPassed(t *testing.T) {
	file := filepath.Join(t.TempDir(), "htpasswd")
	must(t, os.WriteFile(file, []byte("alice:"+bcryptHash(t, "secret", "$2y$")+"\n"), 0o600))
	a, err := newAuthenticator(file, true)
	must(t, err)
	req := func(user, pass string) *http.Request { return authed(t, "GET", "http://x/", user, pass, nil) }
	for _, tc := range []struct {
		user, pass string
		ok         bool
		compares   int64 // after it
	}{
		{"alice", "secret", true, 1},
		{"alice", "secret", true, 1},
		{"alice", "secret", true, 1},
		{"alice", "wrong", false, 2},
		{"alice", "wrong", false, 3},
		{"bob", "secret", false, 4},
		{"bob", "secret", false, 5},
		{"alice", "secret\x00", false, 6},
	} {
		if ok := a.check(req(tc.user, tc.pass)); ok != tc.ok || a.compares.Load() != tc.compares {
			t.Errorf("%s:%q: %v after %d comparisons, want %v after %d", tc.user, tc.pass, ok, a.compares.Load(), tc.ok, tc.compares)
		}
	}
	if _, err := a.reload(); err != nil {
		t.Fatal(err)
	}
	if !a.check(req("alice", "secret")) || a.compares.Load() != 7 {
		t.Errorf("after a reload: %d comparisons, want 7", a.compares.Load())
	}
}
