package sendfile2_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sendfile2/sendfile2"
)

// exampleDir makes a directory holding name with content, for the examples.
func exampleDir(name string, content []byte) string {
	dir, err := os.MkdirTemp("", "sendfile2-example-")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
		log.Fatal(err)
	}
	return dir
}

// Serve a directory with http.FileServer: the listener's conns send file
// bodies with the Sender (all but the first 512 bytes, which net/http writes
// itself for content sniffing).
func ExampleNewListener() {
	dir := exampleDir("big.bin", bytes.Repeat([]byte("sendfile2 "), 100_000))
	defer os.RemoveAll(dir)
	s, err := sendfile2.NewSender(sendfile2.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	// Plain TCP: the sockets that an MPTCP listener (net.Listen's default
	// since Go 1.24) accepts cannot send zero-copy.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go srv.Serve(sendfile2.NewListener(ln, s))
	defer srv.Shutdown(context.Background())

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String() + "/big.bin")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// A send is counted when it returns: after its last notification,
	// which can come after the client has every byte.
	for s.Stats().InFlight != 0 {
		time.Sleep(time.Millisecond)
	}
	var sent int64
	for _, ms := range s.Stats().Methods {
		sent += ms.Bytes
	}
	fmt.Printf("received %d bytes; the Sender sent %d of them\n", len(body), sent)
	// Output: received 1000000 bytes; the Sender sent 999488 of them
}

// statusWriter is a logging middleware's ResponseWriter: it records the
// status and, as most do, hides the ReadFrom of the writer it wraps; its
// Unwrap lets http.ResponseController, and Handler, reach that writer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// FlushError passes a flush on. Handler sends a file around a middleware
// only after the middleware's own flush has passed the status down.
func (w *statusWriter) FlushError() error {
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Serve a directory with http.FileServer behind a logging middleware whose
// ResponseWriter hides ReadFrom. Handler, inside the middleware, finds the
// conn's ReadFrom through Unwrap, so that file bodies still go through the
// Sender, and counts in Stats.Bypassed those that cannot: here, over HTTP/2
// without TLS.
func ExampleHandler() {
	dir := exampleDir("big.bin", bytes.Repeat([]byte("sendfile2 "), 100_000))
	defer os.RemoveAll(dir)
	s, err := sendfile2.NewSender(sendfile2.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	logRequests := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			h.ServeHTTP(sw, r)
			log.Printf("%s %s %s %d", r.Method, r.URL.Path, r.Proto, sw.status)
		})
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		ConnContext: sendfile2.ConnContext, // for Handler to find the conn
		Handler:     logRequests(sendfile2.Handler(http.FileServer(http.Dir(dir)))),
		Protocols:   &protocols,
	}
	go srv.Serve(sendfile2.NewListener(ln, s))
	defer srv.Shutdown(context.Background())

	get := func(proto func(*http.Protocols)) {
		var p http.Protocols
		proto(&p)
		tr := &http.Transport{Protocols: &p}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String() + "/big.bin")
		if err != nil {
			log.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		for s.Stats().InFlight != 0 { // counted when the last notification comes
			time.Sleep(time.Millisecond)
		}
	}
	get(func(p *http.Protocols) { p.SetHTTP1(true) })
	var sent int64
	for _, ms := range s.Stats().Methods {
		sent += ms.Bytes
	}
	fmt.Printf("HTTP/1.1: the Sender sent %d bytes\n", sent)
	get(func(p *http.Protocols) { p.SetUnencryptedHTTP2(true) })
	fmt.Printf("h2c: bypassed %v\n", s.Stats().Bypassed)
	// Output:
	// HTTP/1.1: the Sender sent 1000000 bytes
	// h2c: bypassed map[http2:1]
}

// Receive a stream into a file until the peer closes it.
func ExampleReceive() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			log.Fatal(err)
		}
		io.WriteString(c, "hello, file")
		c.Close()
	}()
	conn, err := ln.Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	f, err := os.CreateTemp("", "sendfile2-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()

	n, err := sendfile2.Receive(context.Background(), conn.(*net.TCPConn), f, 0, -1)
	if err != nil {
		log.Fatal(err)
	}
	b, _ := os.ReadFile(f.Name())
	fmt.Printf("%d bytes: %s\n", n, b)
	// Output: 11 bytes: hello, file
}

// Send a response head from memory and a file's body, in as few
// submissions as the method allows.
func ExampleSender_SendWithHeader() {
	dir := exampleDir("hello.txt", []byte("hello"))
	defer os.RemoveAll(dir)
	f, err := os.Open(filepath.Join(dir, "hello.txt"))
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	s, err := sendfile2.NewSender(sendfile2.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	a, b := examplePair()
	defer b.Close()
	got := make(chan []byte)
	go func() {
		r, _ := io.ReadAll(b)
		got <- r
	}()

	hdr := []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
	n, err := s.SendWithHeader(context.Background(), a, hdr, f, 0, -1) // -1: to the end of the file
	a.Close()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("sent %d bytes: %q\n", n, <-got)
	// Output: sent 43 bytes: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
}

// examplePair returns both ends of a TCP connection on loopback.
func examplePair() (*net.TCPConn, *net.TCPConn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		log.Fatal(err)
	}
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// An upload handler, as an object store has: the body goes to a temporary
// file next to the target, received with the Sender when it has a
// Content-Length, and replaces the target only once complete and on stable
// storage.
func ExampleSender_ReceiveBody() {
	dir, err := os.MkdirTemp("", "sendfile2-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	root, err := os.OpenRoot(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer root.Close()
	s, err := sendfile2.NewSender(sendfile2.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	ctx, stop := context.WithCancel(context.Background()) // ends the uploads in flight at shutdown
	defer stop()

	put := func(w http.ResponseWriter, r *http.Request) {
		rp, err := sendfile2.CreateReplacement(root, strings.TrimPrefix(r.URL.Path, "/"), 0o644)
		if err != nil {
			http.Error(w, "cannot store there", http.StatusConflict)
			return
		}
		body, err := s.ReceiveBody(ctx, w, r, rp.File(), &sendfile2.BodyOptions{MaxSize: 1 << 30})
		if err != nil {
			rp.Abort()
			body.Reply(http.StatusBadRequest, nil)
			return
		}
		c, err := rp.Commit()
		switch {
		case err != nil:
			body.Reply(http.StatusInternalServerError, nil)
		case c.Replaced:
			body.Reply(http.StatusNoContent, nil)
		default:
			body.Reply(http.StatusCreated, nil)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(put)}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	for _, content := range []string{"first", "second"} {
		req, _ := http.NewRequest("PUT", "http://"+ln.Addr().String()+"/object", strings.NewReader(content))
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		stored, _ := os.ReadFile(filepath.Join(dir, "object"))
		fmt.Printf("%s: %s\n", resp.Status, stored)
	}
	// Output:
	// 201 Created: first
	// 204 No Content: second
}
