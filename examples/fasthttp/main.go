// Command fasthttp serves a directory with fasthttp, its file bodies sent by
// a sendfile2.Sender: fasthttp.FS hands a large file to the conn's ReadFrom,
// which NewListener's conns implement with the Sender, so that a file may be
// rewritten as soon as its response has been written.
//
//	go run ./examples/fasthttp -addr 127.0.0.1:8080 -dir /srv/www
package main

import (
	"context"
	"flag"
	"log"
	"net"

	"github.com/valyala/fasthttp"

	"github.com/sendfile2/sendfile2"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	dir := flag.String("dir", ".", "directory to serve")
	flag.Parse()

	s, err := sendfile2.NewSender(sendfile2.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	ln, err := listen(*addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("serving %s on http://%s, sending with %s", *dir, ln.Addr(), s.Method())
	log.Fatal(serve(ln, s, *dir))
}

// listen listens on addr with plain TCP: the sockets an MPTCP listener
// (Go's default since 1.24) accepts cannot send zero-copy.
func listen(addr string) (net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), "tcp", addr)
}

// serve serves the files of dir on ln until ln is closed, with s sending the
// file bodies.
func serve(ln net.Listener, s *sendfile2.Sender, dir string) error {
	fs := &fasthttp.FS{
		Root: dir,
		// fasthttp compresses into a cache of its own: a compressed body is
		// not the file, and does not go through the Sender.
		Compress: false,
	}
	return fasthttp.Serve(sendfile2.NewListener(ln, s), fs.NewRequestHandler())
}
