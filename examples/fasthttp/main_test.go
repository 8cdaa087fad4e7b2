package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/sendfile2/sendfile2"
)

// TestFastHTTP: fasthttp.FS on NewListener sends every byte of a large
// file's body with the Sender, and the client gets the file exactly.
func TestFastHTTP(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 1<<20)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(dir, "f.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := sendfile2.NewSender(sendfile2.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve(ln, s, dir) }()
	defer func() {
		ln.Close()
		<-done
	}()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	const responses = 5
	for range responses {
		resp, err := c.Get("http://" + ln.Addr().String() + "/f.bin")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, data) {
			t.Fatalf("status %d, %d bytes that differ from the file, %v", resp.StatusCode, len(body), err)
		}
	}
	st := s.Stats()
	var sent int64
	for _, ms := range st.Methods {
		sent += ms.Bytes
	}
	// fasthttp writes the head through its own buffer, then hands the
	// whole file to ReadFrom.
	if sent != responses*int64(len(data)) {
		t.Fatalf("the Sender sent %d bytes, want the %d of %d bodies (stats %+v)", sent, responses*len(data), responses, st)
	}
}
