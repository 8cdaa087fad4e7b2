package sendfile2_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sendfile2/sendfile2"
)

// uploadHandler stores PUT bodies under root with ReceiveBody and a
// Replacement, as an object store would, and reports each upload's Body and
// error on done.
func uploadHandler(s *sendfile2.Sender, root *os.Root, opt *sendfile2.BodyOptions, done chan<- error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rp, err := sendfile2.CreateReplacement(root, strings.TrimPrefix(r.URL.Path, "/"), 0o644)
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			done <- err
			return
		}
		body, err := s.ReceiveBody(context.Background(), w, r, rp.File(), opt)
		code := http.StatusBadRequest
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			code = http.StatusRequestEntityTooLarge
			rp.Abort()
		case err != nil:
			rp.Abort()
		default:
			c, cerr := rp.Commit()
			err = cerr
			switch {
			case err != nil:
				code = http.StatusInternalServerError
			case c.Replaced:
				code = http.StatusNoContent
			default:
				code = http.StatusCreated
			}
		}
		body.Reply(code, http.Header{"X-Stored": {fmt.Sprint(body.Size)}, "X-Hijacked": {fmt.Sprint(body.Hijacked)}})
		done <- err
	}
}

// rawPut writes a PUT request head and body on a new conn to addr and
// returns the response.
func rawPut(t *testing.T, addr, head string, body []byte, wait100 bool) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	if wait100 {
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
			t.Fatalf("before the body: %q, %v; want 100 Continue", line, err)
		}
		br.ReadString('\n')
	}
	c.Write(body)
	c.(*net.TCPConn).CloseWrite() // a body shorter than its Content-Length ends here

	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp
}

// TestReceiveBody: a body with a Content-Length is received with the
// Sender on the hijacked conn, with or without 100-continue; a chunked body
// through net/http; an upload replaces the file atomically, and a body over
// MaxSize or cut short leaves the old file and no temporary file.
func TestReceiveBody(t *testing.T) {
	for _, m := range []sendfile2.Method{sendfile2.Auto, sendfile2.Copy} {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			dir := t.TempDir()
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			done := make(chan error, 1)
			ln := listenTCP(t)
			url := serveOn(t, ln, uploadHandler(s, root, &sendfile2.BodyOptions{MaxSize: 8 << 20}, done))
			_, data := tempFile(t, 3<<20+7)
			client := &http.Client{}

			put := func(body io.Reader, size int64) *http.Response {
				req, _ := http.NewRequest("PUT", url+"/obj", body)
				req.ContentLength = size
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp
			}
			check := func(want []byte) {
				t.Helper()
				got, err := os.ReadFile(filepath.Join(dir, "obj"))
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("obj holds %d bytes that differ, %v", len(got), err)
				}
				ents, _ := os.ReadDir(dir)
				if len(ents) != 1 {
					t.Fatalf("%d entries in the directory, want obj alone", len(ents))
				}
			}

			before := s.Stats()
			resp := put(bytes.NewReader(data), int64(len(data)))
			if err := <-done; err != nil || resp.StatusCode != http.StatusCreated || resp.Header.Get("X-Hijacked") != "true" {
				t.Fatalf("PUT with Content-Length: %s, hijacked %s, %v", resp.Status, resp.Header.Get("X-Hijacked"), err)
			}
			check(data)
			var received int64
			for _, ms := range s.Stats().Methods {
				received += ms.Received
			}
			for _, ms := range before.Methods {
				received -= ms.Received
			}
			if received == 0 || received > int64(len(data)) {
				t.Fatalf("Receive wrote %d bytes of a %d-byte body", received, len(data))
			}

			chunked := data[:1<<20]
			resp = put(io.MultiReader(bytes.NewReader(chunked)), -1)
			if err := <-done; err != nil || resp.StatusCode != http.StatusNoContent || resp.Header.Get("X-Hijacked") != "false" {
				t.Fatalf("chunked PUT: %s, hijacked %s, %v", resp.Status, resp.Header.Get("X-Hijacked"), err)
			}
			check(chunked)

			small := data[:1000]
			resp = rawPut(t, ln.Addr().String(), "PUT /obj HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n", small, true)
			if err := <-done; err != nil || resp.StatusCode != http.StatusNoContent || resp.Header.Get("X-Stored") != "1000" {
				t.Fatalf("PUT with 100-continue: %s, %v", resp.Status, err)
			}
			check(small)

			resp = rawPut(t, ln.Addr().String(), "PUT /obj HTTP/1.1\r\nHost: x\r\nContent-Length: 9000000\r\n\r\n", nil, false)
			var tooLarge *http.MaxBytesError
			if err := <-done; !errors.As(err, &tooLarge) || resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("PUT over MaxSize: %s, %v", resp.Status, err)
			}
			resp = put(io.MultiReader(bytes.NewReader(make([]byte, 9<<20))), -1)
			if err := <-done; !errors.As(err, &tooLarge) || resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("chunked PUT over MaxSize: %s, %v", resp.Status, err)
			}
			check(small)

			resp = rawPut(t, ln.Addr().String(), "PUT /obj HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", data[:5000], false)
			if err := <-done; !errors.Is(err, io.ErrUnexpectedEOF) || resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Stored") != "5000" {
				t.Fatalf("PUT cut short: %s, stored %s, %v", resp.Status, resp.Header.Get("X-Stored"), err)
			}
			check(small)
		})
	}
}

