package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkServeGET measures keep-alive GETs of one file from serve, with
// the lean path and with net/http alone, each parallel goroutine on its own
// conn. The client allocates nothing per request, so allocs/op is serve's.
func BenchmarkServeGET(b *testing.B) {
	dir := b.TempDir()
	for _, size := range []int{4 << 10, 16 << 10, 1 << 20} {
		must(b, os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d.bin", size)), randomData(size, 7), 0o644))
	}
	for _, lean := range []bool{true, false} {
		name := "lean"
		if !lean {
			name = "net-http"
		}
		ts := startServe(b, dir, func(o *serveOptions) { o.accessLog = false; o.lean = lean })
		for _, size := range []int{4 << 10, 16 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("%s/%dKiB", name, size>>10), func(b *testing.B) {
				req := []byte(fmt.Sprintf("GET /%d.bin HTTP/1.1\r\nHost: x\r\n\r\n", size))
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					c, err := net.Dial("tcp", ts.addr)
					if err != nil {
						b.Error(err)
						return
					}
					defer c.Close()
					br := bufio.NewReaderSize(c, 64<<10)
					for pb.Next() {
						if _, err := c.Write(req); err != nil {
							b.Error(err)
							return
						}
						if err := readResponse(br, size); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// readResponse reads a 200 response with a body of size bytes from br and
// discards it.
func readResponse(br *bufio.Reader, size int) error {
	status, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status line %q", status)
	}
	n := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n = 0
			for _, c := range bytes.TrimSpace(v) {
				n = n*10 + int(c-'0')
			}
		}
	}
	if n != size {
		return fmt.Errorf("Content-Length %d, want %d", n, size)
	}
	_, err = br.Discard(n)
	return err
}