// TestReplacement: Commit creates or replaces the target, Abort leaves it,
// and a target that is not a regular file is refused.
func TestReplacement(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "f")
	write := func(content string) (sendfile2.Committed, error) {
		rp, err := sendfile2.CreateReplacementPath(target, 0o600)
		if err != nil {
			return sendfile2.Committed{}, err
		}
		io.WriteString(rp.File(), content)
		return rp.Commit()
	}
	if c, err := write("one"); err != nil || c.Replaced || !c.Renamed || c.Info.Size() != 3 {
		t.Fatalf("first Commit = %+v, %v", c, err)
	}
	if c, err := write("two!"); err != nil || !c.Replaced {
		t.Fatalf("second Commit = %+v, %v", c, err)
	}
	rp, err := sendfile2.CreateReplacementPath(target, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(rp.File(), "three")
	if err := rp.Abort(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "two!" {
		t.Fatalf("after Abort the target holds %q", b)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode())
	}
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	if _, err := sendfile2.CreateReplacementPath(filepath.Join(dir, "d"), 0o644); !errors.Is(err, sendfile2.ErrNotRegular) {
		t.Fatalf("replacing a directory: %v, want ErrNotRegular", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("%d entries, want f and d: a temporary file was left", len(ents))
	}
}

// TestReceiveBodyContext: BodyOptions.ReceiveContext bounds the Receive of
// a hijacked body: a client that stops sending is cut off when the context
// it derived ends, and Reply still answers it.
func TestReceiveBodyContext(t *testing.T) {
	s := newSender(t, sendfile2.Config{})
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var called atomic.Int64
	opt := &sendfile2.BodyOptions{ReceiveContext: func(ctx context.Context, conn net.Conn) (context.Context, func()) {
		called.Add(1)
		return context.WithTimeout(ctx, 100*time.Millisecond)
	}}
	done := make(chan error, 1)
	ln := listenTCP(t)
	serveOn(t, ln, uploadHandler(s, root, opt, done))

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "PUT /obj HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789")
	// The client sends nothing more, and keeps the conn open.
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) || called.Load() != 1 {
		t.Fatalf("stalled body: %v, ReceiveContext called %d times; want context.DeadlineExceeded, once", err, called.Load())
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Stored") != "10" {
		t.Fatalf("response to a stalled body: %v, %v", resp, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("%d entries left in the directory", len(ents))
	}
}
